"""One memory (and process) limit for a whole sandboxed program: a cgroup of its own per run.

    how = sot.sandbox_cgroup.support()        # "cgroup2", "cgroup1" or None (probed once per process)
    group = sot.sandbox_cgroup.create(memory_bytes, max_pids)   # None when no cgroup can be made here
    go_read, go_write = os.pipe()
    proc = subprocess.Popen(group.wrap(command), stdin=go_read, ...)   # waits for "go" on its stdin
    joined = group.join(proc.pid); os.write(go_write, b"\n")   # then it execs ``command``, inside the group
    ...; group.remove()                       # kills whatever is left inside, then deletes the group

cgroup v2 where the machine lets us create a child of our own cgroup with the memory and pids controllers
(as root, or under a delegated cgroup); else cgroup v1's memory and pids hierarchies (hybrid machines, e.g.
this project's CI box); else nothing, and ``sot.sandbox`` keeps its per-process rlimits only (the verdict
records which applied). The process starts as ``/bin/sh`` blocked on a pipe; the caller writes its pid to the
group's ``cgroup.procs`` files, then says "go", and the shell execs the real command, so nothing it starts is
ever outside the group. (The caller moves it: a process that moves itself waits ~10 ms for the kernel.)
"""
from __future__ import annotations

import functools
import itertools
import os
import secrets
import signal
import time
from dataclasses import dataclass

_counter = itertools.count()
WAIT_FOR_GO = 'read go || exit 125; exec "$@" </dev/null'  # its stdin is the go pipe (dash takes fds 0-9 only)
GO_MISSING = 125  # exit status of the wrapper when the caller closed the pipe without saying "go"


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, fstype, super options) of every cgroup mount of this process."""
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields, rest = left.split(), right.split()
                if len(fields) > 4 and len(rest) >= 3 and rest[0] in ("cgroup", "cgroup2"):
                    found.append((fields[4], rest[0], set(rest[2].split(","))))
    except OSError:
        pass
    return found


def _own_paths() -> dict[str, str]:
    """Our cgroup path per hierarchy: "" for v2, else each controller name ("memory", "pids")."""
    paths = {}
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                for name in controllers.split(",") if controllers else [""]:
                    paths[name] = path
    except (OSError, ValueError):
        pass
    return paths


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _v2_parent() -> str | None:
    """Our own v2 cgroup, with memory and pids enabled for its children (enabling them if we may)."""
    own = _own_paths().get("")
    for point, fstype, _ in _mounts():
        if fstype != "cgroup2" or own is None:
            continue
        parent = os.path.join(point, own.lstrip("/"))
        try:
            with open(os.path.join(parent, "cgroup.controllers")) as f:
                available = set(f.read().split())
            if not {"memory", "pids"} <= available:
                continue
            with open(os.path.join(parent, "cgroup.subtree_control")) as f:
                enabled = set(f.read().split())
            if not {"memory", "pids"} <= enabled:
                _write(os.path.join(parent, "cgroup.subtree_control"), "+memory +pids")
            return parent
        except OSError:
            continue
    return None


def _v1_parents() -> dict[str, str] | None:
    """Our own cgroups in the v1 memory and pids hierarchies, when both are mounted."""
    own, parents = _own_paths(), {}
    for point, fstype, options in _mounts():
        for name in ("memory", "pids"):
            if fstype == "cgroup" and name in options and name in own:
                parents[name] = os.path.join(point, own[name].lstrip("/"))
    return parents if set(parents) == {"memory", "pids"} else None


@dataclass
class Group:
    """One run's cgroup: ``dirs`` are its directories (one for v2, memory + pids for v1)."""
    kind: str
    dirs: tuple[str, ...]

    def wrap(self, command: list[str]) -> list[str]:
        """``command``, started (with stdin /dev/null) only once a line arrives on the wrapper's stdin: the
        caller ``join``s the wrapper's pid to this group first."""
        return ["/bin/sh", "-c", WAIT_FOR_GO, "sh", *command]

    def join(self, pid: int) -> bool:
        """Move process ``pid`` into this group (all hierarchies); False when the kernel refused."""
        try:
            for d in self.dirs:
                _write(os.path.join(d, "cgroup.procs"), str(pid))
            return True
        except OSError:
            return False

    def pids(self) -> set[int]:
        found = set()
        for d in self.dirs:
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    found.update(int(p) for p in f.read().split())
            except (OSError, ValueError):
                pass
        return found

    def oom_killed(self) -> bool:
        """True when the kernel killed a process of this group for its memory limit."""
        name = "memory.events" if self.kind == "cgroup2" else "memory.oom_control"
        try:
            with open(os.path.join(self.dirs[0], name)) as f:
                fields = dict(line.split()[:2] for line in f if len(line.split()) >= 2)
            return int(fields.get("oom_kill", 0)) > 0
        except (OSError, ValueError):
            return False

    def remove(self, wait_s: float = 2.0) -> None:
        """Kill every process left in the group, then delete it (retrying while the kernel reaps them)."""
        deadline = time.monotonic() + wait_s
        kill_file = os.path.join(self.dirs[0], "cgroup.kill")
        while True:
            left = self.pids()
            if self.kind == "cgroup2" and left and os.path.exists(kill_file):
                try:
                    _write(kill_file, "1")
                except OSError:
                    pass
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            busy = False
            for d in self.dirs:
                try:
                    os.rmdir(d)
                except FileNotFoundError:
                    pass
                except OSError:
                    busy = True
            if not busy or time.monotonic() > deadline:
                return
            time.sleep(0.005)


