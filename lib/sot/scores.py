"""The numbers DVC shows and compares: one small JSON file per (stage, task, student, set) under metrics/scores/.

    metrics/scores/evaluate/<task>-<student>/<set>.json   n, strict, strict_lo, strict_hi   (set `base` too)
    metrics/scores/sft/<task>-<student>/<set>.json        final_loss, mean_train_loss
    metrics/scores/distance/<task>-<student>/<set>.json   nll (mean per completion token under the base student)

These are the stages' declared DVC `metrics` (dvc.yaml), so `dvc metrics show`, `dvc metrics diff` and
`dvc exp show` list exactly these: what a reader compares across sets and experiments, one row per file, a
handful of columns. Everything else a stage records (timings, throughput, paths, versions, configuration,
histograms) stays in its full record (metrics/<stage>/..., a DVC-cached output, not a metric), so a rerun with
unchanged parameters leaves `dvc metrics diff` empty. A skipped run (empty training set) gets an empty file:
its row shows no number rather than a stale one.
"""
from __future__ import annotations

import math
from pathlib import Path

from sot.io import write_json

SCORES = Path("metrics") / "scores"
KEYS = {"evaluate": ("n", "strict", "strict_lo", "strict_hi"),
        "sft": ("final_loss", "mean_train_loss"),
        "distance": ("nll",)}


def scores_path(stage: str, task: str, student: str, set_name: str) -> Path:
    if stage not in KEYS:
        raise ValueError(f"scores: unknown stage {stage!r}; one of {', '.join(KEYS)}")
    return SCORES / stage / f"{task}-{student}" / f"{set_name}.json"


def scores_of(stage: str, record: dict) -> dict:
    """The compared numbers of a stage's full record (missing, None or NaN values are left out)."""
    if record.get("skipped"):
        return {}
    out = {}
    for key in KEYS[stage]:
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            continue
        out[key] = value
    return out


def write_scores(stage: str, task: str, student: str, set_name: str, record: dict) -> Path:
    """Write the compared numbers of one run (see the module docstring); returns the file written."""
    path = scores_path(stage, task, student, set_name)
    write_json(path, scores_of(stage, record))
    return path
