"""Paper figures and the results table. Every figure function takes plain data and an output path stem,
writes <stem>.png (dpi 150) and <stem>.pdf atomically, and returns the two paths. Figures are drawn on
matplotlib's Agg canvas without pyplot (no global state; safe in notebooks and workers).

Input data: pandas DataFrames (or lists of dicts) with these columns (extra columns are ignored):

accuracy    task, student, set, strict, strict_lo, strict_hi, n           (fractions in [0, 1])
            optional: authors, delta_vs_H, p_vs_H (p_vs_H < 0.05 draws a * over the bar)
            One row per evaluated (task, student, set); set is one of H, P, G, W, F0 ... F100, or "base"
            for the student without fine-tuning. sot.evaluate.accuracy_record builds these rows.
loss        task, set, step, tokens, loss          (optional: student; one row per logged step)
distance    task, set, nll                          (optional: ppl, student) mean per-token NLL (nats) of
            each training set's completions under the base student
steps       task, set, valid_fraction, n_steps     fraction of arithmetic steps that are valid

Functions: plot_accuracy_by_set, plot_tolerance, plot_loss_curves, plot_distance_vs_accuracy,
plot_step_validity, results_table (markdown), set_order.
"""
from __future__ import annotations

import math
import re
import textwrap
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import EngFormatter

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


def plot_accuracy_by_set(accuracy, out_stem, reference: str = "H", level: float = 0.95) -> list[Path]:
    """Bars of strict accuracy per training set with CIs; one panel per (student row, task column)."""
    df = _accuracy_frame(accuracy)
    tasks, students = list(dict.fromkeys(df["task"])), list(dict.fromkeys(df["student"]))
    n_bars = len(set_order(df.set))
    with _figure(len(students), len(tasks), max(4.2, 0.6 * n_bars + 1), 3.4) as (fig, axes):
        for r, student in enumerate(students):
            for c, task in enumerate(tasks):
                ax, sub = axes[r][c], df[(df.task == task) & (df.student == student)]
                bars = sub[sub.set != BASE].set_index("set").loc[set_order(sub.set)] if len(sub) else sub
                if bars.empty and not (sub.set == BASE).any():
                    ax.set_axis_off()
                    continue
                x = np.arange(len(bars))
                y = 100 * bars.strict.to_numpy(float)
                err = 100 * np.vstack([bars.strict - bars.strict_lo, bars.strict_hi - bars.strict]).astype(float)
                ax.bar(x, y, yerr=err, capsize=3, color=[set_color(s) for s in bars.index],
                       edgecolor=["black" if s == reference else "none" for s in bars.index],
                       hatch=["//" if s == reference else "" for s in bars.index], linewidth=1.2)
                if "p_vs_H" in bars:
                    for xi, hi, p in zip(x, bars.strict_hi, bars.p_vs_H):
                        if p is not None and not pd.isna(p) and p < 0.05:
                            ax.text(xi, 100 * hi + 1, "*", ha="center", fontsize="large")
                base = sub[sub.set == BASE]
                if len(base):
                    ax.axhline(100 * float(base.strict.iloc[0]), ls="--", color="black", lw=1)
                ax.set_xticks(x, [f"{s}\n(ref)" if s == reference else s for s in bars.index])
                ax.set_ylim(0, _accuracy_top(sub.strict_hi))
                ax.set_title(f"{task} · {student} ({_n_text(sub.n)})", fontsize="medium")
                ax.set_xlabel("training set")
                ax.set_ylabel("strict accuracy (%)")
        fig.legend(handles=[Patch(facecolor=set_color(reference), edgecolor="black", hatch="//",
                                  label=f"{reference}: reference set"),
                            Line2D([], [], ls="--", color="black", label="base student (no fine-tuning)"),
                            Line2D([], [], ls="", marker="$*$", color="black", label=f"p < 0.05 vs {reference}")],
                   loc="outside right center", frameon=False)
        return _save(fig, out_stem, "Test accuracy after fine-tuning on each training set",
                     f"Strict accuracy (unparseable answers count as wrong), greedy decoding; error bars: "
                     f"{level:.0%} bootstrap intervals; * exact McNemar test vs {reference}; n = test problems.\n"
                     + SET_MEANING)


