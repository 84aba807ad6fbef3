# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 8 · SFT: fine-tune the student on each training set
#
# One DVC stage per (task, student): the student (`student`, a key of `models`, in its own prompt format
# `models.<student>.style`) is fine-tuned from its base weights once per training set of `sets`, with the loss on
# the completion only (prompt tokens masked, the end token learned so the model learns to stop). Unsloth on a CUDA
# GPU, TRL (+ PEFT) elsewhere (`backend: auto` says which it used and why).
#
# - **In:** `data/sets/<task>/<set>.jsonl`. **Out:** `data/sft/<task>-<student>/<set>/` (LoRA adapter or full
#   model, tokenizer, training log), `metrics/sft/<task>-<student>/<set>.json` and the loss curve
#   `metrics/sft/loss/<task>-<student>/<set>.csv` (DVC plots it: `dvc plots show`).
# - **Matters:** `method` (`lora` | `full`), `lr`, `budget` + `budget_value` (how long: `steps`, `tokens`, so that
#   sets of different sizes see the same number of training tokens, or `epochs`), `batch_size` x `grad_accum`,
#   `max_length` (longer examples are cut from the right and lose their end token), `checkpoint` (`final` or
#   `best_val` on a split carved from train, never the test set), `sweep` (also save the model at these steps,
#   `[100, 200]` or `{every: 100}`, as `<set>/steps/<step>/`: stage 9 evaluates each beside the headline), `num_processes` (> 1: torchrun, one process per GPU) with `distributed` (`ddp`: a copy per GPU; `fsdp`:
#   weights, gradients and optimizer state sharded, for a student too big for one GPU; a student that cannot fit is
#   refused before training with the arithmetic), `per_student` (settings of one student, e.g. the 8B's `fsdp`).
# - **Resumable:** a full checkpoint every `save_every` optimizer steps under `data/.cache/sft/<task>-<student>-<set>/`;
#   a rerun continues from the newest complete one and ends as an uninterrupted run would. A finished run is kept
#   there too: when the stage reruns because one set changed, the other sets (same settings, data and sot.sft code)
#   are copied back, not retrained.
# - **Empty set:** nothing is trained (e.g. no G trace for a weak teacher); the run writes `SKIPPED.json` with the
#   reason, stage 9 evaluates nothing for it, and the results table lists it.
#
# The training itself is `sot.sft.stage.run`, in the library because with `num_processes` > 1 it is also the entry
# point torchrun starts in every process (it reads this notebook's parameters from params.yaml).
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/OWNER/shape-of-thought/blob/main/notebooks/08_sft.ipynb)

# %% tags=["parameters"]
task = 'mbpp'
student = 'smollm2-135m'
sets = ['H', 'G', 'W', 'P', 'F50', 'F100']
models = {'smollm2-135m': {'ref': 'smollm2-135m-instruct', 'style': 'chat'}, 'qwen2.5-coder-0.5b': {'ref': 'qwen2.5-coder-0.5b-instruct', 'style': 'chat'}, 'qwen2.5-coder-1.5b': {'ref': 'qwen2.5-coder-1.5b-instruct', 'style': 'chat'}, 'qwen2.5-1.5b': {'ref': 'Qwen/Qwen2.5-1.5B', 'style': 'plain'}, 'gemma-2-2b': {'ref': 'google/gemma-2-2b', 'style': 'plain'}, 'llama-3.1-8b': {'ref': 'meta-llama/Llama-3.1-8B', 'style': 'plain'}, 'gemma-2-27b-it': {'ref': 'google/gemma-2-27b-it', 'style': 'chat'}}
seed = 42
backend = 'auto'
method = 'lora'
lora_r = 16
lora_alpha = 32
lora_dropout = 0.0
lr = 0.0005
epochs = 1
budget = 'steps'
budget_value = 8
max_epochs = 4
batch_size = 2
grad_accum = 1
max_length = 512
warmup_ratio = 0.1
weight_decay = 0.0
bf16 = True
precision = 'mixed'
learn_end_token = True
checkpoint = 'final'
sweep = None
eval_fraction = 0.0
logging_steps = 1
save_every = 4
num_processes = 1
distributed = 'ddp'
effective_batch_size = None
per_student = {}

