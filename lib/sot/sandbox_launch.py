"""How ``sot.sandbox`` starts one program: the command line (bubblewrap or plain rlimits), the interpreter,
the per-run uid when we are root, the environment, and the sweep that kills whatever a run left behind."""
from __future__ import annotations

import collections
import fcntl
import functools
import math
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

RUNNER_SOURCE = Path(__file__).with_name("sandbox_runner.py").read_text()
UID_BASE = 600_000_000  # per-run uids: UID_BASE + (pid % 2**22) * UID_SLOTS + slot, all below 2**31
UID_SLOTS = 256
SANDBOX_DIR = "/sandbox"  # the working directory inside bubblewrap (a private tmpfs)
MARKER_VAR = "SOT_SANDBOX_RUN"
HOSTNAME = "sandbox"  # the program's hostname under bubblewrap (its own UTS namespace; never the host's name)
# The runner is compiled once per interpreter (compiling it costs more than starting Python) and handed to
# every run as a sealed, read-only memfd; this bootstrap loads it: argv[1] is that fd.
BOOTSTRAP = ("import marshal,os,sys;f=int(sys.argv.pop(1));c=marshal.loads(os.pread(f,1<<22,0));os.close(f);"
             "exec(c)")
COMPILE = ("import marshal,sys;sys.stdout.buffer.write(marshal.dumps(compile(sys.stdin.buffer.read(),"
           "'sandbox_runner.py','exec',optimize=2)))")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run (see ``sot.sandbox.run_program``)."""
    timeout: float = 10.0
    memory_mb: int = 2048
    cpu_seconds: float | None = None
    file_size_mb: int = 16
    output_limit: int = 64_000
    max_processes: int = 16
    disk_mb: int = 64

    def runner_args(self) -> list[str]:
        cpu = self.cpu_seconds if self.cpu_seconds is not None else self.timeout + 1
        return [str(self.memory_mb << 20), str(max(1, math.ceil(cpu))), str(self.max_processes),
                str(self.file_size_mb << 20)]


@dataclass(frozen=True)
class Launcher:
    """One way of starting the runner: ``mode`` "bubblewrap" or "rlimits", the interpreter run inside, whether
    each run gets its own uid (root only: the kernel ignores RLIMIT_NPROC for root), bubblewrap's fixed args."""
    mode: str
    python: str
    drop_uid: bool
    bwrap: tuple[str, ...] = ()

    def command(self, uid: int, source_fd: int, result_fd: int, nonce_fd: int, limits: Limits) -> list[str]:
        """The command line; the child must inherit ``self.code_fd()`` and the three fds given."""
        runner = [self.python, "-S", "-s", "-B", "-c", BOOTSTRAP, str(self.code_fd()), self.mode, str(uid),
                  str(source_fd), str(result_fd), str(nonce_fd), *limits.runner_args()]
        if self.mode == "rlimits":
            return runner
        disk = str(limits.disk_mb << 20)
        return [*self.bwrap, "--perms", "1777", "--size", disk, "--tmpfs", "/tmp",
                "--perms", "0777", "--size", disk, "--tmpfs", SANDBOX_DIR, "--chdir", SANDBOX_DIR, *runner]


    def code_fd(self) -> int:
        return compiled_runner(self.python)


