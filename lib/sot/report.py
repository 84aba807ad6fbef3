"""The study's tables, gathered from the stage outputs: what the figures notebook (10_figures) draws and prints.

Accuracies and comparisons are recomputed from the per-problem rows (data/evaluate/<task>-<student>/<set>.jsonl, checked by
sot.evaluate.check_rows), never taken from a stored summary, so the table cannot mix interval methods.
A set's rows are those of its headline checkpoint: its own model, or with `sft.sweep` the checkpoint the rule
`sft.checkpoint` picks among the evaluated ones (sot.checkpoint_sweep.headline), never the best on the test set.
`write_table` writes figures/results.md (+ accuracy.csv, trend.csv: the data DVC's plots read), with the
teacher-vs-student comparison on the training problems (`teacher_student_table`) beside the results.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from sot import checkpoint_sweep, tables
from sot.evaluate import accuracy_record, check_rows, panel, summarize_rows, trend_record
from sot.io import DataError, atomic_path, iter_jsonl, read_json
from sot.pipeline import FIGURES, METRICS, eval_metrics_path, eval_rows_path, loss_path, run_name


def evaluated(task: str, student: str, set_name: str) -> dict | None:
    """The evaluate metrics of one run; None when it is missing or was skipped (empty training set)."""
    path = eval_metrics_path(task, student, set_name)
    if not path.exists():
        return None
    summary = read_json(path)
    return None if summary.get("skipped") else summary


def skipped_runs(tasks, students, sets) -> list[str]:
    out = []
    for task in tasks:
        for student in students:
            for s in sets:
                path = eval_metrics_path(task, student, s)
                summary = read_json(path) if path.exists() else {}
                if summary.get("skipped"):
                    out.append(f"{run_name(task, student, s)}: {summary['reason']}")
    return out


def accuracy_tables(tasks, students, sets, n_perm: int = 2000, seed: int = 0,
                    level: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(accuracy, trend) DataFrames for sot.plots / sot.tables, recomputed from the stored per-problem rows.

    Per (task, student): every evaluated set's accuracy (Wilson), and sot.evaluate.panel's tests (each set vs
    H, each F<pct> vs F0, the trend over pct with n_perm permutations seeded with `seed`), Holm-adjusted
    together. F0 is the evaluated F0 set, else the set the mixtures were made from (F0 equals it).
    Raises FileNotFoundError, before anything is drawn, when no (task, student) has any evaluated run.
    """
    acc_rows, trend_rows = [], []
    for task in tasks:
        for student in students:
            names = [s for s in ["base", *sets] if evaluated(task, student, s) is not None]
            if not names:
                continue
            # a set's headline: its own model, or with sft.sweep the checkpoint its rule picks (never by test accuracy)
            rows = {s: load_rows(task, student, checkpoint_sweep.headline(task, student, s)) for s in names}
            f0 = "F0" if "F0" in rows else mixture_base([task])
            tests = panel(rows, reference="H", f0=f0, level=level, n_perm=n_perm, seed=seed)
            for s in names:
                in_f0 = s in tests["vs_f0"]
                acc_rows.append(accuracy_record(task, student, s, summarize_rows(rows[s], level),
                                                tests["vs_reference"].get(s),
                                                tests["vs_f0"][s] if in_f0 else None, f0 if in_f0 else None))
            if tests["vs_f0"]:
                trend_rows.append(trend_record(task, student, tests["trend"]))
    if not acc_rows:
        raise FileNotFoundError(f"no evaluation metrics under {METRICS / 'evaluate'} for tasks {list(tasks)}, "
                                f"students {list(students)}; run `dvc repro evaluate` first")
    return pd.DataFrame(acc_rows), pd.DataFrame(trend_rows)


def loss_table(tasks, students, sets) -> pd.DataFrame:
    frames = []
    for task in tasks:
        for student in students:
            for s in sets:
                path = loss_path(task, student, s)
                if path.exists():
                    frames.append(pd.read_csv(path).assign(task=task, student=student, set=s))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


