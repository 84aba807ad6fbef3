"""Stage classify: grade every teacher sample, keep one G and one W trace per problem, write H/G/W."""
from __future__ import annotations

from sot.io import read_jsonl, write_json, write_jsonl
from sot.selection import classify
from sot.stages import DATA, METRICS, set_path
from sot.stages.common import load_problems
from sot.steps import step_validity
from sot.tasks import get_task


def run(task: str, seed: int, balanced: bool, w_policy: str, truncated: str = "drop") -> dict:
    problems = load_problems(task, "train")
    samples = read_jsonl(DATA / "generate" / f"{task}.jsonl", required=("id", "sample", "completion"))
    sets, metrics = classify(samples, problems, get_task(task), seed=seed, w_policy=w_policy, balanced=balanced,
                             truncated=truncated)
    for name in ("H", "G", "W"):
        write_jsonl(set_path(task, name), sets[name])
    metrics["step_validity"] = {name: step_validity(sets[name], task) for name in ("H", "G", "W")}
    metrics.update(balanced=balanced, w_policy=w_policy, seed=seed, truncated_policy=truncated)
    write_json(METRICS / "classify" / f"{task}.json", metrics)
    return metrics
