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
# # 3 · Classify: correct (G) and wrong (W) teacher traces
#
# Every teacher sample of the generate stage is graded by the task's grader; per problem, one correct sample
# becomes its **G** trace and one wrong sample its **W** trace, each picked by a seeded hash of
# `(seed, problem id, sample index)`, so the choice is stable under any reordering (`sot.selection`).
# **H** is written beside them (the human traces of the same problems).
#
# - **In:** `data/generate/<task>.jsonl`, `data/prepare/<task>/train.jsonl`. **Out:**
#   `data/sets/<task>/{H,G,W}.jsonl` and `metrics/classify/<task>.json` (pass rates, set sizes, truncation,
#   step validity).
# - **Matters:** `w_policy` (`parsed`: a W trace has a final answer, and it is wrong: the paper's wrong-answer
#   traces; `any`: an unparseable sample may be W too); `truncated` (`drop`: a sample cut by `max_new_tokens`
#   is never G or W, it never ended; `keep`: it may be, and is then trained without an end token);
#   `balanced` (`true`: H, G and W restricted to the problems having both a G and a W, as the paper compares
#   them; `false`: H on every problem, G and W wherever there is one); `seed`.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/OWNER/shape-of-thought/blob/main/notebooks/03_classify.ipynb)

# %% tags=["parameters"]
task = 'mbpp'
seed = 42
balanced = False
w_policy = 'parsed'
truncated = 'drop'

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
    install("03_classify", CLONE)
from sot.nb import setup

setup(seed)

# %% [markdown]
# ## Grade every teacher sample

# %%
import pandas as pd

from sot.io import read_jsonl, write_json, write_jsonl
from sot.pipeline import DATA, METRICS, load_problems, set_path
from sot.selection import grade_samples, select_traces
from sot.show import records_table, side_by_side
from sot.steps import step_validity
from sot.tasks import get_task

grader = get_task(task)
problems = load_problems(task, "train")
samples = read_jsonl(DATA / "generate" / f"{task}.jsonl", required=("id", "sample", "completion"))
graded = grade_samples(samples, problems, grader)
table = pd.DataFrame(graded)
print(f"{len(graded)} samples of {len(problems)} problems: {int(table['correct'].sum()) if len(table) else 0} "
      f"correct, {int(table['extracted'].isna().sum()) if len(table) else 0} without an answer")

# %% [markdown]
# ## Select H, G and W, and write them

# %%
sets, metrics = select_traces(graded, problems, seed=seed, w_policy=w_policy, balanced=balanced,
                              truncated=truncated, human_trace=grader.human_trace)
metrics["step_validity"] = {name: step_validity(sets[name], task) for name in ("H", "G", "W")}
for name in ("H", "G", "W"):
    write_jsonl(set_path(task, name), sets[name])
write_json(METRICS / "classify" / f"{task}.json", metrics)
pd.DataFrame(metrics["sets"]).T.rename_axis("set")

# %% [markdown]
# An empty G means the teacher answered no training problem correctly (every later stage that reads G then
# has nothing to train on, and says so); an empty W, that it never gave a parsed wrong answer.
#
# ## Truncated samples (`truncated` policy)
# A sample is *truncated* when `max_new_tokens` cut it (finish reason `length`). Under `drop` it is never G or
# W: `excluded` counts the correct (G) and wrong (W) candidates that were left out for that reason, and
# `problems_lost_*` the problems that lost their only candidate.

# %%
cut = metrics["truncated"]
pd.Series({**{k: v for k, v in cut.items() if k != "excluded"},
           **{f"excluded from {name}": n for name, n in cut["excluded"].items()}}, name=task).to_frame()

# %% [markdown]
# ## Pass rates and step validity
# Left: how many of its k samples each problem got right (the paper's difficulty spread).
# Right: the fraction of arithmetic steps that are correct in each set (`sot.steps`; MBPP code has none).

# %%
import matplotlib.pyplot as plt

hist = metrics["pass_rate_hist"]
validity = metrics["step_validity"]
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
edges = hist["edges"]
left.bar(edges[:-1], hist["counts"], width=[b - a for a, b in zip(edges[:-1], edges[1:])], align="edge",
         edgecolor="white")
left.set(xlabel="pass rate (correct samples / k)", ylabel="problems",
         title=f"{task}: {hist['all_wrong']} all wrong, {hist['all_correct']} all correct")
names = [n for n in ("H", "G", "W") if validity[n]["frac_valid"] is not None]
colors = {"H": "tab:gray", "G": "tab:green", "W": "tab:red"}
right.bar(names, [validity[n]["frac_valid"] for n in names], color=[colors[n] for n in names])
right.set(ylim=(0, 1), ylabel="valid steps / steps", title="step validity per set")
if not names:
    right.set(xticks=[], yticks=[])
    right.text(0.5, 0.5, "no arithmetic steps in any set", ha="center", va="center", transform=right.transAxes)
fig.tight_layout()
plt.show()
pd.DataFrame(validity).T.rename_axis("set")

# %% [markdown]
# ## One problem's G and W, beside its human trace
# A problem that has both (else one with either); the header line gives the answer the grader extracted.

# %%
g_by_id = {r["id"]: r for r in sets["G"]}
w_by_id = {r["id"]: r for r in sets["W"]}
shown = next((p for p in problems if p.id in g_by_id and p.id in w_by_id), None) \
    or next((p for p in problems if p.id in g_by_id or p.id in w_by_id), None)
if shown is None:
    print("no problem has a G or a W trace: nothing to show")
else:
    print(shown.question)
    columns = {"H (human)": shown.reference}
    notes = {"H (human)": "graded by its tests" if shown.answer is None else f"gold answer: {shown.answer}"}
    for name, chosen in (("G (correct)", g_by_id), ("W (wrong)", w_by_id)):
        if shown.id in chosen:
            src = chosen[shown.id]["source"]
            answer = "code" if task == "mbpp" else repr(src["extracted"])
            columns[name] = chosen[shown.id]["completion"]
            notes[name] = f"sample {src['sample']}, extracted {answer}, {src.get('n_tokens')} tokens"
    display(side_by_side(columns, notes=notes, width=420))

# %% [markdown]
# ## Every sample's verdict
# One row per (problem, sample): whether it graded correct, what answer was extracted, how it ended.

# %%
if len(table):
    table["answer"] = table["extracted"].map(lambda e: None if e is None else ("<code>" if task == "mbpp" else e))
    view = table[["id", "sample", "correct", "answer", "finish_reason", "n_tokens"]]
else:
    view = pd.DataFrame(columns=["id", "sample", "correct", "answer", "finish_reason", "n_tokens"])
view.head(24)