# %%
# Setup. On Colab only: clone this repository, install it and the offline models this notebook uses
# (sot.colab.install). Everywhere: move to the project root (the folder holding params.yaml and dvc.yaml),
# print the versions and seed every RNG.
import sys
if "google.colab" in sys.modules:
    import os
    import subprocess
    REPO = "https://github.com/OWNER/shape-of-thought"  # this repository; `python -m sot.nb colab OWNER/NAME` sets it
    CLONE = "/content/sot"
    if not os.path.isdir(os.path.join(CLONE, ".git")):
        git = subprocess.run(["git", "clone", "-q", REPO, CLONE], capture_output=True, text=True,
                             env=dict(os.environ, GIT_TERMINAL_PROMPT="0"))
        if git.returncode:
            raise RuntimeError(f"git clone {REPO} failed: {git.stderr.strip()}\nFix: set REPO in this cell to this "
                               "repository's URL (or run `python -m sot.nb colab OWNER/NAME` in a checkout, commit, "
                               "push), then rerun this cell")
    sys.path.insert(0, os.path.join(CLONE, "lib"))  # the running kernel does not see the new editable install yet
    from sot.colab import install
    install("08_sft", CLONE)
from sot.nb import setup

setup(seed)

# %% [markdown]
# ## The configuration
# Every setting of the runs as `sot.sft.SFTConfig` holds it (params.yaml's `batch_size` is the per-device batch);
# fields not in params.yaml keep their defaults, shown here too. Every set of the group trains with these.

# %%
import pandas as pd
from IPython.display import display

from sot import styles
from sot.pipeline import SKIPPED, group_name, load_set, loss_path, model_and_style, sft_dir, sft_metrics_path
from sot.sft import stage

options = {"backend": backend, "method": method, "lora_r": lora_r, "lora_alpha": lora_alpha,
           "lora_dropout": lora_dropout, "lr": lr, "epochs": epochs, "budget": budget, "budget_value": budget_value,
           "max_epochs": max_epochs,
           "batch_size": batch_size, "grad_accum": grad_accum, "max_length": max_length, "warmup_ratio": warmup_ratio,
           "weight_decay": weight_decay, "bf16": bf16, "precision": precision, "learn_end_token": learn_end_token,
           "checkpoint": checkpoint, "sweep": sweep, "eval_fraction": eval_fraction,
           "logging_steps": logging_steps, "save_every": save_every, "num_processes": num_processes,
           "distributed": distributed, "effective_batch_size": effective_batch_size, "per_student": per_student}
group = group_name(task, student)
model, style = model_and_style(models, student)
styles.require_chat_template(student, model, style)
cfg = stage.config(models, student, seed, options)    # with this student's own settings (per_student)
records = {s: load_set(task, s) for s in sets}        # every set read (and its fields checked) before training
print(f"group {group}: {len(sets)} sets, {stage.processes(options, student)} process(es) per run "
      f"({cfg.distributed if stage.processes(options, student) > 1 else 'one process'})")
display(pd.DataFrame({"records": {s: len(r) for s, r in records.items()}}).T)
pd.DataFrame({"value": {k: repr(v) for k, v in cfg.to_dict().items()}})

# %% [markdown]
# ## A training example, and the loss-mask check
# One example exactly as the trainer sees it (from the first non-empty set): the prompt tokens have label -100 (no
# loss: the model reads them), the completion tokens and the end token are learned. Decoding the two parts
# separately shows where the boundary is and that the learned part ends with the end token (unless the trace was
# cut by the generation limit: then it must not learn to stop there), unless `learn_end_token` is false (the authors'
# setup: no example ends with it, and the student relies on stop strings to end).

# %%
from sot.models import resolve
from sot.sft.data import IGNORE, build_dataset, is_truncated
from sot.show import side_by_side
from sot.prompts import token_style
from sot.tokens import end_token_id
from transformers import AutoTokenizer

for s, recs in records.items():
    print(f"{s}: {len(recs)} records in data/sets/{task}/{s}.jsonl; "
          f"{sum(map(is_truncated, recs))} cut by the generation limit (trained without an end token)")
tokenizer = AutoTokenizer.from_pretrained(resolve(model))
first = next((s for s, recs in records.items() if recs), None)
example = (build_dataset(records[first][:1], tokenizer, style, max_length, end_token=learn_end_token).examples[0]
           if first else None)
if example is None:
    print("every set is empty: no example to show, nothing will be trained")