@functools.lru_cache(maxsize=None)
def compiled_runner(python: str) -> int:
    """A sealed memfd (shared by all runs, immutable) holding the runner compiled by ``python`` itself."""
    done = subprocess.run([python, "-S", "-s", "-B", "-c", COMPILE], input=RUNNER_SOURCE.encode(),
                          capture_output=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{python} could not compile the sandbox runner: {done.stderr.decode()[-500:]}")
    fd = os.memfd_create("sot-sandbox-runner", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    view = memoryview(done.stdout)
    while view:
        view = view[os.write(fd, view):]
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                | fcntl.F_SEAL_SEAL)
    return fd


def base_python() -> str:
    """The real interpreter behind this (virtual) environment; the runner needs only the standard library."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def bwrap_args(bwrap: str, python: str, as_root: bool) -> tuple[str, ...]:
    """Read-only /usr and Python prefix, private /proc, /dev, no network, own PID namespace (we are its PID 1:
    when the runner exits or bwrap is killed, the kernel kills everything left inside)."""
    args = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--hostname", HOSTNAME,
            "--die-with-parent", "--new-session", "--as-pid-1"]
    if as_root:  # privileged bwrap: keep only what the runner needs to switch to the per-run uid
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        args += ["--unshare-user"]
    args += ["--ro-bind", "/usr", "/usr"]
    for name in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(name):
            args += ["--symlink", os.readlink(name), name]
        elif os.path.isdir(name):
            args += ["--ro-bind", name, name]
    args += ["--perms", "0755", "--dir", "/etc", "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
             "--ro-bind-try", "/etc/localtime", "/etc/localtime"]
    made = {"/", "/usr", "/etc"}
    prefixes = {os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix)}
    prefixes.add(os.path.dirname(os.path.dirname(python)))
    for prefix in sorted(prefixes):
        if prefix == "/" or prefix == "/usr" or prefix.startswith("/usr/"):
            continue
        parts = Path(prefix).parents
        for parent in sorted(str(p) for p in parts):
            if parent not in made:  # bwrap would copy the host's mode (e.g. /root 0700); make them traversable
                args += ["--perms", "0755", "--dir", parent]
                made.add(parent)
        args += ["--ro-bind", prefix, prefix]
        made.add(prefix)
    args += ["--proc", "/proc", "--dev", "/dev"]
    return tuple(args)


def world_accessible(path: str) -> bool:
    """True when any uid may execute ``path`` (every directory above it is searchable by others)."""
    try:
        real = os.path.realpath(path)
        if not os.stat(real).st_mode & stat.S_IXOTH:
            return False
        return all(os.stat(parent).st_mode & stat.S_IXOTH for parent in Path(real).parents)
    except OSError:
        return False


def candidates(mode: str) -> list[Launcher]:
    """Launchers to probe for ``mode``, best first."""
    python, root = base_python(), os.geteuid() == 0
    if mode == "bubblewrap":
        bwrap = shutil.which("bwrap") or next((p for p in ("/usr/bin/bwrap", "/bin/bwrap") if os.path.exists(p)),
                                              None)
        return [Launcher("bubblewrap", python, root, bwrap_args(bwrap, python, root))] if bwrap else []
    if mode != "rlimits":
        raise ValueError(f"sandbox mode {mode!r}: expected 'bubblewrap' or 'rlimits'")
    if not root:
        return [Launcher("rlimits", python, False)]
    version = "%d.%d" % sys.version_info[:2]
    found = [python, f"/usr/bin/python{version}", f"/usr/local/bin/python{version}", "/usr/bin/python3",
             "/usr/local/bin/python3"]
    usable = list(dict.fromkeys(os.path.realpath(p) for p in found if os.path.exists(p) and world_accessible(p)))
    # last resort: no uid of its own, so nothing bounds a fork bomb (sot.sandbox warns)
    return [Launcher("rlimits", p, True) for p in usable] + [Launcher("rlimits", python, False)]


class UidPool:
    """Hands out per-run uids, least recently used first, never the same one to two runs at once."""

    def __init__(self) -> None:
        self._free = collections.deque(range(UID_SLOTS))
        self._ready = threading.Condition()

    def acquire(self) -> int:
        with self._ready:
            self._ready.wait_for(lambda: self._free)
            slot = self._free.popleft()
        return UID_BASE + (os.getpid() % (1 << 22)) * UID_SLOTS + slot

    def release(self, uid: int) -> None:
        with self._ready:
            self._free.append((uid - UID_BASE) % UID_SLOTS)
            self._ready.notify()


def environment(workdir: str, marker: str) -> dict[str, str]:
    """The whole environment of a sandboxed program (nothing is inherited)."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONIOENCODING": "utf-8",
            "PYTHONDONTWRITEBYTECODE": "1", MARKER_VAR: marker}


def _matches(pid: str, uid: int | None, marker: bytes | None) -> bool:
    try:
        if uid is not None:
            with open(f"/proc/{pid}/status", "rb") as f:
                fields = dict(line.split(b":", 1) for line in f.read().splitlines() if b":" in line)
            return int(fields[b"Uid"].split()[0]) == uid and not fields[b"State"].strip().startswith(b"Z")
        with open(f"/proc/{pid}/environ", "rb") as f:
            return marker in f.read().split(b"\0")
    except (OSError, KeyError, ValueError, IndexError):
        return False


def sweep(uid: int | None = None, marker: str | None = None, wait_s: float = 2.0) -> int:
    """SIGKILL every live process with real uid ``uid`` (root runs) or with ``marker`` in its environment
    (ours, or one that escaped our process group). Repeats until none is left; returns how many were killed."""
    needle = f"{MARKER_VAR}={marker}".encode() if marker is not None else None
    killed, deadline = 0, time.monotonic() + wait_s
    while True:
        found = [int(p) for p in os.listdir("/proc") if p.isdigit() and _matches(p, uid, needle)]
        found = [p for p in found if p != os.getpid()]
        if not found or time.monotonic() > deadline:
            return killed
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
        time.sleep(0.005)


def remove_tree(path: str) -> None:
    """Delete a run's working directory, whatever permissions the program left on it."""
    def retry(func, target, _exc):
        try:
            os.chmod(os.path.dirname(target), 0o700)
            os.chmod(target, 0o700)
        except OSError:
            pass
        try:
            func(target)
        except OSError:
            pass
    shutil.rmtree(path, onerror=retry)
