"""Stage mix: F<fraction> = the base set with `fraction` % of its traces replaced by flawed ones (nested)."""
from __future__ import annotations

from sot.corrupt import mix
from sot.io import read_jsonl, write_json, write_jsonl
from sot.stages import DATA, METRICS, set_path
from sot.stages.common import load_set
from sot.steps import step_validity


def run(task: str, seed: int, base: str, fraction: int) -> dict:
    base_records = load_set(set_path(task, base))
    flawed = read_jsonl(DATA / "corrupt" / f"{task}.jsonl", required=("id", "completion", "source"))
    sets, metrics = mix(base_records, flawed, fractions=[fraction], seed=seed)
    name = f"F{fraction}"
    write_jsonl(set_path(task, name), sets[name])
    report = {"base": base, "fraction": fraction, **metrics["sets"][name],
              "step_validity": {name: step_validity(sets[name], task)}}
    write_json(METRICS / "mix" / f"{task}-{name}.json", report)
    return report
