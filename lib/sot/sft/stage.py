"""The sft stage's run of one (task, student, set): what notebooks/08_sft.py calls, and a process entry point.

`run` fine-tunes the student on the set (sot.sft.train, resumable checkpoints and the finished run under
data/.cache/sft/<run>), writes data/sft/<task>-<student>/<set>/ and metrics/sft/<task>-<student>/<set>.json +
metrics/sft/loss/<task>-<student>/<set>.csv; an empty set is not trained (SKIPPED.json and the reason, for the
results table). The notebook calls it once per set of its (task, student) group. It lives in the library, not in the notebook, because
with `sft.num_processes` > 1 the notebook's process does not train: it launches this module with torchrun on
that many processes (one per GPU; TRL with DDP, or FSDP2 with `sft.distributed: fsdp`: sot.sft.distributed), each
of which runs `run` with the notebook's parameters from params.yaml, and reads back what rank 0 wrote. By hand, the same:

    SOT_SFT_LAUNCHED=1 torchrun --standalone --nproc_per_node 4 -m sot.sft.stage --task gsm8k --student llama-3.1-8b --set G
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys

from sot.io import atomic_path, read_json, write_json
from sot.sft import train
from sot.sft.config import SFTConfig
from sot.pipeline import (METRICS, SKIPPED, cache_dir, load_set, loss_path, model_and_style, run_name, set_path, sft_dir,
                          sft_metrics_path)
from sot.scores import write_scores

LAUNCHED = "SOT_SFT_LAUNCHED"   # set in the processes `launch` starts, so they train instead of launching again
RENAMED = {"batch_size": "per_device_batch_size"}  # params.yaml name -> SFTConfig field


def student_options(options: dict, student: str) -> dict:
    """The sft section's options for `student`: its `per_student` entry (if any) over the others."""
    options = dict(options)
    per_student = options.pop("per_student", None) or {}
    if not isinstance(per_student, dict) or not all(isinstance(v, dict) for v in per_student.values()):
        raise ValueError(f"params.yaml sft.per_student must map a student to its settings, e.g. "
                         f"{{llama-3.1-8b: {{distributed: fsdp}}}}; got {per_student!r}")
    own = per_student.get(student) or {}
    if "per_student" in own:
        raise ValueError(f"params.yaml sft.per_student.{student} cannot hold per_student itself")
    return {**options, **own}


def processes(options: dict, student: str) -> int:
    """sft.num_processes for `student` (after its per_student settings)."""
    return int(student_options(options, student).get("num_processes", 1) or 1)


def config(models: dict, student: str, seed: int, options: dict) -> SFTConfig:
    """The SFTConfig of a run: the student's reference and prompt style from `models`, the sft section's options
    with the student's own (`per_student`) over them; num_processes is the launch's, not the config's."""
    model, style = model_and_style(models, student)
    options = {k: v for k, v in student_options(options, student).items() if k != "num_processes"}
    fields = {RENAMED.get(k, k): v for k, v in options.items()}
    return SFTConfig.from_dict({"model": model, "style": style, "seed": seed, **fields})


def why_empty(task: str, set_name: str) -> str:
    """What emptied a set, from the classify metrics where they say it, and what to do about it."""
    classify = METRICS / "classify" / f"{task}.json"
    c = read_json(classify) if classify.exists() else {}
    if c.get("balanced") and c.get("n_problems_with_both") == 0:     # every set is empty, for one reason
        cut = c.get("truncated") or {}
        return (f"classify.balanced keeps only problems with both a G and a W sample, and {task} has "
                f"{c.get('n_problems_with_both')} of {c.get('n_problems')} ({c.get('n_problems_with_G')} with a G, "
                f"{c.get('n_problems_with_W')} with a W; {c.get('n_correct_samples')} of {c.get('n_samples')} samples "
                f"correct, {cut.get('n_samples', 0)} cut by generate.max_new_tokens and dropped: {classify}). Raise "
                "generate.k, generate.max_new_tokens or prepare.n_train, use a stronger teacher, or set "
                "classify.balanced: false.")
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