def plot_tolerance(accuracy, out_stem, f0_set: str = "G", level: float = 0.95) -> list[Path]:
    """Accuracy vs the flawed fraction of the training set (F0..F100); one panel per task, a line per student.

    f0_set: the set the F mixtures are built from; used as the 0 % point when F0 was not evaluated.
    """
    df = _accuracy_frame(accuracy)
    df["pct"] = df["set"].map(lambda s: int(m[1]) if (m := _F_SET.match(str(s))) else None)
    if df.pct.isna().all():
        raise ValueError(f"accuracy data: no F<pct> rows (sets present: {sorted(set(df.set))})")
    tasks = [t for t in dict.fromkeys(df.task) if df[(df.task == t)].pct.notna().any()]
    palette = dict(zip(dict.fromkeys(df.student), sns.color_palette("colorblind")))
    with _figure(1, len(tasks), 4.6, 3.6) as (fig, axes):
        for ax, task in zip(axes[0], tasks):
            for k, (student, color) in enumerate(palette.items()):
                sub = df[(df.task == task) & (df.student == student)]
                pts = sub[sub.pct.notna()].copy()
                if pts.empty:
                    continue
                label = student
                if 0 not in set(pts.pct) and (sub.set == f0_set).any():
                    pts = pd.concat([pts, sub[sub.set == f0_set].assign(pct=0)])
                    label += f" (0 % = {f0_set}: F0 not run)"
                pts = pts.sort_values("pct")
                dodge = 1.5 * (k - (len(palette) - 1) / 2)  # keeps error bars of students apart
                x, y = pts.pct.to_numpy(float) + dodge, 100 * pts.strict.to_numpy(float)
                ax.errorbar(x, y, yerr=100 * np.vstack([pts.strict - pts.strict_lo,
                                                         pts.strict_hi - pts.strict]).astype(float),
                            marker="o", capsize=3, color=color, label=label)
                base = sub[sub.set == BASE]
                if len(base):
                    ax.axhline(100 * float(base.strict.iloc[0]), ls=":", color=color, lw=1,
                               label=f"{student}: base student")
            ax.set_xticks([0, 25, 50, 75, 100])
            ax.set_xlim(-5, 105)
            ax.set_ylim(-2, _accuracy_top(df[df.task == task].strict_hi))
            ax.set_title(f"{task} ({_n_text(df[df.task == task].n)} test problems)", fontsize="medium")
            ax.set_xlabel("flawed traces in the training set (%)")
            ax.set_ylabel("strict accuracy (%)")
        handles = {}
        for ax in axes[0]:
            for h, label in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(label, h)
        fig.legend(handles.values(), handles.keys(), loc="outside right center", frameon=False,
                   fontsize="small", title="student")
        return _save(fig, out_stem, "Tolerance to flawed reasoning traces",
                     f"Strict test accuracy after fine-tuning on mixtures with k % completely flawed traces; "
                     f"error bars: {level:.0%} bootstrap intervals; dotted: student without fine-tuning.")


def plot_loss_curves(loss, out_stem, x: str = "step") -> list[Path]:
    """Training loss by set (x: "step" or "tokens"); one panel per task, a line per set (style per student)."""
    if x not in ("step", "tokens"):
        raise ValueError(f"x must be 'step' or 'tokens', got {x!r}")
    df = _frame(loss, ("task", "set", x, "loss"), "loss")
    has_student = "student" in df and df.student.nunique() > 1
    styles = dict(zip(dict.fromkeys(df.student), ["-", "--", ":", "-."] * 5)) if has_student else {}
    tasks = list(dict.fromkeys(df.task))
    with _figure(1, len(tasks), 4.6, 3.6) as (fig, axes):
        for ax, task in zip(axes[0], tasks):
            sub = df[df.task == task]
            for name in set_order(sub.set):
                runs = sub[sub.set == name]
                for student, run in (runs.groupby("student", sort=False) if has_student else [(None, runs)]):
                    run = run.sort_values(x)
                    ax.plot(run[x], run.loss, color=set_color(name), ls=styles.get(student, "-"),
                            label=name if student is None else f"{name} · {student}")
            ax.set_title(f"{task} ({len(sub)} logged points)", fontsize="medium")
            ax.set_xlabel("optimizer step" if x == "step" else "training tokens seen")
            ax.set_ylabel("training loss (nats / token)")
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))
            ax.legend(fontsize="x-small", title="training set", title_fontsize="x-small")
        return _save(fig, out_stem, "Training loss by training set",
                     "Mean cross-entropy of the completion tokens per logged step. " + SET_MEANING)