else:
    ids, labels = example["input_ids"], example["labels"]
    prompt_ids = [t for t, l in zip(ids, labels) if l == IGNORE]
    learned_ids = [l for l in labels if l != IGNORE]
    end = end_token_id(tokenizer, token_style(style))   # EOS in plain and authors style
    notes = {"masked prompt (label -100)": f"{first}: {len(prompt_ids)} tokens, no loss",
             "learned completion (loss)": f"{len(learned_ids)} tokens; last token {tokenizer.decode(learned_ids[-1:])!r}"
                                          + (" = the end token" if learned_ids[-1] == end else " (no end token)")}
    display(side_by_side({"masked prompt (label -100)": tokenizer.decode(prompt_ids),
                          "learned completion (loss)": tokenizer.decode(learned_ids)}, notes=notes))
    boundary = len(prompt_ids)
    window = [*range(max(0, boundary - 4), min(len(ids), boundary + 4)),   # around the boundary, and the end
              *range(max(boundary + 4, len(ids) - 3), len(ids))]
    display(pd.DataFrame([{"position": i, "token": repr(tokenizer.decode([ids[i]])), "id": ids[i],
                           "label": labels[i], "learned": labels[i] != IGNORE} for i in window]).set_index("position"))

# %% [markdown]
# ## Train each set (resumable; finished runs reused)

# %%
for s in sets:
    summary = stage.run(task, student, s, models, seed, options)
    if summary.get("skipped"):
        print(f"{s}: not trained: {summary['reason']}")
    elif (summary.get("resume") or {}).get("reused_finished_run"):
        print(f"{s}: reused the finished run {summary['resume']['reused_finished_run']} (final loss "
              f"{summary['final_loss']:.3f})")
    else:
        print(f"{s}: {summary['backend']}, {summary['steps']} steps, {summary['tokens']} tokens in "
              f"{summary['train_seconds']:.0f} s ({summary['tokens_per_s']} tokens/s); final loss {summary['final_loss']:.3f}")

# %% [markdown]
# ## What the runs did
# The plan turns the budget into optimizer steps (`rule`); `n_unterminated` examples were trained without an end
# token, `n_truncated` were cut at `max_length`, `n_dropped` had no completion token left.

# %%
from sot.io import read_json

results = {s: read_json(sft_metrics_path(task, student, s)) for s in sets}
keys = ("backend", "method", "steps", "tokens", "train_seconds", "tokens_per_s", "final_loss", "n_train", "n_val",
        "n_unterminated", "n_truncated", "n_dropped", "world_size")
table = {}
for s, r in results.items():
    if r.get("skipped"):
        table[s] = {"trained": f"no: {sft_dir(task, student, s) / SKIPPED}"}
        continue
    chosen = r["checkpoint"]
    table[s] = {"trained": "reused" if (r.get("resume") or {}).get("reused_finished_run") else "yes",
                **{k: r.get(k) for k in keys},
                "checkpoint evaluated": f"{chosen['rule']}: step {chosen['step']}",
                "swept steps": (r.get("sweep") or {}).get("steps", "—"),
                "plan": r["plan"]["rule"], "planned epochs": round(r["plan"]["planned_epochs"], 2)}
pd.DataFrame(table).T

# %% [markdown]
# ## The loss curves
# Mean cross-entropy of the completion tokens per logged step (`metrics/sft/loss/<task>-<student>/<set>.csv`), one
# line per set, with the learning rate (warm-up, then linear decay; the same for every set trained with the same
# number of steps) on the right axis of the first.

# %%
import matplotlib.pyplot as plt

from sot.plot_base import set_color

curves = {s: pd.read_csv(loss_path(task, student, s)) for s in sets}
curves = {s: c for s, c in curves.items() if not c.empty}
if not curves:
    print("no loss curve: nothing was trained")
else:
    fig, ax = plt.subplots(figsize=(8, 3.4))
    for s, loss in curves.items():
        ax.plot(loss["step"], loss["loss"], marker="o", ms=3, color=set_color(s), label=s)
        if loss["val_loss"].notna().any():
            ax.plot(loss["step"], loss["val_loss"], ls="--", color=set_color(s), label=f"{s} (validation)")
    ax.set(xlabel="optimizer step", ylabel="loss (nats / completion token)", title=f"{group}: training loss by set")
    lr_ax = ax.twinx()
    lr_curve = next(iter(curves.values()))
    lr_ax.plot(lr_curve["step"], lr_curve["lr"], color="grey", ls=":", label="learning rate")
    lr_ax.set_ylabel("learning rate")
    ax.legend(loc="upper right", fontsize="small", ncol=2)
    plt.show()

# %% [markdown]
# ## Resuming
# Where checkpoints went, how often, and whether a run continued an earlier one (`resumed_from_step`) or was
# copied from a finished one (`reused_finished_run`). A finished run deletes its checkpoints:
# `data/sft/<task>-<student>/<set>/` holds what stage 9 evaluates.

# %%
resumes = {s: {k: str(v) for k, v in r["resume"].items()} for s, r in results.items()
           if not r.get("skipped") and r.get("resume")}
pd.DataFrame(resumes).T if resumes else "no checkpoints (every set empty, or save_every is null)"