LOSS_COLUMNS = ["task", "student", "set", "step", "tokens", "loss", "lr", "val_loss"]


def write_loss(loss: pd.DataFrame, folder: Path = FIGURES) -> Path:
    """figures/loss.csv: every run's logged loss in one long table (`loss_table`), the data of DVC's "Training loss
    by set" plot (dvc.yaml: a panel per (task, student), a line per set). Written even when empty (header only)."""
    frame = loss.reindex(columns=LOSS_COLUMNS) if not loss.empty else pd.DataFrame(columns=LOSS_COLUMNS)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "loss.csv") as tmp:
        frame.to_csv(tmp, index=False)
    return folder / "loss.csv"


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


def teacher_student_table(tasks, students) -> pd.DataFrame:
    """Accuracy on the same training problems: the teacher's samples (metrics/classify/<task>.json: k samples per
    problem at generate.temperature) beside each base student's own greedy samples (metrics/distance/
    <task>-<student>.json `self_accuracy`, Wilson interval over problems). One row per (task, student); a side
    whose metrics are missing is None."""
    rows = []
    for task in tasks:
        path = METRICS / "classify" / f"{task}.json"
        c = read_json(path) if path.exists() else {}
        n_samples, n_problems = c.get("n_samples"), c.get("n_problems")
        teacher = {"teacher_correct_samples": c.get("n_correct_samples"), "teacher_samples": n_samples,
                   "teacher_sample_accuracy": c["n_correct_samples"] / n_samples if n_samples else None,
                   "teacher_problems_with_G": c.get("n_problems_with_G"), "teacher_problems": n_problems}
        for student in students:
            path = METRICS / "distance" / f"{task}-{student}.json"
            own = (read_json(path).get("self_accuracy") if path.exists() else None) or {}
            rows.append({"task": task, "student": student, **teacher,
                         "student_correct": own.get("n_correct"), "student_problems": own.get("n"),
                         "student_accuracy": own.get("accuracy"), "student_lo": own.get("lo"),
                         "student_hi": own.get("hi")})
    return pd.DataFrame(rows)


def teacher_student_markdown(table: pd.DataFrame) -> str:
    """The teacher-vs-student comparison as a markdown table with its caption ("" when there is no row)."""
    if table.empty:
        return ""

    def frac(k, n):
        return "—" if pd.isna(k) or pd.isna(n) or not n else f"{100 * k / n:.1f} ({int(k)}/{int(n)})"

    lines = ["Teacher and base student on the same training problems (before fine-tuning): the teacher's accuracy "
             "over its k samples per problem (generate.temperature) and the share of problems with a correct "
             "sample (these make G); the student's accuracy with one greedy sample per problem (stage 7), "
             "95% Wilson interval over problems.", "",
             "| task | student | teacher: correct samples % | teacher: problems with G % "
             "| student greedy % [95% CI] |", "|---|---|---|---|---|"]
    for _, r in table.iterrows():
        own = "—" if pd.isna(r.student_accuracy) else (
            f"{100 * r.student_accuracy:.1f} [{100 * r.student_lo:.1f}, {100 * r.student_hi:.1f}] "
            f"({int(r.student_correct)}/{int(r.student_problems)})")
        lines.append(f"| {r.task} | {r.student} | {frac(r.teacher_correct_samples, r.teacher_samples)} "
                     f"| {frac(r.teacher_problems_with_G, r.teacher_problems)} | {own} |")
    return "\n".join(lines) + "\n"


