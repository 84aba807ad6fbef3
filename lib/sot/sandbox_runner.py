"""The script that runs ONE untrusted program. ``sot.sandbox_launch`` compiles it once with the sandbox's own
interpreter and each run loads it through a small ``python -S -s -B -c <bootstrap> CODE_FD ARGS``.

Standard library only, and nothing is imported from ``sot``: it runs inside the sandbox, where the repository
is not visible. ``sot.sandbox`` starts it; read that module's docstring for the whole design.

ARGS: mode ("bubblewrap" | "rlimits"), uid (-1: keep), program fd, result fd, nonce fd, address-space
bytes, CPU seconds, max processes, max file bytes.

The program fd (a memfd) holds ``marshal.dumps((program, steps))``: the program's source and the steps to take
after it, each ("call", expression) or ("exec", statement). The steps carry the test CALLS only: the values
they are compared with stay in the grader and never enter this process.

What it does, in order: read the program; drop to the per-run uid when one is given (root only); set the
rlimits; fork. The child runs the program with ``exec`` in a fresh namespace and, only when that returns
normally, takes the steps in order, writing one line per step to the result fd: ``R <k> v <value>`` (the value
of call k as plain data, see ``encode``), ``R <k> x <type>`` (not plain data), ``R <k> e <exception>`` (it
raised) or ``R <k> d`` (statement k ran: the weaker in-process path). After the last step it reads the nonce
from the nonce fd (a pipe the program was never told about) and writes ``D <nonce>``. The result channel is
just data: whatever the program writes there itself is judged like the runner's own lines, by a grader that
knows how many steps there are and what each call must return. The parent stays behind as supervisor: it waits
for the child, kills whatever the program left running, and exits with the child's exit code (128 + signal
number when it was killed).
"""
import marshal
import os
import resource
import sys

VALUE_LIMIT = 1 << 20  # characters of one encoded value; a larger one is reported as not plain data
DEPTH_LIMIT = 64  # nesting of containers (a cycle ends here too)
CONTAINER_TAGS = {list: "L", tuple: "U", set: "E", frozenset: "Z"}
PLAIN = (bool, int, float, complex, str, bytes, list, tuple, set, frozenset, dict)
PR_SET_CHILD_SUBREAPER = 36
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
BLOCKED_EVENT_PREFIXES = ("os.exec", "os.posix_spawn", "os.spawn", "os.system", "subprocess.", "ctypes.",
                          "os.startfile", "socket.getaddrinfo", "socket.gethostbyname", "socket.sethostname")
PATH_EVENTS = {"os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1), "os.chmod": (0,),
               "os.chown": (0,), "os.symlink": (1,), "os.link": (0, 1), "os.truncate": (0,), "os.utime": (0,),
               "os.chflags": (0,), "os.lchflags": (0,), "os.setxattr": (0,), "os.removexattr": (0,),
               "shutil.rmtree": (0,), "shutil.chown": (0,)}


def own_task_count():
    """Tasks (processes and threads) that already count against this uid's RLIMIT_NPROC."""
    uid, total = os.getuid(), 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/status" % name, "rb") as f:
                    fields = dict(line.split(b":", 1) for line in f.read().splitlines() if b":" in line)
                if int(fields[b"Uid"].split()[0]) == uid:
                    total += int(fields[b"Threads"])
            except (OSError, KeyError, ValueError):
                pass
    return total


def set_limits(as_bytes, cpu_seconds, nproc, fsize):
    """Lower the rlimits (never above a hard limit that is already lower)."""
    if os.getuid() != 0 and nproc > 0:
        nproc += own_task_count()  # RLIMIT_NPROC counts every task of the uid, not just ours
    wanted = ((resource.RLIMIT_AS, as_bytes, as_bytes), (resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1),
              (resource.RLIMIT_NPROC, nproc, nproc), (resource.RLIMIT_FSIZE, fsize, fsize),
              (resource.RLIMIT_CORE, 0, 0))
    for res, soft, hard in wanted:
        _, old_hard = resource.getrlimit(res)
        if old_hard != resource.RLIM_INFINITY:
            hard, soft = min(hard, old_hard), min(soft, old_hard)
        resource.setrlimit(res, (soft, hard))


