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
# # 1 · Prepare: problems and human traces (H)
#
# Every task in `tasks` gets its training and test problems and its human-written traces **H**: GSM8K's
# `answer`, MATH's `solution`, MBPP's `code` (Countdown has no human traces: a solver writes a step-by-step
# one, and is generated, seeded, solvable by construction). Problems come from the local upstream-format copies
# in `$SOT_DATA_DIR` when set, else `data_dir`, else (`data_dir: null`) the Hugging Face hub (docs/data.md); each
# question carries the task's answer-format instruction, so that a teacher's reply is gradable.
#
# - **In:** `data_dir` (`<data_dir>/gsm8k/{train,test}.jsonl`, `mbpp/mbpp.jsonl`, ...). **Out:**
#   `data/prepare/<task>/{train,test,H}.jsonl` and `metrics/prepare.json` (sizes and the gold check).
# - **Matters:** `n_train` and `n_test` (a seeded random subset of each split, kept in dataset order; `null`:
#   all of it), `seed` (which subset). Everything downstream reads these files, so a change here reruns the
#   whole pipeline.
# - **The gold check:** every reference trace must grade correct with the task's own grader; a reference that
#   does not is a grader bug (or a broken record) and is listed below.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/OWNER/shape-of-thought/blob/main/notebooks/01_prepare.ipynb)

# %% tags=["parameters"]
tasks = ['mbpp']
data_dir = '../shared/data'  # None: the hub datasets (Colab); a run by hand reads this line, DVC params.yaml
seed = 42
n_train = 12
n_test = 10

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
    install("01_prepare", CLONE)
from sot.nb import setup

setup(seed)

# %% [markdown]
# ## Load every task's splits
# All tasks are loaded and validated before anything is written: a bad record stops here, naming its file,
# line and field, and leaves the previous outputs as they were.

# %%
import pandas as pd

from sot.io import write_json, write_jsonl
from sot.pipeline import DATA, METRICS
from sot.show import side_by_side
from sot.tasks import get_task

from sot.paths import data_dir as data_folder

root, source = data_folder(data_dir)   # $SOT_DATA_DIR when set, else data_dir, else the hub (docs/data.md)
print(f"datasets from {root if root is not None else 'the Hugging Face hub'}: {source}")
loaded = {}
for name in tasks:
    task = get_task(name)
    loaded[name] = {"train": task.load_split("train", root, limit=n_train, seed=seed),
                    "test": task.load_split("test", root, limit=n_test, seed=seed)}

# %% [markdown]
# ## Write the problems and H
# An H record has the fields every training set has: `{id, task, category, prompt (the question), completion
# (the human trace), source}`. The completion is the reference in the form the question asks for
# (`task.human_trace`): MBPP's code inside the one ```python block the prompt requests, GSM8K's closing
# `#### N` written as "The answer is N."; MATH's `\boxed{}` and Countdown's `<answer>` tags already are.

# %%
def human_record(problem) -> dict:
    return {"id": problem.id, "task": problem.task, "category": "H", "prompt": problem.question,
            "completion": get_task(problem.task).human_trace(problem),
            "source": {"kind": "human", "dataset": problem.task}}


for name, splits in loaded.items():
    out = DATA / "prepare" / name
    for split, problems in splits.items():
        write_jsonl(out / f"{split}.jsonl", (p.to_dict() for p in problems))
    write_jsonl(out / "H.jsonl", (human_record(p) for p in splits["train"]))
pd.DataFrame({name: {split: len(ps) for split, ps in splits.items()} for name, splits in loaded.items()}).T \
    .rename_axis("task")

# %% [markdown]
# ## The gold check: every reference grades correct
# MBPP's references run in the sandbox against their `test_list`.

# %%
summary, failures = {}, []
for name, splits in loaded.items():
    everything = splits["train"] + splits["test"]
    gold = get_task(name).grade_many(everything, [get_task(name).human_trace(p) for p in everything])
    summary[name] = {"train": len(splits["train"]), "test": len(splits["test"]),
                     "gold_correct": sum(g.correct for g in gold), "gold_total": len(gold)}
    failures += [{"task": name, "id": p.id, "extracted": g.extracted} for p, g in zip(everything, gold)
                 if not g.correct]
write_json(METRICS / "prepare.json", summary)
if failures:
    print(f"WARNING: {len(failures)} reference traces do not grade correct (a grader or data problem):")
    display(pd.DataFrame(failures))
else:
    print("every reference grades correct")
pd.DataFrame(summary).T.rename_axis("task")

# %% [markdown]
# ## One problem per task, with its human trace
# The question is what the teacher and the students are prompted with (the task's instruction included).

# %%
for name, splits in loaded.items():
    if not splits["train"]:
        print(f"{name}: no training problems (n_train = {n_train})")
        continue
    p = splits["train"][0]
    display(side_by_side({"question": p.question, "H (human trace)": p.reference}, title=f"{name}: {p.id}",
                         notes={"H (human trace)": f"gold answer: {p.answer}" if p.answer is not None
                                else "graded by its tests"}))

# %% [markdown]
# ## How long the human traces are
# Words per trace (whitespace-separated; GSM8K counts its `<<48/2=24>>` calculator notes as words here).
# The teacher's `max_new_tokens` and the students' `max_length` must leave room for traces this long.

# %%
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, len(loaded), figsize=(4.5 * len(loaded), 3), squeeze=False)
for ax, (name, splits) in zip(axes[0], loaded.items()):
    lengths = [len(p.reference.split()) for p in splits["train"]]
    ax.hist(lengths, bins=15, color="tab:blue")
    ax.set(title=f"{name}: H ({len(lengths)} traces)", xlabel="words per trace", ylabel="traces")
fig.tight_layout()
plt.show()