def steps_table(tasks) -> pd.DataFrame:
    """Step validity per (task, set) from the classify, paraphrase and mix metrics. A set reported by more than
    one stage (paraphrase also reports H, beside P) is taken from the first: classify for H, G and W."""
    rows, seen = [], set()
    for task in tasks:
        for path in [METRICS / "classify" / f"{task}.json", METRICS / "paraphrase" / f"{task}.json",
                     *sorted((METRICS / "mix").glob(f"{task}-F*.json"))]:
            if path.exists():
                for s, v in read_json(path).get("step_validity", {}).items():
                    if (task, s) in seen:
                        continue
                    seen.add((task, s))
                    rows.append({"task": task, "set": s, "valid_fraction": v["frac_valid"],
                                 "n_steps": v["n_steps"]})
    return pd.DataFrame(rows)


def mixture_shortfalls(tasks, sets) -> list[str]:
    """The F<pct> sets in `sets` holding fewer flawed traces than their name asks for (metrics/mix: the corrupt stage
    found no flawed version of some base traces, e.g. every lm_rewrite try failed, and those stay clean), one line
    each, so a reader of the table does not take F100 for 100 % flawed when it is not."""
    out = []
    for task in tasks:
        for s in sets:
            path = METRICS / "mix" / f"{task}-{s}.json"
            m = read_json(path) if s.startswith("F") and path.exists() else {}
            if m.get("shortfall"):
                out.append(f"{task} {s}: {m['n_flawed']} of {m['size']} traces flawed (the fraction asks for "
                           f"{m['target_flawed']}; {m['shortfall']} base traces have no flawed version: "
                           f"metrics/corrupt/{task}.json)")
    return out


def mixture_base(tasks) -> str:
    """The set the F<pct> mixtures were made from (recorded by the mix stage; F0 equals it)."""
    bases = {read_json(p)["base"] for t in tasks for p in (METRICS / "mix").glob(f"{t}-F*.json")}
    if len(bases) > 1:
        raise ValueError(f"metrics/mix: mixtures made from different base sets {sorted(bases)}; rerun `dvc repro mix`")
    return bases.pop() if bases else "G"


def load_rows(task: str, student: str, set_name: str) -> list[dict]:
    """The stored per-problem rows of one evaluated run, checked (sot.evaluate.check_rows: errors name file, line)."""
    path = eval_rows_path(task, student, set_name)
    if not path.exists():
        raise DataError(f"{path}: no per-problem rows for an evaluated run; rerun `dvc repro evaluate`")
    numbered = list(iter_jsonl(path))
    return check_rows([r for _, r in numbered], str(path), lines=[n for n, _ in numbered])


def write_table(acc: pd.DataFrame, trend: pd.DataFrame, skipped: list[str], folder: Path = FIGURES,
                teacher_student: pd.DataFrame | None = None, shortfalls: list[str] = (), training: str = "",
                sweep: str = "") -> str:
    """figures/results.md (the markdown table, the trend table, the skipped runs, the F sets short of flawed
    traces (`mixture_shortfalls`), the swept checkpoints (`sweep`: sot.checkpoint_sweep.markdown) and, when given,
    the teacher-vs-student table of `teacher_student_table`),
    accuracy.csv and trend.csv; returns the markdown."""
    table = tables.results_table(acc, trend)
    if skipped:
        table += "\n\nNot trained or evaluated (empty training set):\n" + "\n".join(f"- {s}" for s in skipped)
    if shortfalls:
        table += ("\n\nF sets with fewer flawed traces than their name says:\n"
                  + "\n".join(f"- {s}" for s in shortfalls))
    if training:                      # sot.training_table: steps, tokens, summed lr, cut outputs per set
        table += "\n\n" + training
    if sweep:                         # sot.checkpoint_sweep: the swept checkpoints and which rule picked the headline
        table += "\n\n" + sweep
    if teacher_student is not None and not teacher_student.empty:
        table += "\n\n" + teacher_student_markdown(teacher_student)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "results.md") as tmp:
        tmp.write_text(table + "\n", encoding="utf-8")
    with atomic_path(folder / "accuracy.csv") as tmp:
        acc.to_csv(tmp, index=False)
    with atomic_path(folder / "trend.csv") as tmp:
        trend.to_csv(tmp, index=False)
    return table