@functools.lru_cache(maxsize=None)
def _parents() -> tuple[str, tuple[str, ...]] | None:
    """("cgroup2", (parent,)) or ("cgroup1", (memory parent, pids parent)) after a probe; None if neither."""
    v2 = _v2_parent()
    if v2 is not None:
        candidate = ("cgroup2", (v2,))
        if _probe(*candidate):
            return candidate
    v1 = _v1_parents()
    if v1 is not None:
        candidate = ("cgroup1", (v1["memory"], v1["pids"]))
        if _probe(*candidate):
            return candidate
    return None


def _remove_stale(parents: tuple[str, ...]) -> None:
    """Delete the (empty) groups that runs of processes no longer alive left behind (a killed grader)."""
    for parent in parents:
        try:
            names = [n for n in os.listdir(parent) if n.startswith("sot-sandbox-")]
        except OSError:
            continue
        for name in names:
            pid = name.split("-")[2]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                try:
                    os.rmdir(os.path.join(parent, name))
                except OSError:
                    pass


def _probe(kind: str, parents: tuple[str, ...]) -> bool:
    _remove_stale(parents)
    try:
        group = _make(kind, parents, 64 << 20, 8)
    except OSError:
        return False
    group.remove()
    return True


def _make(kind: str, parents: tuple[str, ...], memory_bytes: int, max_pids: int) -> Group:
    name = f"sot-sandbox-{os.getpid()}-{next(_counter)}-{secrets.token_hex(3)}"
    dirs = tuple(os.path.join(p, name) for p in parents)
    group = Group(kind, ())
    try:
        for d in dirs:
            os.mkdir(d)
            group.dirs += (d,)
        if kind == "cgroup2":
            _write(os.path.join(dirs[0], "memory.max"), str(memory_bytes))
            if os.path.exists(os.path.join(dirs[0], "memory.swap.max")):
                _write(os.path.join(dirs[0], "memory.swap.max"), "0")
            _write(os.path.join(dirs[0], "pids.max"), str(max_pids))
        else:
            _write(os.path.join(dirs[0], "memory.limit_in_bytes"), str(memory_bytes))
            memsw = os.path.join(dirs[0], "memory.memsw.limit_in_bytes")
            if os.path.exists(memsw):
                _write(memsw, str(memory_bytes))
            _write(os.path.join(dirs[1], "pids.max"), str(max_pids))
    except OSError:
        group.remove(wait_s=0.5)
        raise
    return group


def support() -> str | None:
    """"cgroup2" or "cgroup1" when each run can get a cgroup of its own here, else None."""
    found = _parents()
    return found[0] if found else None


def create(memory_bytes: int, max_pids: int) -> Group | None:
    """A fresh cgroup limiting the memory and the number of tasks of everything put in it; None if unsupported
    here (or if making this one failed: the caller falls back to rlimits and says so)."""
    found = _parents()
    if found is None:
        return None
    try:
        return _make(found[0], found[1], memory_bytes, max_pids)
    except OSError:
        return None
