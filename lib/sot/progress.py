"""Progress bars that suit where the code runs: `from sot.progress import tqdm` everywhere the library shows progress.

- In a Jupyter kernel (JupyterLab, Colab) with ipywidgets: tqdm's widget bar.
- Under `python -m sot.nb run` (papermill; the runner sets SOT_PROGRESS=text) and wherever stderr is not a
  terminal (DVC logs, CI): plain text, one whole line per refresh, at most every SOT_PROGRESS_INTERVAL
  seconds (default 10) plus the final state, with the rate (samples/s, tok/s). An executed report then holds a
  few readable lines instead of carriage-return redraws or widget state, and the log shows how far a stage got.
- In a terminal: tqdm's ordinary bar.

SOT_PROGRESS=text|widget|terminal forces one mode. `use_text_bars_everywhere()` (called by `sot.nb.setup`; in a
kernel in text mode) points tqdm.auto at the text bar too, so the bars of transformers, datasets and TRL that are
created after it print lines as well instead of widgets.
"""
from __future__ import annotations

import os
import re
import sys

from tqdm.std import tqdm as std_tqdm

MODES = ("text", "widget", "terminal")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def mode() -> str:
    """'text', 'widget' or 'terminal' for a bar created now (see the module docstring)."""
    forced = os.environ.get("SOT_PROGRESS", "").strip().lower()
    if forced:
        if forced not in MODES:
            raise ValueError(f"SOT_PROGRESS={forced!r}: expected one of {', '.join(MODES)} (or unset it)")
        return forced
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    if type(shell).__name__ == "ZMQInteractiveShell":  # running in a Jupyter kernel (not just ipykernel imported)
        try:
            import ipywidgets  # noqa: F401
        except ImportError:
            return "text"  # rather than tqdm's "IProgress not found" warning and a frozen text bar
        return "widget"
    stream = sys.stderr
    return "terminal" if stream is not None and hasattr(stream, "isatty") and stream.isatty() else "text"


def interval() -> float:
    """Seconds between two text lines of one bar (SOT_PROGRESS_INTERVAL, default 10)."""
    raw = os.environ.get("SOT_PROGRESS_INTERVAL", "10")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"SOT_PROGRESS_INTERVAL={raw!r}: expected a number of seconds") from None
    if value < 0:
        raise ValueError(f"SOT_PROGRESS_INTERVAL={raw!r}: expected a number of seconds >= 0")
    return value


class LineWriter:
    """A file for tqdm that turns its redraws (carriage returns, cursor moves, padding) into whole lines,
    skipping blank writes and a line equal to the one before (tqdm redraws the final state on close)."""

    def __init__(self, stream):
        self.stream = stream
        self.last: str | None = None

    def write(self, text: str) -> None:
        for part in re.split(r"[\r\n]", _ANSI.sub("", text)):
            line = part.strip()
            if line and line != self.last:
                self.stream.write(line + "\n")
                self.last = line

    def flush(self) -> None:
        self.stream.flush()


class TextTqdm(std_tqdm):
    """tqdm printing plain lines (see LineWriter); every bar keeps its final line (leave=True), so a log
    always ends with the count and rate reached."""

    def __init__(self, *args, **kwargs):
        kwargs["file"] = LineWriter(kwargs.get("file") or sys.stderr)
        kwargs.setdefault("mininterval", interval())
        kwargs.setdefault("ascii", True)
        kwargs.setdefault("bar_format", "{l_bar}{bar:20}{r_bar}")
        kwargs["leave"] = True
        kwargs["dynamic_ncols"] = False
        super().__init__(*args, **kwargs)


def bar_class() -> type:
    """The tqdm class for a bar created now."""
    current = mode()
    if current == "widget":
        from tqdm.notebook import tqdm as notebook_tqdm
        return notebook_tqdm
    return TextTqdm if current == "text" else std_tqdm


def tqdm(*args, **kwargs):
    """Drop-in for `tqdm.tqdm(...)` (iterable or total=, used directly or as a context manager)."""
    return bar_class()(*args, **kwargs)


def use_text_bars_everywhere() -> None:
    """Make `tqdm.auto.tqdm` (what transformers, datasets, TRL and huggingface_hub use) the text bar in this
    process, for bars created from now on: in a papermill kernel they would otherwise be widgets, whose state
    the executed notebook would store. Only in a Jupyter kernel in text mode; a no-op elsewhere."""
    if "ipykernel.zmqshell" not in sys.modules or mode() != "text":
        return
    import tqdm.auto
    import tqdm.autonotebook

    for module in (tqdm.auto, tqdm.autonotebook):
        module.tqdm = TextTqdm
        module.trange = lambda *args, **kwargs: TextTqdm(range(*args), **kwargs)
