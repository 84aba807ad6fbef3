"""Run untrusted model-written Python (MBPP) safely: one subprocess per program, limits, no network.

    from sot.sandbox import run_program, run_many, isolation
    result = run_program(test_setup_code + code + "\\n" + "\\n".join(test_list), timeout=10)
    result.passed, result.status, result.seconds, result.output
    results = run_many(sources, workers=None)      # all cores, results in input order

Isolation (``isolation()`` says which one is in use; ``mode=`` forces one):
- "bubblewrap": read-only /usr and Python prefix, nothing else of the host (no repo, no home), private
  tmpfs /tmp and working dir /sandbox (``disk_mb`` each), no network, own IPC/UTS/PID namespaces. The
  runner is PID 1 of its PID namespace: when it exits, or when we kill bwrap (``--die-with-parent``), the
  kernel kills every process left inside, including ones that called setsid() or double-forked.
- "rlimits" (fallback when bubblewrap is missing or user namespaces are blocked; warned once): a new session,
  a fresh temp dir as cwd, rlimits, a subreaper supervisor that kills the program's leftovers, and an audit
  hook that refuses writes outside the temp dir, sockets, exec, ctypes and signals to foreign processes.
  The hook stops accidents, not a determined attacker; files outside stay readable.
Both: scrubbed environment (PYTHONHASHSEED=0, so set order is reproducible), rlimits (address space
``memory_mb``, CPU, processes incl. threads, file size, no core dumps), output read through a bounded buffer
(the tail is kept, the rest dropped), wall-clock ``timeout``. As root, each run gets its own unused uid (the
kernel ignores RLIMIT_NPROC for root, so only a uid of its own bounds a fork bomb); a timed-out or killed run
is swept by that uid, otherwise by an environment marker. Programs run under ``python -S`` (no site: only the
standard library; ``exit()``/``quit()`` do not exist). Worst case memory is ``max_processes * memory_mb``:
there is no cgroup.

Passing: the runner executes the program with ``exec`` in a fresh namespace; only if that returns normally
does it read a random per-run nonce from an inherited pipe and print it as the last line. A pass needs that
line and exit status 0, so ``sys.exit(0)``, ``os._exit(0)``, a crash, or a printed fake success line never
pass. Limit: the nonce never exists in the program's memory, but the pipe is an open fd of its process; code
written to defeat this runner (list /proc/self/fd, read the pipe, print) could forge a pass, as could objects
whose ``__eq__`` always returns True. The sandbox contains damage; it does not prove honesty.
"""
from __future__ import annotations

import functools
import itertools
import logging
import os
import secrets
import select
import signal
import subprocess
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sot import sandbox_launch as launch
from sot.sandbox_launch import Launcher, Limits

log = logging.getLogger(__name__)
DONE_PREFIX = b"__sot_sandbox_done__ "
STATUSES = ("passed", "failed", "exited_early", "timeout", "killed")
PROBE_SOURCE = "import collections, heapq, itertools, math, re\nassert math.gcd(12, 18) == 6\n"
_counter = itertools.count()
_uids = launch.UidPool()


class SandboxUnavailable(RuntimeError):
    """The requested isolation mode cannot run programs on this machine."""


@dataclass(frozen=True)
class RunResult:
    """passed: ran to its end and exited 0; status: one of STATUSES; output: tail of stdout+stderr."""
    passed: bool
    status: str
    seconds: float
    output: str


@functools.lru_cache(maxsize=None)
def launcher(mode: str) -> Launcher:
    """The first launcher for ``mode`` that runs a probe program correctly (cached per process)."""
    failures = []
    for candidate in launch.candidates(mode):
        try:
            result = _run(candidate, PROBE_SOURCE, Limits(timeout=20.0))
        except (OSError, RuntimeError, subprocess.SubprocessError) as err:
            failures.append(f"{candidate.python}: {err}")
            continue
        if result.passed:
            if mode == "rlimits" and not candidate.drop_uid and os.geteuid() == 0:
                warnings.warn("sandbox: no interpreter usable by an unprivileged uid; running as root, so a fork "
                              "bomb is not bounded (RLIMIT_NPROC does not apply to root)", RuntimeWarning)
            return candidate
        failures.append(f"{candidate.python}: {result.status}: {result.output.strip()[-300:]}")
    why = "; ".join(failures) or ("bwrap not found (apt-get install -y bubblewrap)" if mode == "bubblewrap"
                                  else "no interpreter found")
    raise SandboxUnavailable(f"sandbox mode {mode!r} does not work here: {why}")


@functools.lru_cache(maxsize=None)
def isolation() -> str:
    """"bubblewrap" when it works here (probed once), else "rlimits" with a one-time warning."""
    try:
        launcher("bubblewrap")
        return "bubblewrap"
    except SandboxUnavailable as err:
        message = (f"{err}. Falling back to rlimits-only isolation, which is weaker: no filesystem or network "
                   "namespace (an audit hook refuses writes and sockets instead).")
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        log.warning(message)
        launcher("rlimits")
        return "rlimits"


