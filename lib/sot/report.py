"""Stage figures: gather the stage metrics into tables, draw the paper's figures, print the results table.

Accuracies and comparisons are recomputed from the per-problem rows (data/evaluate/*.jsonl, checked by
sot.evaluate.check_rows), never taken from a stored summary, so the table cannot mix interval methods.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from sot import plots, tables
from sot.evaluate import accuracy_record, panel, summarize_rows, trend_record
from sot.io import atomic_path, read_json
from sot.stages import METRICS, run_name
from sot.stages.evaluate import load_rows

FIGURES = Path("figures")


def evaluated(task: str, student: str, set_name: str) -> dict | None:
    """The evaluate metrics of one run; None when it is missing or was skipped (empty training set)."""
    path = METRICS / "evaluate" / f"{run_name(task, student, set_name)}.json"
    if not path.exists():
        return None
    summary = read_json(path)
    return None if summary.get("skipped") else summary


def skipped_runs(tasks, students, sets) -> list[str]:
    out = []
    for task in tasks:
        for student in students:
            for s in sets:
                path = METRICS / "evaluate" / f"{run_name(task, student, s)}.json"
                summary = read_json(path) if path.exists() else {}
                if summary.get("skipped"):
                    out.append(f"{run_name(task, student, s)}: {summary['reason']}")
    return out


def accuracy_tables(tasks, students, sets, n_boot: int = 2000, seed: int = 0,
                    level: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(accuracy, trend) DataFrames for sot.plots / sot.tables, recomputed from the stored per-problem rows.

    Per (task, student): every evaluated set's accuracy (Wilson), and sot.evaluate.panel's tests (each set vs
    H, each F<pct> vs F0, the trend over pct with n_boot permutations seeded with `seed`), Holm-adjusted
    together. F0 is the evaluated F0 set, else the set the mixtures were made from (F0 equals it).
    """
    acc_rows, trend_rows = [], []
    for task in tasks:
        for student in students:
            names = [s for s in ["base", *sets] if evaluated(task, student, s) is not None]
            if not names:
                continue
            rows = {s: load_rows(task, student, s) for s in names}
            f0 = "F0" if "F0" in rows else mixture_base([task])
            tests = panel(rows, reference="H", f0=f0, level=level, n_perm=n_boot, seed=seed)
            for s in names:
                in_f0 = s in tests["vs_f0"]
                acc_rows.append(accuracy_record(task, student, s, summarize_rows(rows[s], level),
                                                tests["vs_reference"].get(s),
                                                tests["vs_f0"][s] if in_f0 else None, f0 if in_f0 else None))
            if tests["vs_f0"]:
                trend_rows.append(trend_record(task, student, tests["trend"]))
    return pd.DataFrame(acc_rows), pd.DataFrame(trend_rows)


def loss_table(tasks, students, sets) -> pd.DataFrame:
    frames = []
    for task in tasks:
        for student in students:
            for s in sets:
                path = METRICS / "sft" / "loss" / f"{run_name(task, student, s)}.csv"
                if path.exists():
                    frames.append(pd.read_csv(path).assign(task=task, student=student, set=s))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def distance_tables(tasks, students) -> tuple[pd.DataFrame, dict]:
    rows, self_nll = [], {}
    for task in tasks:
        for student in students:
            path = METRICS / "distance" / f"{task}-{student}.json"
            if not path.exists():
                continue
            d = read_json(path)
            rows += [{"task": task, "student": student, "set": s, **v} for s, v in d["sets"].items()]
            if d.get("self"):
                self_nll[task] = d["self"]["nll"]
    return pd.DataFrame(rows), self_nll


def steps_table(tasks) -> pd.DataFrame:
    rows = []
    for task in tasks:
        for path in [METRICS / "classify" / f"{task}.json", METRICS / "paraphrase" / f"{task}.json",
                     *sorted((METRICS / "mix").glob(f"{task}-F*.json"))]:
            if path.exists():
                for s, v in read_json(path).get("step_validity", {}).items():
                    rows.append({"task": task, "set": s, "valid_fraction": v["frac_valid"],
                                 "n_steps": v["n_steps"]})
    return pd.DataFrame(rows)


def mixture_base(tasks) -> str:
    """The set the F<pct> mixtures were made from (recorded by the mix stage; F0 equals it)."""
    bases = {read_json(p)["base"] for t in tasks for p in (METRICS / "mix").glob(f"{t}-F*.json")}
    if len(bases) > 1:
        raise ValueError(f"metrics/mix: mixtures made from different base sets {sorted(bases)}; rerun `dvc repro mix`")
    return bases.pop() if bases else "G"


def run(tasks, students, sets, formats=("png", "pdf"), dpi: int = 150, seed: int = 0, n_boot: int = 2000) -> str:
    """All figures and the results table from the stage metrics; returns the table (markdown).

    seed, n_boot: the permutations of the trend test (the only resampling here).
    """
    acc, trend = accuracy_tables(tasks, students, sets, n_boot=n_boot, seed=seed)
    if acc.empty:
        raise FileNotFoundError(f"no evaluation metrics under {METRICS / 'evaluate'}; run `dvc repro evaluate` first")
    FIGURES.mkdir(exist_ok=True)
    plots.set_output(formats, dpi)
    plots.plot_accuracy_by_set(acc, FIGURES / "accuracy_by_set")
    if acc["set"].str.match(r"^F\d+$").any():
        plots.plot_tolerance(acc, FIGURES / "tolerance", trend=trend, f0_set=mixture_base(tasks))
    loss = loss_table(tasks, students, sets)
    if not loss.empty:
        plots.plot_loss_curves(loss, FIGURES / "loss_curves")
    distance, self_nll = distance_tables(tasks, students)
    if not distance.empty:
        plots.plot_distance_vs_accuracy(distance, acc, FIGURES / "distance_vs_accuracy", self_nll=self_nll)
    steps = steps_table(tasks)
    if not steps.empty:
        plots.plot_step_validity(steps, FIGURES / "step_validity")
    table = tables.results_table(acc, trend)
    skipped = skipped_runs(tasks, students, sets)
    if skipped:
        table += "\n\nNot trained or evaluated (empty training set):\n" + "\n".join(f"- {s}" for s in skipped)
    with atomic_path(FIGURES / "results.md") as tmp:
        tmp.write_text(table + "\n", encoding="utf-8")
    with atomic_path(FIGURES / "accuracy.csv") as tmp:
        acc.to_csv(tmp, index=False)
    with atomic_path(FIGURES / "trend.csv") as tmp:
        trend.to_csv(tmp, index=False)
    return table
