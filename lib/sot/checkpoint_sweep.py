"""Swept checkpoints (`sft.sweep`) in the evaluate stage and the results: names, the headline rule, the table.

A set's fine-tuned model (data/sft/<task>-<student>/<set>/) is the checkpoint `sft.checkpoint` picked while
training: `final` (the last step) or `best_val` (the lowest loss on the validation split carved from train).
With `sft.sweep` the run also saved steps/<step>/ in it (sot.sft.sweep); stage 9 evaluates each of them as the
run `<set>@<step>` (data/evaluate/<task>-<student>/<set>@<step>.jsonl, metrics/evaluate/.../<set>@<step>.json),
beside `<set>`, whose files are where they always were. Without a sweep nothing here adds a file or a line.

The headline of each set (the results table, the paired tests, the figures) is chosen by `select` from what was
fixed before any test problem was decoded: the rule and each checkpoint's step and validation loss, never its
test accuracy. The swept checkpoints are listed in a table of their own (`markdown`), headline marked.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from sot.io import read_json
from sot.pipeline import eval_metrics_path, eval_rows_path, sft_dir

SEP = "@"
RULES = {"final": "the last step", "best_val": "the lowest validation loss (split carved from train)"}


def swept_name(set_name: str, step: int) -> str:
    return f"{set_name}{SEP}{int(step)}"


def parse(name: str) -> tuple[str, int | None]:
    """(set, step) of a run name: ("G", 100) for "G@100", ("G", None) for "G"."""
    base, sep, step = name.partition(SEP)
    if sep and not step.isdigit():
        raise ValueError(f"{name!r}: a swept checkpoint is named <set>{SEP}<step>, with a whole number of steps")
    return base, int(step) if sep else None


def swept_folders(model_dir) -> dict[str, Path]:
    """{"<set>@<step>": folder} of the checkpoints a fine-tuned model folder holds under steps/ (empty: no sweep),
    from its train_summary.json; a missing folder is an error naming it."""
    from sot.sft import SUMMARY_FILE

    model_dir = Path(model_dir)
    path = model_dir / SUMMARY_FILE
    sweep = (json.loads(path.read_text()).get("sweep") if path.exists() else None) or {}
    out = {}
    for step in sweep.get("steps", []):
        folder = model_dir / sweep.get("folder", "steps") / str(step)
        if not (folder / SUMMARY_FILE).exists():
            raise FileNotFoundError(f"{folder}: the swept checkpoint of step {step} that {path} lists is missing; "
                                    "rerun the sft stage (`dvc repro sft`)")
        out[swept_name(model_dir.name, step)] = folder
    return out


def checkpoint_of(folder) -> dict | None:
    """The `checkpoint` record ({rule, step, val_loss, why}) of a fine-tuned model folder's train_summary.json."""
    from sot.sft import SUMMARY_FILE

    path = Path(folder) / SUMMARY_FILE
    return json.loads(path.read_text()).get("checkpoint") if path.exists() else None


def select(candidates: Sequence[Mapping], rule: str) -> Mapping:
    """The headline among one set's checkpoints, by the rule fixed before training; test accuracy is never read.

    candidates: {"name", "step", "val_loss", "swept": bool, ...}; any other field (accuracies) is ignored.
    final: the highest step. best_val: the lowest validation loss among those that have one. Ties go to the
    model the sft stage saved as the set's own (not swept), then to the earlier step."""
    if not candidates:
        raise ValueError("select: no checkpoint to choose from")
    if rule == "final":
        return min(candidates, key=lambda c: (-c["step"], bool(c.get("swept"))))
    if rule == "best_val":
        scored = [c for c in candidates if c.get("val_loss") is not None]
        if not scored:
            raise ValueError(f"select: rule best_val but no checkpoint of {[c['name'] for c in candidates]} has a "
                             "validation loss; train with sft.eval_fraction > 0")
        return min(scored, key=lambda c: (c["val_loss"], bool(c.get("swept")), c["step"]))
    raise ValueError(f"select: unknown rule {rule!r}; sft.checkpoint is one of {', '.join(RULES)}")


def candidates(task: str, student: str, set_name: str) -> list[dict]:
    """The evaluated checkpoints of one set ({name, step, val_loss, swept, summary}), the set's own first; just
    that one when it has no swept checkpoint evaluated."""
    own = read_json(eval_metrics_path(task, student, set_name))
    out = [{"name": set_name, "swept": False, "summary": own, **_step(own)}]
    folder = eval_metrics_path(task, student, set_name).parent
    swept = []
    for path in folder.glob(f"{set_name}{SEP}*.json"):
        name = path.stem
        if parse(name)[0] == set_name:
            summary = read_json(path)
            swept.append({"name": name, "swept": True, "summary": summary, **_step(summary)})
    return out + sorted(swept, key=lambda c: c["step"])


