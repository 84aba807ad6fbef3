"""Run untrusted model-written Python (MBPP) safely: one subprocess per program, limits, no network.

    from sot.sandbox import run_program, run_many, isolation
    result = run_program(test_setup_code + code + "\\n" + "\\n".join(test_list), timeout=10)
    result.passed, result.status, result.seconds, result.output
    results = run_many(sources, workers=None)      # all cores, results in input order
    result = run_program(code, steps=[("call", "add(2, 3)")])   # result.steps[0].value == 5 (plain data)

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
``memory_mb`` per process, CPU, processes incl. threads, file size, no core dumps), output read through a
bounded buffer (the tail is kept, the rest dropped), wall-clock ``timeout``. Where the machine allows it (root, or
a delegated cgroup) each run also gets a cgroup of its own (``sot.sandbox_cgroup``: v2, else v1) that bounds the
memory of ALL its processes together to ``memory_mb`` and their number; ``RunResult.memory_limit`` says which
applied ("cgroup2", "cgroup1" or "rlimits", where the worst case is ``max_processes * memory_mb``). Under
bubblewrap the hostname is "sandbox". As root, each run gets its own unused uid (the kernel ignores RLIMIT_NPROC
for root, so only a uid of its own bounds a fork bomb); a timed-out or killed run is swept by that uid,
otherwise by an environment marker, and its cgroup is emptied and removed. Programs run under ``python -S`` (no
site: only the standard library; ``exit()``/``quit()`` do not exist).

Verdicts: the runner executes the program with ``exec`` in a fresh namespace, then the ``steps`` it was given:
test CALLS (``("call", "add(2, 3)")``), whose values it writes as plain data to a result pipe of their own, one
line per step, in order (``sot.sandbox_verdict``); the caller compares them with expected values that never
enter the sandbox (``sot.sandbox_checks``). Only when everything ran does it read a random per-run nonce from
an inherited pipe and write it as the last line there. The program shares that process, so it can read the
nonce pipe or write to the result pipe itself; what it cannot do is know the expected values, and objects
whose ``==`` always answers True never reach the comparison (only builtin data is rebuilt). The nonce matters
only for plain programs (``run_program(source)`` with asserts inside, e.g. the authors' rule, and the rare
MBPP assert that must stay in-process): that path is forgeable by code written to defeat it and is named as
the weaker one wherever it is used. A pass needs exit status 0, every step answered and the end line, so
``sys.exit(0)``, ``os._exit(0)``, a crash, or a printed fake success line never pass.
"""
from __future__ import annotations

import functools
import itertools
import logging
import marshal
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

from sot import sandbox_cgroup
from sot import sandbox_launch as launch
from sot import sandbox_verdict as verdict
from sot.sandbox_launch import Launcher, Limits

log = logging.getLogger(__name__)
CGROUP_EXTRA_PIDS = 4  # bwrap's own processes and the runner's supervisor, beside the program's max_processes
STATUSES = ("passed", "failed", "exited_early", "timeout", "killed")
PROBE_SOURCE = "import collections, heapq, itertools, math, re\nassert math.gcd(12, 18) == 6\n"
_counter = itertools.count()
_uids = launch.UidPool()


class SandboxUnavailable(RuntimeError):
    """The requested isolation mode cannot run programs on this machine."""