def become_subreaper():
    """Orphaned descendants (double fork, setsid) are re-parented to us, so the sweep can find them."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def kill_descendants():
    """SIGKILL every process below us until none is left; reap them (we are their subreaper)."""
    me = os.getpid()
    for _ in range(200):
        try:
            if os.waitpid(-1, os.WNOHANG) != (0, 0):
                continue  # reaped one; look again
        except ChildProcessError:
            return  # no children at all: with a subreaper that means no descendants either
        parents = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open("/proc/%s/stat" % name, "rb") as f:
                        parents[int(name)] = int(f.read().rsplit(b")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    pass
        below, changed = {me}, True
        while changed:
            more = {pid for pid, ppid in parents.items() if ppid in below} - below
            below |= more
            changed = bool(more)
        for pid in below - {me}:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def install_guard(root):
    """rlimits mode only: an audit hook that refuses writes outside ``root``, network, exec, ctypes, and
    signals to processes that are not ours. It stops accidents, not an attacker (see sot.sandbox)."""
    root = os.path.realpath(root)

    def inside(path):
        if isinstance(path, int):
            return True
        real = os.path.realpath(os.fsdecode(os.fspath(path)))
        return real == root or real.startswith(root + os.sep) or real == os.devnull

    def refuse(event, args):
        raise PermissionError("sandbox: %s%r is not allowed" % (event, tuple(args)))

    def mine(pid):
        if pid in (0, os.getpid(), -os.getpgrp()):
            return True
        try:
            with open("/proc/%d/stat" % abs(pid), "rb") as f:
                return int(f.read().rsplit(b")", 1)[1].split()[1]) == os.getpid()
        except (OSError, ValueError, IndexError):
            return False

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & WRITE_FLAGS)
            if writing and not inside(path):
                refuse(event, args)
        elif event in PATH_EVENTS:
            if not all(inside(args[i]) for i in PATH_EVENTS[event]):
                refuse(event, args)
        elif event.startswith(BLOCKED_EVENT_PREFIXES):
            refuse(event, args)
        elif event == "socket.__new__":
            if args[1] != getattr(__import__("socket"), "AF_UNIX", 1):
                refuse(event, args[1:])
        elif event in ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg"):
            if not isinstance(args[1], (str, bytes)):
                refuse(event, args[1:])
        elif event in ("os.kill", "os.killpg") and not mine(args[0] if event == "os.kill" else -args[0]):
            refuse(event, args)

    sys.addaudithook(hook)


class NotPlain(Exception):
    """A value that is not plain data (only exact builtin types are)."""


def plain_type(kind):
    """The builtin type whose content stands for a value of type ``kind``, or None when it is not plain data:
    the builtin itself; a subclass that leaves ``==`` to it (defaultdict, namedtuple classes), which compares
    equal to a builtin exactly as its content does; or collections.Counter / OrderedDict, whose own ``==``
    defers to dict's against a plain dict. Any class of its own ``__eq__`` or ``__ne__`` (one answering True
    to everything) is not plain."""
    if kind in PLAIN:
        return kind
    base = next((b for b in PLAIN if b is not bool and issubclass(kind, b)), None)
    if base is None:
        return None
    collections = sys.modules.get("collections")
    defers = (getattr(collections, "Counter", None), getattr(collections, "OrderedDict", None))
    for cls in kind.__mro__:
        if cls is base:
            return base
        own = vars(cls)
        if ("__eq__" in own or "__ne__" in own) and cls not in defers:
            return None
    return None


def content(item, base):
    """``item``'s value as an object of exactly ``base`` (read through the builtin's own methods)."""
    if type(item) is base or base in (list, tuple, set, frozenset, dict):
        return item
    return {int: int.__int__, float: float.__float__, complex: complex.__complex__, str: str.__str__,
            bytes: bytes.__bytes__}[base](item)


def encode(value):
    """Plain data as space-separated tokens in prefix order: N (None), B1/B0 (bool), i<hex> (int), f<float.hex>,
    c<hex>,<hex> (complex), s<utf-8 hex> (str), y<hex> (bytes), L/U/E/Z<n> (list, tuple, set, frozenset of n
    items), D<n> (dict of n key, value pairs). Raises NotPlain for anything ``plain_type`` refuses (its
    ``__eq__`` must never decide a verdict), for a value nested too deep (or cyclic) or too large."""
    out, size, stack = [], 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        base = plain_type(type(item)) if item is not None else None
        if item is None:
            token = "N"
        elif base is None:
            kind = type(item)
            raise NotPlain("%s.%s" % (kind.__module__, kind.__qualname__))
        elif base is bool:
            token = "B1" if item else "B0"
        elif base in CONTAINER_TAGS or base is dict:
            if depth >= DEPTH_LIMIT:
                raise NotPlain("nested deeper than %d" % DEPTH_LIMIT)
            if base is dict:
                parts = [x for pair in dict.items(item) for x in pair]
                token = "D%d" % (len(parts) // 2)
            else:
                parts = list(base.__iter__(item))
                token = "%s%d" % (CONTAINER_TAGS[base], len(parts))
            stack.extend((part, depth + 1) for part in reversed(parts))
        else:
            item = content(item, base)
            if base is int:
                token = "i%x" % item
            elif base is float:
                token = "f" + item.hex()
            elif base is complex:
                token = "c%s,%s" % (item.real.hex(), item.imag.hex())
            elif base is str:
                token = "s" + item.encode("utf-8", "surrogatepass").hex()
            else:
                token = "y" + item.hex()
        out.append(token)
        size += len(token) + 1
        if size > VALUE_LIMIT:
            raise NotPlain("more than %d characters" % VALUE_LIMIT)
    return " ".join(out)


def write_line(fd, line):
    data = memoryview(line.encode("ascii", "replace") + b"\n")
    while data:
        data = data[os.write(fd, data):]


def show_error(skip=1):
    """Print the current exception's traceback to stderr, without this runner's own frame(s)."""
    kind, error, trace = sys.exc_info()
    for _ in range(skip):
        trace = trace.tb_next if trace is not None else None
    try:
        sys.excepthook(kind, error.with_traceback(trace), trace)
    except BaseException:
        pass


def safe_name(error):
    return "".join(c for c in type(error).__name__ if c.isalnum() or c in "_.")[:80] or "?"


def run_steps(steps, namespace, result_fd):
    """Each step in order, one result line per step. Returns False when a statement step failed."""
    for k, (kind, source) in enumerate(steps):
        try:
            if kind == "call":
                value = eval(compile(source, "test_%d" % k, "eval"), namespace)
                try:
                    line = "R %d v %s" % (k, encode(value))
                except NotPlain as why:
                    line = "R %d x %s" % (k, "".join(c for c in str(why) if c.isprintable() and c != " ")[:200])
            else:
                exec(compile(source, "program.py", "exec"), namespace)
                line = "R %d d" % k
        except BaseException as error:
            show_error()
            write_line(result_fd, "R %d e %s" % (k, safe_name(error)))
            if kind != "call":
                return False
            continue
        write_line(result_fd, line)
    return True


def flush_streams():
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:
            pass


def run_user(source, steps, result_fd, nonce_fd):
    """Run the program, then its steps; write the nonce only when all of it ran. Returns the exit code."""
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(source, "program.py", "exec"), namespace)
        finished = run_steps(steps, namespace, result_fd)
    except SystemExit as stop:
        code = stop.code
        if code is not None and not isinstance(code, int):
            sys.stderr.write("%s\n" % (code,))
        flush_streams()
        return (code or 0) & 0xFF if code is None or isinstance(code, int) else 1
    except BaseException:
        show_error()  # hide this runner's frame (None for a SyntaxError)
        flush_streams()
        return 1
    flush_streams()
    if not finished:
        return 1
    write_line(result_fd, "D " + os.read(nonce_fd, 256).decode("ascii", "replace"))
    return 0


def main(argv):
    mode, uid, source_fd, result_fd, nonce_fd = argv[0], int(argv[1]), int(argv[2]), int(argv[3]), int(argv[4])
    as_bytes, cpu_seconds, nproc, fsize = (int(x) for x in argv[5:9])
    with os.fdopen(source_fd, "rb") as f:
        source, steps = marshal.loads(f.read())
    if sys.path and sys.path[0] in ("", "."):
        del sys.path[0]
    if uid >= 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    set_limits(as_bytes, cpu_seconds, nproc, fsize)
    if mode == "rlimits":
        become_subreaper()  # under bubblewrap we are PID 1 of our own PID namespace, which is stronger
    sys.stdout.flush()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            os.set_inheritable(nonce_fd, False)
            if mode == "rlimits":
                install_guard(os.getcwd())
            code = run_user(source, steps, result_fd, nonce_fd)
        finally:
            os._exit(code)
    os.close(nonce_fd)
    os.close(result_fd)
    _, status = os.waitpid(child, 0)
    if mode == "rlimits":
        kill_descendants()
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main(sys.argv[1:])