def _step(summary: Mapping) -> dict:
    ck = summary.get("checkpoint") or {}
    return {"step": ck.get("step"), "val_loss": ck.get("val_loss"), "rule": ck.get("rule")}


def headline(task: str, student: str, set_name: str) -> str:
    """The run whose rows stand for the set in the results: the set itself when nothing was swept, else the
    checkpoint `select` picks by the set's rule (sft.checkpoint, recorded with its evaluation)."""
    found = candidates(task, student, set_name)
    if len(found) == 1:
        return set_name
    return select(found, found[0]["rule"])["name"]


def rows(tasks, students, sets, level: float = 0.95) -> list[dict]:
    """One row per evaluated checkpoint of every set that has swept ones: accuracy recomputed from its rows."""
    from sot.report import evaluated, load_rows
    from sot.evaluate import summarize_rows

    out = []
    for task in tasks:
        for student in students:
            for s in sets:
                if evaluated(task, student, s) is None:
                    continue
                found = candidates(task, student, s)
                if len(found) == 1:
                    continue
                rule = found[0]["rule"]
                pick = select(found, rule)["name"]
                for c in found:
                    acc = summarize_rows(load_rows(task, student, c["name"]), level)
                    out.append({"task": task, "student": student, "set": s, "checkpoint": c["name"],
                                "step": c["step"], "val_loss": c["val_loss"], "rule": rule,
                                "headline": c["name"] == pick, **acc})
    return out


def markdown(tasks, students, sets, level: float = 0.95) -> str:
    """The swept checkpoints' table with the rule that picked each set's headline ("" when nothing was swept)."""
    table = rows(tasks, students, sets, level)
    if not table:
        return ""

    def pct(v):
        return "—" if v is None else f"{100 * v:.1f}"

    picks = [f"{r['task']} · {r['student']} · {r['set']}: {r['rule']} ({RULES.get(r['rule'], r['rule'])}) picked "
             f"{r['checkpoint']} (step {r['step']}" + (f", validation loss {r['val_loss']:.4f}" if r["val_loss"]
                                                        is not None else "") + ")"
             for r in table if r["headline"]]
    lines = ["Checkpoints evaluated per set (sft.sweep). The results table above uses one per set, the headline, "
             "picked by sft.checkpoint, a rule fixed before training, never by test accuracy; the others are "
             f"reported here and take part in no test. Strict accuracy with {level:.0%} Wilson intervals.", "",
             *[f"- {p}" for p in picks], "",
             f"| task | student | set | checkpoint | step | validation loss | strict acc % [{level:.0%} CI] "
             "| authors acc % (n_parsed) | headline |",
             "|---|---|---|---|---:|---:|---|---|---|"]
    for r in table:
        val = "—" if r["val_loss"] is None else f"{r['val_loss']:.4f}"
        lines.append(f"| {r['task']} | {r['student']} | {r['set']} | {r['checkpoint']} | {r['step']} | {val} "
                     f"| {pct(r['strict'])} [{pct(r['strict_lo'])}, {pct(r['strict_hi'])}] "
                     f"| {pct(r['authors'])} ({r['n_parsed']}) | {'yes: ' + r['rule'] if r['headline'] else ''} |")
    return "\n".join(lines)


def stale(task: str, student: str, set_name: str, keep: Sequence[str]) -> list[Path]:
    """The evaluate files of swept checkpoints of `set_name` not among `keep` (left by an earlier sweep when the
    stage runs outside DVC, which empties its outputs first): stage 9 deletes them."""
    from sot.scores import scores_path

    out = []
    for path_of in (eval_metrics_path, eval_rows_path, lambda t, st, s: scores_path("evaluate", t, st, s)):
        folder = path_of(task, student, set_name).parent
        suffix = path_of(task, student, set_name).suffix
        for path in folder.glob(f"{set_name}{SEP}*{suffix}"):
            if parse(path.stem)[0] == set_name and path.stem not in keep:
                out.append(path)
    return sorted(out)


def describe(summary: Mapping) -> str:
    """One line for a report: which checkpoint an evaluation used and why."""
    ck = summary.get("checkpoint") or {}
    if not ck:
        return "—"
    val = f", validation loss {ck['val_loss']:.4f}" if ck.get("val_loss") is not None else ""
    kind = "swept" if ck.get("rule") == "sweep" else f"{ck.get('rule')} (headline)"
    return f"{kind}: step {ck.get('step')}{val}"