@dataclass(frozen=True)
class RunResult:
    """passed: ran to its end (every step answered, the end line with this run's nonce) and exited 0; status: one
    of STATUSES; output: tail of stdout+stderr; steps: one ``sot.sandbox_verdict.Outcome`` per step (values as
    plain builtin data); channel_error: why the result channel was rejected (None: it was well-formed);
    memory_limit: what bounded the program's memory, "cgroup2" or "cgroup1" (one limit for all its processes)
    or "rlimits" (per process only)."""
    passed: bool
    status: str
    seconds: float
    output: str
    steps: tuple = ()
    channel_error: str | None = None
    memory_limit: str = "rlimits"


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
                mode: str | None = None, steps: tuple = ()) -> RunResult:
    """Run ``source`` in the sandbox, then ``steps`` (("call", expression) or ("exec", statement) pairs) in its
    namespace; the calls' values come back in ``RunResult.steps``. ``cpu_seconds`` defaults to timeout + 1
    (so the wall clock fires first); ``memory_mb`` bounds each process (RLIMIT_AS) and, where a cgroup is
    available, all of them together; ``max_processes`` counts threads too; ``disk_mb`` sizes each writable tmpfs
    (bubblewrap only); ``mode`` None uses ``isolation()``."""
    limits = Limits(timeout, memory_mb, cpu_seconds, file_size_mb, output_limit, max_processes, disk_mb)
    return _run(launcher(mode or isolation()), source, limits, tuple(tuple(step) for step in steps))


def run_many(sources: list[str], workers: int | None = None, progress: bool = False, steps: list | None = None,
             **limits) -> list[RunResult]:
    """``run_program`` over ``sources`` (with ``steps[i]`` for source i, if given) on ``workers`` threads
    (default: all cores); results in input order."""
    mode = limits.pop("mode", None) or isolation()
    launcher(mode)  # probe once here, not in every thread
    workers = workers or os.cpu_count() or 1
    if steps is not None and len(steps) != len(sources):
        raise ValueError(f"run_many: {len(sources)} sources but {len(steps)} step lists")
    run = functools.partial(run_program, mode=mode, **limits)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda i: run(sources[i], steps=steps[i] if steps else ()), range(len(sources)))
        if progress:
            from sot.progress import tqdm
            results = tqdm(results, total=len(sources), desc="sandbox", unit="prog")
        return list(results)


