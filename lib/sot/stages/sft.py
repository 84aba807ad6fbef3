"""Stage sft: fine-tune one student on one training set (one DVC matrix item)."""
from __future__ import annotations

import csv

from sot.io import atomic_path, write_json
from sot.sft import train
from sot.sft.config import SFTConfig
from sot.stages import DATA, METRICS, run_name, set_path
from sot.stages.common import load_set, model_ref

RENAMED = {"batch_size": "per_device_batch_size"}  # params.yaml name -> SFTConfig field


def config(models: dict, student: str, style: str, seed: int, options: dict) -> SFTConfig:
    fields = {RENAMED.get(k, k): v for k, v in options.items()}
    return SFTConfig.from_dict({"model": model_ref(models, student), "style": style, "seed": seed, **fields})


SKIPPED = "SKIPPED.json"  # written instead of a model when the training set is empty


def why_empty(task: str, set_name: str) -> str:
    """What usually empties a set, and what to do about it."""
    if set_name == "G":
        return (f"The teacher answered no training problem correctly (metrics/classify/{task}.json); raise "
                "generate.k or use a stronger teacher, or drop G from sets.")
    if set_name == "W":
        return (f"No teacher sample had a parsed, wrong final answer (metrics/classify/{task}.json); with "
                "classify.w_policy 'parsed' unparseable samples are not W. Use w_policy 'any', or drop W from sets.")
    if set_name == "P":
        return f"Every paraphrase was dropped (metrics/paraphrase/{task}.json); check paraphrase.prompt and the model."
    if set_name.startswith("F"):
        return f"The base set of the mixtures (corrupt.base) is empty for {task}; choose another base or drop F sets."
    return "Check the stage that writes this set."


def run(task: str, student: str, set_name: str, models: dict, style: str, seed: int, options: dict) -> dict:
    records = load_set(set_path(task, set_name))
    name = run_name(task, student, set_name)
    if not records:  # a weak teacher can leave a task without any correct (G) trace: say so, train nothing
        reason = f"{set_path(task, set_name)} is empty (0 records): nothing to fine-tune on. {why_empty(task, set_name)}"
        print(f"WARNING: {reason}")
        report = {"task": task, "student": student, "set": set_name, "skipped": True, "reason": reason,
                  "n_records": 0}
        write_json(DATA / "sft" / name / SKIPPED, report)
        write_loss_csv([], METRICS / "sft" / "loss" / f"{name}.csv")
        write_json(METRICS / "sft" / f"{name}.json", report)
        return report
    result = train(records, config(models, student, style, seed, options), DATA / "sft" / name)
    history = result.pop("history")
    write_loss_csv(history, METRICS / "sft" / "loss" / f"{name}.csv")
    result.update(task=task, student=student, set=set_name, n_records=len(records))
    write_json(METRICS / "sft" / f"{name}.json", result)
    keys = ("backend", "steps", "tokens", "train_seconds", "tokens_per_s", "final_loss", "checkpoint")
    return {k: result.get(k) for k in keys}


def write_loss_csv(history: list[dict], path) -> None:
    cols = ["step", "tokens", "loss", "lr", "val_loss"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for h in history:
            w.writerow({**h, "tokens": h.get("tokens_seen", h.get("tokens"))})