def run(task: str, student: str, set_name: str, models: dict, seed: int, options: dict) -> dict:
    records = load_set(task, set_name)
    name = run_name(task, student, set_name)
    if not records:  # a weak teacher can leave a task without any correct (G) trace: say so, train nothing
        reason = f"{set_path(task, set_name)} is empty (0 records): nothing to fine-tune on. {why_empty(task, set_name)}"
        print(f"WARNING: {reason}")
        report = {"task": task, "student": student, "set": set_name, "skipped": True, "reason": reason,
                  "n_records": 0}
        write_json(sft_dir(task, student, set_name) / SKIPPED, report)
        write_loss_csv([], loss_path(task, student, set_name))
        write_json(sft_metrics_path(task, student, set_name), report)
        write_scores("sft", task, student, set_name, report)
        return report
    options = student_options(options, student)
    processes = int(options.pop("num_processes", 1) or 1)
    if processes > 1 and not os.environ.get(LAUNCHED):   # not yet inside the distributed launch: start it
        launch(task, student, set_name, processes)
        result = read_json(sft_metrics_path(task, student, set_name))
    else:
        if processes > 1 and int(os.environ.get("WORLD_SIZE", "1")) != processes:
            raise RuntimeError(f"sft: launched for {processes} processes but WORLD_SIZE is "
                               f"{os.environ.get('WORLD_SIZE', 'unset')}; the launcher did not distribute the run")
        # checkpoints outside the DVC out (DVC deletes data/sft/<group> before the stage runs); a rerun resumes,
        # and a run that finished before under the same settings and data is reused (sot.sft.resume)
        result = train(records, config(models, student, seed, options), sft_dir(task, student, set_name),
                       checkpoint_dir=cache_dir("sft", name))
        if int(os.environ.get("RANK", "0")) != 0:
            return {}
        history = result.pop("history")
        write_loss_csv(history, loss_path(task, student, set_name))
        result.update(task=task, student=student, set=set_name, n_records=len(records))
        write_json(sft_metrics_path(task, student, set_name), result)
        write_scores("sft", task, student, set_name, result)   # what `dvc metrics show` lists (sot.scores)
    keys = ("backend", "steps", "tokens", "train_seconds", "tokens_per_s", "final_loss", "checkpoint", "world_size",
            "resume")
    return {k: result.get(k) for k in keys}


def launch(task: str, student: str, set_name: str, processes: int) -> None:
    """Run this stage item on `processes` processes with torchrun (what `accelerate launch --multi_gpu` runs):
    one per GPU with NCCL, or, on a machine without CUDA, CPU processes with gloo (how the tests exercise it)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
           "-m", "sot.sft.stage", "--task", task, "--student", student, "--set", set_name]
    print(f"[sot.sft.stage] launching {processes} processes: {' '.join(cmd[2:])}", flush=True)
    done = subprocess.run(cmd, env={**os.environ, LAUNCHED: "1"})
    if done.returncode:
        raise RuntimeError(f"sft {run_name(task, student, set_name)}: the {processes}-process launch exited with "
                           f"{done.returncode}; its output is above")


def main(argv=None) -> None:
    """Entry point of the launched processes: the same parameters as the notebook, from params.yaml."""
    from sot.nb import load_params, resolve_parameters

    ap = argparse.ArgumentParser(prog="python -m sot.sft.stage", description=__doc__.split("\n")[0])
    ap.add_argument("--task", required=True)
    ap.add_argument("--student", required=True)
    ap.add_argument("--set", required=True)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--notebook", default="notebooks/08_sft.py")
    a = ap.parse_args(argv)
    values = resolve_parameters(a.notebook, load_params(a.params), {"task": a.task, "student": a.student})
    fixed = {k: values.pop(k) for k in ("task", "student", "sets", "models", "seed")}
    run(fixed["task"], fixed["student"], a.set, fixed["models"], fixed["seed"], options=values)


def write_loss_csv(history: list[dict], path) -> None:
    cols = ["step", "tokens", "loss", "lr", "val_loss"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for h in history:
            w.writerow({**h, "tokens": h.get("tokens_seen", h.get("tokens"))})


if __name__ == "__main__":
    main()