def run_program(source: str, timeout: float = 10.0, memory_mb: int = 2048, cpu_seconds: float | None = None,
                file_size_mb: int = 16, output_limit: int = 64_000, max_processes: int = 16, disk_mb: int = 64,
                mode: str | None = None) -> RunResult:
    """Run ``source`` in the sandbox. ``cpu_seconds`` defaults to timeout + 1 (so the wall clock fires first);
    ``max_processes`` counts threads too; ``disk_mb`` sizes each writable tmpfs (bubblewrap only);
    ``mode`` None uses ``isolation()``."""
    limits = Limits(timeout, memory_mb, cpu_seconds, file_size_mb, output_limit, max_processes, disk_mb)
    return _run(launcher(mode or isolation()), source, limits)


def run_many(sources: list[str], workers: int | None = None, progress: bool = False, **limits) -> list[RunResult]:
    """``run_program`` over ``sources`` on ``workers`` threads (default: all cores); results in input order."""
    mode = limits.pop("mode", None) or isolation()
    launcher(mode)  # probe once here, not in every thread
    workers = workers or os.cpu_count() or 1
    run = functools.partial(run_program, mode=mode, **limits)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(run, sources)
        if progress:
            from sot.progress import tqdm
            results = tqdm(results, total=len(sources), desc="sandbox", unit="prog")
        return list(results)


def _run(how: Launcher, source: str, limits: Limits) -> RunResult:
    """Start the runner with the program in a memfd and the nonce in a pipe; collect; classify; clean up."""
    start = time.monotonic()
    nonce = secrets.token_hex(16).encode()
    marker = f"{os.getpid()}-{next(_counter)}-{secrets.token_hex(4)}"
    uid = _uids.acquire() if how.drop_uid else -1
    workdir = tempfile.mkdtemp(prefix=f"sot-sandbox-{os.getpid()}-") if how.mode == "rlimits" else None
    source_fd = os.memfd_create("sot-program")
    nonce_read, nonce_write = os.pipe()
    proc = None
    try:
        _write_all(source_fd, source.encode("utf-8", "replace"))
        os.lseek(source_fd, 0, os.SEEK_SET)
        os.write(nonce_write, nonce)
        os.close(nonce_write)
        if workdir and uid >= 0:
            os.chown(workdir, uid, uid)
        proc = subprocess.Popen(
            how.command(uid, source_fd, nonce_read, limits), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, pass_fds=(how.code_fd(), source_fd, nonce_read), cwd=workdir or "/",
            env=launch.environment(workdir or launch.SANDBOX_DIR, marker), start_new_session=True)
        os.close(source_fd)
        os.close(nonce_read)
        source_fd = nonce_read = -1
        output, timed_out, clean = _collect(proc, start + limits.timeout, limits.output_limit)
        if timed_out or not clean or proc.returncode < 0:
            _kill(proc, uid, marker)
    finally:
        for fd in (source_fd, nonce_read):
            if fd >= 0:
                os.close(fd)
        if proc is not None:
            if proc.returncode is None:
                _kill(proc, uid, marker)
            proc.stdout.close()
        if workdir:
            launch.remove_tree(workdir)
        if uid >= 0:
            _uids.release(uid)
    return _classify(proc.returncode, output, nonce, timed_out, time.monotonic() - start)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _collect(proc: subprocess.Popen, deadline: float, limit: int) -> tuple[bytes, bool, bool]:
    """Read stdout+stderr until EOF or the deadline, keeping the last ``limit`` bytes.
    Returns (tail, timed_out, clean); not clean: the runner exited but something else kept the pipe open."""
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    tail, dropped, exited_at = bytearray(), 0, None
    timed_out, clean = False, True
    while True:
        now = time.monotonic()
        if now >= deadline:
            timed_out = True
            break
        if exited_at is None and proc.poll() is not None:
            exited_at = now
        if exited_at is not None and now - exited_at > 0.2:
            clean = False  # a leftover process holds the pipe; the sweep will end it
            break
        if not poller.poll(max(1, min(100, int((deadline - now) * 1000) + 1))):
            continue
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            continue
        if not chunk:
            break
        tail += chunk
        if len(tail) > limit:
            dropped += len(tail) - limit
            del tail[:len(tail) - limit]
    if dropped:
        tail[:0] = b"[... %d bytes of output dropped ...]\n" % dropped
    if not (timed_out or not clean):
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
    return bytes(tail), timed_out, clean


def _kill(proc: subprocess.Popen, uid: int, marker: str) -> None:
    """Kill the run's process group, then every process of its uid (root) or with its marker (else)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()
    if uid >= 0:
        launch.sweep(uid=uid)
    else:
        launch.sweep(marker=marker)


def _classify(returncode: int | None, output: bytes, nonce: bytes, timed_out: bool, seconds: float) -> RunResult:
    done_line = DONE_PREFIX + nonce
    finished = done_line in output
    text = output.replace(b"\n" + done_line + b"\n", b"").replace(done_line, b"").decode("utf-8", "replace")
    signals = {int(s) for s in signal.Signals}
    if timed_out:
        status = "timeout"
    elif returncode == 0:
        status = "passed" if finished else "exited_early"
    elif returncode is not None and (returncode < 0 or returncode - 128 in signals):
        status = "killed"
    else:
        status = "failed"
    return RunResult(status == "passed", status, round(seconds, 4), text)
