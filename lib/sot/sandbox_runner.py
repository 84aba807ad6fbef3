"""The script that runs ONE untrusted program. ``sot.sandbox_launch`` compiles it once with the sandbox's own
interpreter and each run loads it through a small ``python -S -s -B -c <bootstrap> CODE_FD ARGS``.

Standard library only, and nothing is imported from ``sot``: it runs inside the sandbox, where the repository
is not visible. ``sot.sandbox`` starts it; read that module's docstring for the whole design.

ARGS: mode ("bubblewrap" | "rlimits"), uid (-1: keep), source fd, nonce fd, address-space bytes,
CPU seconds, max processes, max file bytes.

What it does, in order: read the program from the source fd (a memfd); drop to the per-run uid when one is
given (root only); set the rlimits; fork. The child runs the program with ``exec`` in a fresh namespace and,
only when that returns normally, reads the nonce from the nonce fd (a pipe the program was never told about)
and prints it as the last line. The parent stays behind as supervisor: it waits for the child, kills whatever
the program left running, and exits with the child's exit code (128 + signal number when it was killed).
"""
import os
import resource
import sys

DONE_PREFIX = b"__sot_sandbox_done__ "
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


def run_user(source, nonce_fd):
    """Run the program; print the nonce only when it ran to its end. Returns the exit code."""
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(source, "program.py", "exec"), namespace)
    except SystemExit as stop:
        code = stop.code
        if code is None or isinstance(code, int):
            return (code or 0) & 0xFF
        sys.stderr.write("%s\n" % (code,))
        return 1
    except BaseException:
        kind, error, trace = sys.exc_info()
        trace = trace.tb_next  # hide this runner's frame (None for a SyntaxError)
        sys.excepthook(kind, error.with_traceback(trace), trace)
        return 1
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:
            pass
    nonce = os.read(nonce_fd, 256)
    os.write(1, b"\n" + DONE_PREFIX + nonce + b"\n")
    return 0


def main(argv):
    mode, uid, source_fd, nonce_fd = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    as_bytes, cpu_seconds, nproc, fsize = (int(x) for x in argv[4:8])
    with os.fdopen(source_fd, "rb") as f:
        source = f.read()
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
            code = run_user(source, nonce_fd)
        finally:
            os._exit(code)
    os.close(nonce_fd)
    _, status = os.waitpid(child, 0)
    if mode == "rlimits":
        kill_descendants()
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main(sys.argv[1:])
