"""Paper figures. Every figure function takes plain data and an output path stem, writes <stem>.png
(dpi 150) and <stem>.pdf atomically, and returns the two paths. Figures are drawn on matplotlib's Agg canvas
without pyplot (no global state; safe in notebooks and workers). Shared pieces (set order and colours,
frame checks, saving) live in sot.plot_base; the results table is sot.tables.

Input data: pandas DataFrames (or lists of dicts) with these columns (extra columns are ignored):

accuracy    task, student, set, strict, strict_lo, strict_hi, n           (fractions in [0, 1])
            optional: authors, authors_lo, authors_hi, n_parsed; delta_vs_H, delta_H_lo, delta_H_hi, p_vs_H,
            p_vs_H_holm (a * over the bar when < 0.05), note_vs_H; F0 (the set used as F0), delta_vs_F0,
            delta_F0_lo, delta_F0_hi, p_vs_F0, p_vs_F0_holm, note_vs_F0.
            One row per evaluated (task, student, set); set is one of H, P, G, W, F0 ... F100, or "base"
            for the student without fine-tuning. sot.evaluate.accuracy_record builds these rows.
trend       task, student, f0, levels, n, slope, p, p_holm (optional: z, n_perm, note): the tolerance trend
            test of each (task, student) (sot.evaluate.trend_record)
loss        task, set, step, tokens, loss          (optional: student; one row per logged step)
distance    task, set, nll                          (optional: ppl, student) mean per-token NLL (nats) of
            each training set's completions under the base student
steps       task, set, valid_fraction, n_steps     fraction of arithmetic steps that are valid

Intervals are drawn as given: the stage fills them with Wilson score intervals (accuracy) and Tango score
intervals (paired differences); see sot.metrics.

Functions: plot_accuracy_by_set, plot_tolerance, plot_loss_curves, plot_distance_vs_accuracy,
plot_step_validity, set_order.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import EngFormatter

from sot.plot_base import (BASE, OUTPUT, SET_MEANING, _F_SET, _accuracy_frame, _accuracy_top, _figure,  # noqa: F401
                           _frame, _n_text, _save, set_color, set_order, set_output)

def _present(v) -> bool:
    return v is not None and not pd.isna(v)


def _err(frame: pd.DataFrame, est: str, lo: str, hi: str) -> np.ndarray:
    """Asymmetric error-bar lengths in points (rows without an interval get none)."""
    e, l, h = (frame[c].astype(float).to_numpy() for c in (est, lo, hi))
    return np.clip(np.nan_to_num(100 * np.vstack([e - l, h - e])), 0, None)   # float noise at 0 % or 100 %


def _delta_axis(ax, x, names, sub: pd.DataFrame, prefix: str, ref_label: str, color) -> None:
    """Points with interval bars for the paired differences `delta_vs_<prefix>` (points); "—" where not made."""
    ax.axhline(0, color="black", lw=0.8)
    for xi, name in zip(x, names):
        r = sub.loc[name]
        if name == ref_label:
            ax.text(xi, 0, "ref", ha="center", va="bottom", fontsize="small")
        elif _present(r.get(f"delta_vs_{prefix}")):
            d = 100 * float(r[f"delta_vs_{prefix}"])
            lo, hi = 100 * float(r[f"delta_{prefix}_lo"]), 100 * float(r[f"delta_{prefix}_hi"])
            ax.errorbar(xi, d, yerr=[[max(0.0, d - lo)], [max(0.0, hi - d)]], marker="o", capsize=3, color=color(name), ls="")
        else:
            ax.text(xi, 0, "—", ha="center", va="bottom", fontsize="small")


def _holm_star(p) -> bool:
    return _present(p) and float(p) < 0.05


def plot_accuracy_by_set(accuracy, out_stem, reference: str = "H", level: float = 0.95) -> list[Path]:
    """Bars of strict accuracy per training set (Wilson intervals) and, below, each set minus the reference on
    the same problems (Tango intervals; when delta_vs_H is present); one column per task, a pair of rows per student."""
    df = _accuracy_frame(accuracy)
    tasks, students = list(dict.fromkeys(df["task"])), list(dict.fromkeys(df["student"]))
    has_delta = "delta_vs_H" in df and df["delta_vs_H"].notna().any()
    rows_per = 2 if has_delta else 1
    n_bars = len(set_order(df.set))
    kw = {"gridspec_kw": {"height_ratios": [3.4, 2.0] * len(students)}} if has_delta else {}
    with _figure(rows_per * len(students), len(tasks), max(5.2, 0.6 * n_bars + 1.6), 3.4 if not has_delta else 2.7,
                 **kw) as (fig, axes):
        for r, student in enumerate(students):
            for c, task in enumerate(tasks):
                ax, sub = axes[rows_per * r][c], df[(df.task == task) & (df.student == student)]
                bars = sub[sub.set != BASE].set_index("set").loc[set_order(sub.set)] if len(sub) else sub
                if bars.empty and not (sub.set == BASE).any():
                    for k in range(rows_per):
                        axes[rows_per * r + k][c].set_axis_off()
                    continue
                x = np.arange(len(bars))
                ax.bar(x, 100 * bars.strict.to_numpy(float), yerr=_err(bars, "strict", "strict_lo", "strict_hi"),
                       capsize=3, color=[set_color(s) for s in bars.index],
                       edgecolor=["black" if s == reference else "none" for s in bars.index],
                       hatch=["//" if s == reference else "" for s in bars.index], linewidth=1.2)
                if "p_vs_H_holm" in bars:
                    for xi, hi, p in zip(x, bars.strict_hi, bars.p_vs_H_holm):
                        if _holm_star(p):
                            ax.text(xi, 100 * hi + 1, "*", ha="center", fontsize="large")
                base = sub[sub.set == BASE]
                if len(base):
                    ax.axhline(100 * float(base.strict.iloc[0]), ls="--", color="black", lw=1)
                ax.set_xticks(x, [f"{s}\n(ref)" if s == reference else s for s in bars.index])
                ax.set_ylim(0, _accuracy_top(sub.strict_hi))
                ax.set_title(f"{task} · {student} ({_n_text(sub.n)})", fontsize="medium")
                ax.set_ylabel("strict accuracy (%)")
                if has_delta:
                    dax = axes[rows_per * r + 1][c]
                    _delta_axis(dax, x, list(bars.index), bars, "H", reference, set_color)
                    dax.set_xticks(x, list(bars.index))
                    dax.set_xlim(ax.get_xlim())
                    dax.set_ylabel(f"set − {reference} (points)")
                    dax.set_xlabel("training set")
                else:
                    ax.set_xlabel("training set")
        fig.legend(handles=[Patch(facecolor=set_color(reference), edgecolor="black", hatch="//",
                                  label=f"{reference}: reference set"),
                            Line2D([], [], ls="--", color="black", label="base student (no fine-tuning)"),
                            Line2D([], [], ls="", marker="$*$", color="black",
                                   label=f"Holm-adjusted p < 0.05 vs {reference}")],
                   loc="outside right center", frameon=False)
        delta_text = (f" Lower panels: accuracy minus {reference}'s on the same problems (points), {level:.0%} Tango "
                      "score intervals for paired proportions; — : not comparable (see the results table)."
                      if has_delta else "")
        return _save(fig, out_stem, "Test accuracy after fine-tuning on each training set",
                     f"Strict accuracy (unparseable answers count as wrong), greedy decoding; error bars: "
                     f"{level:.0%} Wilson score intervals.{delta_text} * exact McNemar test vs {reference}, "
                     f"Holm-adjusted over all tests of the panel (intervals unadjusted); n = test problems.\n"
                     + SET_MEANING)


def _trend_text(trend: pd.DataFrame | None, task: str, student: str, with_name: bool) -> str | None:
    if trend is None or trend.empty:
        return None
    row = trend[(trend.task == task) & (trend.student == student)]
    if row.empty:
        return None
    t, who = row.iloc[0], f"{student}: " if with_name else ""
    if not _present(t.get("p")):
        return f"{who}no trend test ({t.get('note')})"
    return f"{who}trend {float(t.slope) * 100:+.1f} pts/100 %, p {_p_text(t.p)}, Holm {_p_text(t.p_holm)}"


def _p_text(p) -> str:
    return "—" if not _present(p) else ("< 0.001" if float(p) < 0.001 else f"= {float(p):.3f}")


def plot_tolerance(accuracy, out_stem, trend=None, f0_set: str = "G", level: float = 0.95) -> list[Path]:
    """Accuracy vs the flawed fraction of the training set (F0..F100); one panel per task, a line per student;
    below, each F<pct> minus F0 on the same problems (when delta_vs_F0 is present); the trend test in the panel.

    trend: rows of sot.evaluate.trend_record (task, student, f0, slope, p, p_holm, note); its f0 names the set
    used as the 0 % point, else f0_set (the set the F mixtures are built from) when F0 was not evaluated.
    """
    df = _accuracy_frame(accuracy)
    trend = None if trend is None else (trend.copy() if isinstance(trend, pd.DataFrame) else pd.DataFrame(list(trend)))
    df["pct"] = df["set"].map(lambda s: int(m[1]) if (m := _F_SET.match(str(s))) else None)
    if df.pct.isna().all():
        raise ValueError(f"accuracy data: no F<pct> rows (sets present: {sorted(set(df.set))})")
    tasks = [t for t in dict.fromkeys(df.task) if df[(df.task == t)].pct.notna().any()]
    palette = dict(zip(dict.fromkeys(df.student), sns.color_palette("colorblind")))
    has_delta = "delta_vs_F0" in df and df["delta_vs_F0"].notna().any()
    kw = {"gridspec_kw": {"height_ratios": [3.6, 2.2]}} if has_delta else {}
    with _figure(2 if has_delta else 1, len(tasks), 5.6, 3.0 if has_delta else 3.6, **kw) as (fig, axes):
        for c, task in enumerate(tasks):
            ax, notes = axes[0][c], []
            for k, (student, color) in enumerate(palette.items()):
                sub = df[(df.task == task) & (df.student == student)]
                pts = sub[sub.pct.notna()].copy()
                if pts.empty:
                    continue
                label = student
                f0 = f0_set
                if trend is not None and len(t := trend[(trend.task == task) & (trend.student == student)]):
                    f0 = t.iloc[0].get("f0") if _present(t.iloc[0].get("f0")) else f0_set
                if 0 not in set(pts.pct) and (sub.set == f0).any():
                    pts = pd.concat([pts, sub[sub.set == f0].assign(pct=0)])
                    label += f" (0 % = {f0}: F0 not run)"
                pts = pts.sort_values("pct")
                dodge = 1.5 * (k - (len(palette) - 1) / 2)  # keeps error bars of students apart
                ax.errorbar(pts.pct.to_numpy(float) + dodge, 100 * pts.strict.to_numpy(float),
                            yerr=_err(pts, "strict", "strict_lo", "strict_hi"), marker="o", capsize=3, color=color,
                            label=label)
                base = sub[sub.set == BASE]
                if len(base):
                    ax.axhline(100 * float(base.strict.iloc[0]), ls=":", color=color, lw=1,
                               label=f"{student}: base student")
                if text := _trend_text(trend, task, student, len(palette) > 1):
                    notes.append(text)
                if has_delta:
                    fl = pts[(pts.pct > 0) & pts.delta_vs_F0.notna()]
                    d = 100 * fl.delta_vs_F0.to_numpy(float)
                    axes[1][c].errorbar(fl.pct.to_numpy(float) + dodge, d,
                                        yerr=_err(fl, "delta_vs_F0", "delta_F0_lo", "delta_F0_hi"),
                                        marker="o", capsize=3, color=color, ls="")
            ax.set_ylim(-2, _accuracy_top(df[df.task == task].strict_hi))
            # the trend test under the panel's title (inside the axes it ran over the curves and the y ticks)
            ax.set_title("\n".join([f"{task} ({_n_text(df[df.task == task].n)} test problems)", *notes]),
                         fontsize="medium")
            ax.set_ylabel("strict accuracy (%)")
            for a in axes[:, c]:
                a.set_xticks([0, 25, 50, 75, 100])
                a.set_xlim(-5, 105)
            axes[-1][c].set_xlabel("flawed traces in the training set (%)")
            if has_delta:
                axes[1][c].axhline(0, color="black", lw=0.8)
                axes[1][c].set_ylabel("difference from F0\n(percentage points)")
        handles = {}
        for ax in axes[0]:
            for h, label in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(label, h)
        fig.legend(handles.values(), handles.keys(), loc="outside right center", frameon=False,
                   fontsize="small", title="student")
        delta_text = (f" Lower panels: F<pct> minus F0 on the same problems (points), {level:.0%} Tango score "
                      "intervals." if has_delta else "")
        return _save(fig, out_stem, "Tolerance to flawed reasoning traces",
                     f"Strict test accuracy after fine-tuning on mixtures with k % completely flawed traces; "
                     f"error bars: {level:.0%} Wilson score intervals; dotted: student without fine-tuning."
                     f"{delta_text} Trend: least-squares slope of accuracy over k; p: permutation test of the "
                     "linear trend within problems, Holm-adjusted over all tests of the panel.")


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


def merged_labels(points: list[tuple[float, float, str]]) -> dict[str, str]:
    """Legend labels of a scatter's points: points drawn at the same place (x to 2 decimals, y to 1) share one
    entry naming all of them, in order ("G = F0"); returns {last name (the one drawn on top): label}."""
    merged: dict[tuple[float, float], list[str]] = {}
    for x, y, name in points:
        merged.setdefault((round(float(x), 2), round(float(y), 1)), []).append(str(name))
    return {names[-1]: " = ".join(names) for names in merged.values()}


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
    handles: dict[str, object] = {}
    with _figure(1, len(tasks), 4.6 + 1.8 / len(tasks), 3.8) as (fig, axes):   # + the legend's width
        for ax, task in zip(axes[0], tasks):
            sub = df[df.task == task]
            for _, row in sub.iterrows():
                y = 100 * row.strict
                ax.errorbar(row.nll, y, yerr=_err(pd.DataFrame([row]), "strict", "strict_lo", "strict_hi"),
                            marker=markers[row.student], color=set_color(row.set), capsize=3, ls="")
            # the sets in one legend beside the panels, not as text at the points: teacher sets crowd at low NLL
            shown = merged_labels([(row.nll, 100 * row.strict, row.set) for _, row in sub.iterrows()])
            for name, label in shown.items():
                handles.setdefault(label, Line2D([], [], marker="o", ls="", color=set_color(name), label=label))
            if self_nll and task in self_nll:
                own = ax.axvline(self_nll[task], ls="--", color="grey", lw=1, label="student's own samples")
                handles.setdefault(own.get_label(), own)
            ax.set_ylim(-2, _accuracy_top(sub.strict_hi))
            ax.set_title(f"{task} ({_n_text(sub.n)} test problems)", fontsize="medium")
            ax.set_xlabel("mean NLL per token under the base student (nats)")
            ax.set_ylabel("strict accuracy after fine-tuning (%)")
        if len(markers) > 1:
            handles |= {s: Line2D([], [], marker=m, ls="", color="black", label=f"student: {s}")
                        for s, m in markers.items()}
        fig.legend(handles=list(handles.values()), loc="outside right center", frameon=False, fontsize="small",
                   title="training set")
        return _save(fig, out_stem, "Distance from the student's distribution vs accuracy",
                     f"Lower NLL = training traces closer to what the student itself would write; error bars: "
                     f"{level:.0%} Wilson score intervals.\n" + SET_MEANING)


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
