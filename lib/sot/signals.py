"""Stop a long stage at a safe point when SIGTERM or SIGINT arrives (what Slurm, Colab and Ctrl-C send).

Inside `deferred_signals()`, the first SIGTERM or SIGINT only records the request; the long loops (the shards
of sot.resume, the optimizer steps of sot.sft) call `check()` at their safe points (a shard written, a
checkpoint complete) and `check()` then raises `StopRequested`. A second signal while the first is pending
stops at once (SIGINT: KeyboardInterrupt; SIGTERM: exit status 143), which is still safe: every shard and
checkpoint is written to a temp name and committed last, so a write cut short is absent, never half there.
Handlers can only be installed in the main thread; elsewhere the context is a no-op (and says so in the log).
"""
from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager

log = logging.getLogger(__name__)
SIGNALS = (signal.SIGTERM, signal.SIGINT)

_state = {"depth": 0, "received": None, "previous": {}}


class StopRequested(KeyboardInterrupt):
    """Raised at a safe point after SIGTERM/SIGINT; what was finished is on disk and a rerun resumes from it."""

    def __init__(self, signum: int | None, where: str):
        self.signum = signum
        what = f"{signal.Signals(signum).name} received" if signum else "another process received a stop signal"
        super().__init__(f"{what}: stopped at a safe point ({where}); everything finished so far is kept, "
                         "run the stage again (`dvc repro`) to resume")


def _handler(signum, frame):
    if _state["received"] is not None:        # a second signal: stop now (the writes are atomic)
        _restore()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopped at once")
        raise SystemExit(128 + signum)
    _state["received"] = signum
    log.warning("%s received: finishing the current shard / step, then stopping (send it again to stop now)",
                signal.Signals(signum).name)


def _restore() -> None:
    for signum, previous in _state["previous"].items():
        signal.signal(signum, previous)
    _state["previous"] = {}


@contextmanager
def deferred_signals():
    """While inside, SIGTERM/SIGINT set a flag that `check()` turns into StopRequested. Nests; the outermost
    context installs the handlers and restores the previous ones (and clears the flag) on exit."""
    outermost = _state["depth"] == 0
    if outermost:
        _state["received"] = None
        if threading.current_thread() is threading.main_thread():
            _state["previous"] = {s: signal.signal(s, _handler) for s in SIGNALS}
        else:
            log.info("not in the main thread: SIGTERM/SIGINT keep their default behaviour here")
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        if outermost:
            _restore()
            _state["received"] = None


def requested() -> int | None:
    """The signal number of a pending stop request, else None."""
    return _state["received"]


def check(where: str) -> None:
    """Raise StopRequested if a stop was requested; call it only where everything so far is safely on disk."""
    if _state["received"] is not None:
        raise StopRequested(_state["received"], where)