def _run(how: Launcher, source: str, limits: Limits, steps: tuple = ()) -> RunResult:
    """Start the runner with the program (and its steps) in a memfd, the nonce in a pipe and a pipe for the
    results; collect; classify; clean up (the process group, the uid or marker sweep, the cgroup)."""
    start = time.monotonic()
    nonce = secrets.token_hex(16)
    marker = f"{os.getpid()}-{next(_counter)}-{secrets.token_hex(4)}"
    uid = _uids.acquire() if how.drop_uid else -1
    workdir = tempfile.mkdtemp(prefix=f"sot-sandbox-{os.getpid()}-") if how.mode == "rlimits" else None
    group = sandbox_cgroup.create(limits.memory_mb << 20, limits.max_processes + CGROUP_EXTRA_PIDS)
    source_fd = os.memfd_create("sot-program")
    nonce_read, nonce_write = os.pipe()
    result_read, result_write = os.pipe()
    go_read, go_write = os.pipe() if group else (-1, -1)
    proc, joined = None, False
    try:
        _write_all(source_fd, marshal.dumps((source, tuple(steps))))
        os.lseek(source_fd, 0, os.SEEK_SET)
        os.write(nonce_write, nonce.encode())
        os.close(nonce_write)
        if workdir and uid >= 0:
            os.chown(workdir, uid, uid)
        command = how.command(uid, source_fd, result_write, nonce_read, limits)
        proc = subprocess.Popen(
            group.wrap(command) if group else command, stdin=go_read if group else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=(how.code_fd(), source_fd, result_write,
                                                                         nonce_read), cwd=workdir or "/",
            env=launch.environment(workdir or launch.SANDBOX_DIR, marker), start_new_session=True)
        for fd in (source_fd, nonce_read, result_write, go_read):
            if fd >= 0:
                os.close(fd)
        source_fd = nonce_read = result_write = go_read = -1
        if group:  # the wrapper waits: join it to its cgroup, then let it exec the runner
            joined = group.join(proc.pid)
            try:
                os.write(go_write, b"\n")
            except OSError:
                pass  # the wrapper is gone already: _collect sees it exit
            os.close(go_write)
            go_write = -1
        output, results, timed_out, clean = _collect(proc, result_read, start + limits.timeout, limits.output_limit)
        if timed_out or not clean or proc.returncode < 0:
            _kill(proc, uid, marker)
    finally:
        for fd in (source_fd, nonce_read, result_write, result_read, go_read, go_write):
            if fd >= 0:
                os.close(fd)
        if proc is not None:
            if proc.returncode is None:
                _kill(proc, uid, marker)
            proc.stdout.close()
        oom = group.oom_killed() if group else False
        if group:
            group.remove()
        if workdir:
            launch.remove_tree(workdir)
        if uid >= 0:
            _uids.release(uid)
    memory = group.kind if joined else "rlimits"
    return _classify(proc.returncode, output, results, len(steps), nonce, timed_out, clean,
                     time.monotonic() - start, memory, oom)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _collect(proc: subprocess.Popen, result_fd: int, deadline: float, limit: int) -> tuple[bytes, bytes | None,
                                                                                             bool, bool]:
    """Read stdout+stderr (keeping the last ``limit`` bytes) and the result channel (all of it, up to
    RESULT_LIMIT: None when it overflowed) until both reach EOF or the deadline.
    Returns (tail, results, timed_out, clean); not clean: the runner exited but something else kept a pipe open,
    or the result channel overflowed."""
    out_fd = proc.stdout.fileno()
    poller = select.poll()
    for fd in (out_fd, result_fd):
        os.set_blocking(fd, False)
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    tail, results, dropped, exited_at, open_fds = bytearray(), bytearray(), 0, None, {out_fd, result_fd}
    timed_out, clean, overflow = False, True, False
    while open_fds:
        now = time.monotonic()
        if now >= deadline:
            timed_out = True
            break
        if exited_at is None and proc.poll() is not None:
            exited_at = now
        if exited_at is not None and now - exited_at > 0.2:
            clean = False  # a leftover process holds a pipe; the sweep will end it
            break
        for fd, _ in poller.poll(max(1, min(100, int((deadline - now) * 1000) + 1))):
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                poller.unregister(fd)
                open_fds.discard(fd)
            elif fd == out_fd:
                tail += chunk
                if len(tail) > limit:
                    dropped += len(tail) - limit
                    del tail[:len(tail) - limit]
            else:
                results += chunk
                if len(results) > verdict.RESULT_LIMIT:
                    overflow = True
                    open_fds.clear()
                    break
    if dropped:
        tail[:0] = b"[... %d bytes of output dropped ...]\n" % dropped
    if overflow:
        clean = False
    elif not (timed_out or not clean):
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
    return bytes(tail), None if overflow else bytes(results), timed_out, clean


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


def _classify(returncode: int | None, output: bytes, results: bytes | None, steps: int, nonce: str,
              timed_out: bool, clean: bool, seconds: float, memory: str, oom: bool) -> RunResult:
    outcomes, finished, channel_error = (verdict.MISSING,) * steps, False, None
    if results is None:
        channel_error = f"the result channel went over {verdict.RESULT_LIMIT} bytes"
    else:
        try:
            outcomes, finished = verdict.read_channel(results, steps, nonce)
        except verdict.Malformed as err:
            channel_error = f"malformed result channel: {err}"
    signals = {int(s) for s in signal.Signals}
    if timed_out:
        status = "timeout"
    elif returncode == 0 and channel_error is None and clean:
        status = "passed" if finished else "exited_early"
    elif returncode is not None and (returncode < 0 or returncode - 128 in signals):
        status = "killed"
    else:
        status = "failed"
    text = output.decode("utf-8", "replace")
    if oom:
        text += "\n[the kernel killed a process of this program: over its memory limit]"
    return RunResult(status == "passed", status, round(seconds, 4), text, outcomes, channel_error, memory)