def plot_distance_vs_accuracy(distance, accuracy, out_stem, self_nll: dict | None = None,
                              level: float = 0.95) -> list[Path]:
    """x: mean per-token NLL of each training set under the base student; y: accuracy after fine-tuning on it.

    self_nll: {task: NLL of the student's own samples}, drawn as a vertical reference line.
    """
    dist = _frame(distance, ("task", "set", "nll"), "distance")
    acc = _accuracy_frame(accuracy)
    keys = [k for k in ("task", "student", "set") if k in dist and k in acc]
    df = dist.drop(columns=[c for c in acc if c in dist and c not in keys]).merge(acc[acc.set != BASE], on=keys)
    if df.empty:
        raise ValueError(f"distance and accuracy data share no (task, set) rows; distance sets "
                         f"{sorted(set(dist.set))}, accuracy sets {sorted(set(acc.set))}")
    tasks = list(dict.fromkeys(df.task))
    markers = dict(zip(dict.fromkeys(df.student), "osD^v<>p"))
    with _figure(1, len(tasks), 4.6, 3.8) as (fig, axes):
        for ax, task in zip(axes[0], tasks):
            sub = df[df.task == task]
            for _, row in sub.iterrows():
                y = 100 * row.strict
                ax.errorbar(row.nll, y, yerr=[[100 * (row.strict - row.strict_lo)], [100 * (row.strict_hi - row.strict)]],
                            marker=markers[row.student], color=set_color(row.set), capsize=3, ls="")
                ax.annotate(row.set, (row.nll, y), xytext=(5, 4), textcoords="offset points", fontsize="small")
            if self_nll and task in self_nll:
                ax.axvline(self_nll[task], ls="--", color="grey", lw=1, label="student's own samples")
                ax.legend(fontsize="x-small", loc="best")
            ax.set_ylim(-2, _accuracy_top(sub.strict_hi))
            ax.set_title(f"{task} ({_n_text(sub.n)} test problems)", fontsize="medium")
            ax.set_xlabel("mean NLL per token under the base student (nats)")
            ax.set_ylabel("strict accuracy after fine-tuning (%)")
        if len(markers) > 1:
            fig.legend(handles=[Line2D([], [], marker=m, ls="", color="black", label=s) for s, m in markers.items()],
                       loc="outside right center", frameon=False, title="student")
        return _save(fig, out_stem, "Distance from the student's distribution vs accuracy",
                     f"Lower NLL = training traces closer to what the student itself would write; error bars: "
                     f"{level:.0%} bootstrap intervals.\n" + SET_MEANING)


def plot_step_validity(steps, out_stem) -> list[Path]:
    """Fraction of valid arithmetic steps in each training set, grouped bars per task."""
    df = _frame(steps, ("task", "set", "valid_fraction", "n_steps"), "steps")
    tasks, sets = list(dict.fromkeys(df.task)), set_order(df.set)
    width = 0.8 / max(len(sets), 1)
    with _figure(1, 1, max(5.0, 1.3 * len(tasks) * max(len(sets), 2) ** 0.5), 3.8) as (fig, axes):
        ax = axes[0][0]
        for j, name in enumerate(sets):
            sub = df[df.set == name].set_index("task").reindex(tasks)
            x = np.arange(len(tasks)) + (j - (len(sets) - 1) / 2) * width
            y = 100 * sub.valid_fraction.to_numpy(float)
            ax.bar(x, y, width, color=set_color(name), label=name)
            for xi, yi, n in zip(x, y, sub.n_steps):
                if not math.isnan(yi):
                    ax.text(xi, yi + 1, f"{int(n)}", ha="center", fontsize="xx-small", rotation=90)
        ax.set_xticks(np.arange(len(tasks)), tasks)
        ax.set_ylim(0, 110)
        ax.set_xlabel("task")
        ax.set_ylabel("valid arithmetic steps (%)")
        fig.legend(title="training set", loc="outside right center", fontsize="small")
        return _save(fig, out_stem, "Arithmetic validity of reasoning steps by training set",
                     "Share of arithmetic steps (a op b = c) in the traces whose stated result is correct; "
                     "number above each bar: steps checked (n).\n" + SET_MEANING)


def _pct(v) -> str:
    return "—" if v is None or pd.isna(v) else f"{100 * v:.1f}"


def results_table(accuracy, reference: str = "H", level: float = 0.95) -> str:
    """Markdown table: task, student, set, n, strict acc [CI], authors acc, delta vs H (points), McNemar p."""
    df = _accuracy_frame(accuracy)
    lines = [f"| task | student | set | n | strict acc % [{level:.0%} CI] | authors acc % | Δ vs {reference} (points) "
             "| McNemar p |",
             "|---|---|---|---:|---|---:|---:|---:|"]
    for task in dict.fromkeys(df.task):
        for student in dict.fromkeys(df[df.task == task].student):
            sub = df[(df.task == task) & (df.student == student)].set_index("set")
            for name in ([BASE] if BASE in sub.index else []) + set_order(sub.index):
                r = sub.loc[name]
                delta, p = r.get("delta_vs_H"), r.get("p_vs_H")
                if name == reference:
                    delta_s, p_s = "ref", "ref"
                else:
                    delta_s = "—" if delta is None or pd.isna(delta) else f"{100 * delta:+.1f}"
                    p_s = "—" if p is None or pd.isna(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")
                label = "base (no fine-tuning)" if name == BASE else name
                lines.append(f"| {task} | {student} | {label} | {int(r.n)} | {_pct(r.strict)} "
                             f"[{_pct(r.strict_lo)}, {_pct(r.strict_hi)}] | {_pct(r.get('authors'))} "
                             f"| {delta_s} | {p_s} |")
    return "\n".join(lines) + "\n"
