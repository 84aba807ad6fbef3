"""Shared pieces of the figures (sot.plots) and the results table (sot.tables): set names, order and colours,
input-frame checks, the figure context (Agg canvas, no pyplot) and atomic saving in the configured formats."""
from __future__ import annotations

import re
import textwrap
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sot.io import atomic_path

BASE = "base"
_F_SET = re.compile(r"^F(\d+)$")
_FIXED = {"H": "#4d4d4d", "P": "#8e6bbf", "G": "#2a9d5c", "W": "#d1495b"}
SET_MEANING = ("H = human traces (reference), P = H paraphrased toward the model's style, "
               "G / W = teacher traces graded correct / wrong, Fk = k % of traces completely flawed")


def set_order(names) -> list[str]:
    """H, P, G, W, then F<pct> by pct, then any other names alphabetically; "base" is left out."""
    names = [n for n in dict.fromkeys(names) if n != BASE]
    fixed = [n for n in ("H", "P", "G", "W") if n in names]
    flawed = sorted((n for n in names if _F_SET.match(n)), key=lambda n: int(_F_SET.match(n)[1]))
    rest = sorted(n for n in names if n not in fixed and n not in flawed)
    return fixed + flawed + rest


def set_color(name: str):
    if name in _FIXED:
        return _FIXED[name]
    if m := _F_SET.match(name):
        import matplotlib as mpl
        return mpl.colormaps["Blues"](0.35 + 0.6 * min(int(m[1]), 100) / 100)
    return sns.color_palette("tab10")[sum(map(ord, name)) % 10]


def _accuracy_frame(data) -> pd.DataFrame:
    df = _frame(data, ("task", "student", "set", "strict", "strict_lo", "strict_hi", "n"), "accuracy")
    dup = df[df.duplicated(["task", "student", "set"], keep=False)]
    if len(dup):
        raise ValueError(f"accuracy data: duplicate (task, student, set) rows, e.g. "
                         f"{tuple(dup.iloc[0][['task', 'student', 'set']])}; keep one row per evaluation")
    return df


def _frame(data, required: tuple[str, ...], what: str) -> pd.DataFrame:
    df = data.copy() if isinstance(data, pd.DataFrame) else pd.DataFrame(list(data))
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{what} data: missing column(s) {missing}; required {list(required)}, "
                         f"present {list(df.columns)} (see the sot.plots docstring)")
    if df.empty:
        raise ValueError(f"{what} data: no rows")
    return df


@contextmanager
def _figure(nrows: int, ncols: int, width: float, height: float, **kw):
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
        fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
        yield fig, axes


OUTPUT = {"formats": ("png", "pdf"), "dpi": 150}  # set by set_output (params.yaml: figures.formats, dpi)
_SAVE_OPTIONS = {"png": {"metadata": {"Software": None}}, "pdf": {"metadata": {"CreationDate": None}},
                 "svg": {"metadata": {"Date": None}}}


def set_output(formats=("png", "pdf"), dpi: int = 150) -> None:
    """Choose the file formats and raster resolution every figure function writes."""
    unknown = [f for f in formats if f not in _SAVE_OPTIONS]
    if unknown or not formats:
        raise ValueError(f"params.yaml figures.formats: unsupported {unknown or formats}; use png, pdf, svg")
    OUTPUT.update(formats=tuple(formats), dpi=int(dpi))


def _save(fig: Figure, out_stem, title: str, caption: str) -> list[Path]:
    fig.suptitle(title, fontsize="large", fontweight="bold")
    chars = int(fig.get_figwidth() * 15)  # about 15 characters per inch at the "small" font size
    fig.supxlabel("\n".join(textwrap.fill(part, chars) for part in caption.split("\n")),
                  fontsize="small", color="dimgray")
    paths = []
    for fmt in OUTPUT["formats"]:
        extra = dict(_SAVE_OPTIONS[fmt], dpi=OUTPUT["dpi"])
        path = Path(f"{out_stem}.{fmt}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, bbox_inches="tight", **extra)
        paths.append(path)
    return paths


def _accuracy_top(strict_hi) -> float:
    """Upper y limit (%) for accuracy axes: room above the highest interval, at least 5 % so all-zero panels read."""
    return min(100, 100 * float(np.nanmax(np.asarray(strict_hi, float), initial=0)) * 1.15 + 5)


def _n_text(ns) -> str:
    ns = sorted({int(n) for n in ns})
    return f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]}-{ns[-1]}"
