"""The results table (markdown) from the `accuracy` and `trend` DataFrames of sot.plots.

One row per evaluated (task, student, set): n, strict accuracy % [CI], the authors' accuracy % [CI] with the
number of problems their scripts keep (n_parsed), the difference from H in points [CI] with its exact McNemar
p-value Holm-adjusted (raw in parentheses), and for F<pct> sets the same against F0. A caption line says
which intervals and which correction are used; numbered notes give the reason wherever a comparison shows
"—" (e.g. a set evaluated on other problems than H), and which set stands for F0 when F0 was not evaluated.
A second table gives the tolerance trend test of each panel. The statistics are made in sot.metrics /
sot.evaluate.panel; this module only formats them.
"""
from __future__ import annotations

import pandas as pd

from sot.plot_base import BASE, _accuracy_frame, set_order


def _present(v) -> bool:
    return v is not None and not pd.isna(v)


def _pct(v) -> str:
    return f"{100 * v:.1f}" if _present(v) else "—"


def _p(v) -> str:
    return ("<0.001" if v < 0.001 else f"{v:.3f}") if _present(v) else "—"


def _interval(est, lo, hi, signed: bool = False) -> str:
    if not _present(est):
        return "—"
    f = (lambda v: f"{100 * v:+.1f}") if signed else _pct
    return f"{f(est)} [{f(lo)}, {f(hi)}]"


class _Notes:
    """Numbered notes for the cells that show "—" (or a substitution); the same text gets the same number."""

    def __init__(self):
        self.items: list[str] = []

    def ref(self, text: str) -> str:
        if text not in self.items:
            self.items.append(text)
        return f"(note {self.items.index(text) + 1})"


def _comparison(r, prefix: str, notes: _Notes, where: str) -> tuple[str, str]:
    if _present(r.get(f"delta_vs_{prefix}")):
        return (_interval(r[f"delta_vs_{prefix}"], r[f"delta_{prefix}_lo"], r[f"delta_{prefix}_hi"], signed=True),
                f"{_p(r.get(f'p_vs_{prefix}_holm'))} ({_p(r.get(f'p_vs_{prefix}'))})")
    note = r.get(f"note_vs_{prefix}")
    return (f"— {notes.ref(f'{where}: {note}')}" if _present(note) else "—"), "—"


def results_table(accuracy, trend=None, reference: str = "H", level: float = 0.95) -> str:
    """Markdown: caption line, the per-set table, notes, and (when `trend` has rows) the tolerance trend table."""
    df = _accuracy_frame(accuracy)
    notes, lines = _Notes(), []
    ci = f"{level:.0%} CI"
    lines += [f"| task | student | set | n | strict acc % [{ci}] | authors acc % [{ci}] (n_parsed) "
              f"| Δ vs {reference}, points [{ci}] | p vs {reference}: Holm (raw) | Δ vs F0, points [{ci}] "
              "| p vs F0: Holm (raw) |",
              "|---|---|---|---:|---|---|---|---|---|---|"]
    for task in dict.fromkeys(df.task):
        for student in dict.fromkeys(df[df.task == task].student):
            sub = df[(df.task == task) & (df.student == student)].set_index("set")
            f0s = set(sub["F0"].dropna()) if "F0" in sub else set()
            for name in ([BASE] if BASE in sub.index else []) + set_order(sub.index):
                r, where = sub.loc[name], f"{task} · {student} · {name}"
                d_ref, p_ref = (("ref", "ref") if name == reference
                                else _comparison(r, "H", notes, f"{where} vs {reference}"))
                if _present(r.get("F0")):
                    d_f0, p_f0 = _comparison(r, "F0", notes, f"{where} vs {r.F0}")   # F0 may be H: one note
                elif name == "F0":
                    d_f0, p_f0 = "ref", "ref"
                elif name in f0s:
                    d_f0 = "ref " + notes.ref(f"{task} · {student}: F0 was not evaluated; the mixtures are made "
                                              f"from {name} (F0 equals it), so {name} is the 0 % set")
                    p_f0 = "ref"
                else:
                    d_f0, p_f0 = "", ""
                authors = _interval(r.get("authors"), r.get("authors_lo"), r.get("authors_hi"))
                n_parsed = f" ({int(r.n_parsed)})" if _present(r.get("n_parsed")) else ""
                label = "base (no fine-tuning)" if name == BASE else name
                lines.append(f"| {task} | {student} | {label} | {int(r.n)} "
                             f"| {_interval(r.strict, r.strict_lo, r.strict_hi)} | {authors}{n_parsed} "
                             f"| {d_ref} | {p_ref} | {d_f0} | {p_f0} |")
    caption = (f"Accuracy intervals: {level:.0%} Wilson score intervals (authors' accuracy: on the n_parsed problems "
               f"their scripts keep). Δ: accuracy minus the reference's on the same problems, {level:.0%} Tango score "
               "intervals for paired proportions (not adjusted for multiplicity). p: exact McNemar test, "
               "Holm-adjusted over all tests of each task × student panel (every set vs "
               f"{reference}, every F<pct> vs F0, the trend test), raw p in parentheses.")
    out = [caption, "", *lines]
    if notes.items:
        out += ["", *[f"Note {i}: {text}" for i, text in enumerate(notes.items, 1)]]
    trend_lines = _trend_table(trend)
    if trend_lines:
        out += ["", *trend_lines]
    return "\n".join(out) + "\n"


def _trend_table(trend) -> list[str]:
    if trend is None:
        return []
    t = trend if isinstance(trend, pd.DataFrame) else pd.DataFrame(list(trend))
    if t.empty:
        return []
    lines = ["Tolerance trend over the flawed fraction (same problems at every level): slope = least-squares change "
             "in strict accuracy per 100 % flawed traces; p = permutation test of the linear trend within problems "
             "(n_perm shuffles, seeded), Holm-adjusted with the panel's other tests; z = its normal approximation.",
             "",
             "| task | student | 0 % set | levels (% flawed) | n | slope, points per 100 % | p: Holm (raw) | z "
             "| n_perm |",
             "|---|---|---|---|---:|---:|---|---:|---:|"]
    left_out = []
    for _, r in t.iterrows():
        if _present(r.get("excluded")):
            left_out.append(f"Left out of the trend for {r.task} · {r.student}: {r.excluded}")
        if not _present(r.get("p")):
            lines.append(f"| {r.task} | {r.student} | {r.f0 if _present(r.get('f0')) else '—'} | — | — | — "
                         f"| — ({r.get('note')}) | — | — |")
            continue
        lines.append(f"| {r.task} | {r.student} | {r.f0} | {r.levels} | {int(r.n)} | {100 * r.slope:+.1f} "
                     f"| {_p(r.p_holm)} ({_p(r.p)}) | {r.z:+.2f} | {int(r.n_perm)} |")
    return lines + (["", *left_out] if left_out else [])
