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
# # 5 · Corrupt: completely flawed traces
#
# Every trace of the base set (`base`: G, the teacher's correct traces, as in the paper) gets one *completely
# flawed* version: the same shape, an error in every step, a wrong final answer. The operator (`sot.corrupt`):
# - `perturb_steps` (programmatic, `sot.perturb`): each arithmetic step's result is shifted and the error
#   carried into what follows; MBPP code is mutated (flipped comparisons, off-by-one ranges, ...);
# - `lm_rewrite`: the teacher rewrites the trace with errors in every step, between `<rewritten>` tags
#   (sampled at `temperature`, at most `max_new_tokens`, weights in `dtype`, resumable in shards of
#   `shard_size`).
#
# Every flawed trace is graded and kept only if it grades **wrong** with a parsed answer; one that still grades
# correct (or comes back empty or unchanged) is retried, then reported as a failure with its reason.
#
# - **In:** `data/sets/<task>/<base>.jsonl`, `data/prepare/<task>/train.jsonl`. **Out:**
#   `data/corrupt/<task>.jsonl` (one flawed trace per base trace that could be flawed) and
#   `metrics/corrupt/<task>.json`. The mix stage then builds the F sets from them.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/OWNER/shape-of-thought/blob/main/notebooks/05_corrupt.ipynb)

# %% tags=["parameters"]
task = 'mbpp'
models = {'smollm2-135m': {'ref': 'smollm2-135m-instruct', 'style': 'chat'}, 'qwen2.5-coder-0.5b': {'ref': 'qwen2.5-coder-0.5b-instruct', 'style': 'chat'}, 'qwen2.5-coder-1.5b': {'ref': 'qwen2.5-coder-1.5b-instruct', 'style': 'chat'}, 'qwen2.5-1.5b': {'ref': 'Qwen/Qwen2.5-1.5B', 'style': 'plain'}, 'gemma-2-2b': {'ref': 'google/gemma-2-2b', 'style': 'plain'}, 'llama-3.1-8b': {'ref': 'meta-llama/Llama-3.1-8B', 'style': 'plain'}, 'gemma-2-27b-it': {'ref': 'google/gemma-2-27b-it', 'style': 'chat'}}
teacher = 'qwen2.5-coder-0.5b'
seed = 42
base = 'G'
operator = 'perturb_steps'
dtype = 'bfloat16'
temperature = 0.7
max_new_tokens = 256
shard_size = 64

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
    install("05_corrupt", CLONE)
from sot.nb import setup

setup(seed)

# %% [markdown]
# ## The base set and the operator
# `lm_rewrite` prompts the teacher through its chat template; `perturb_steps` uses no model.

# %%
import pandas as pd

from sot import styles
from sot.corrupt import corrupt_traces, lm_rewrite
from sot.io import write_json, write_jsonl
from sot.llm import Sampling, get_backend
from sot.pipeline import DATA, METRICS, backend_options, cache_dir, load_problems, load_set, model_and_style, set_path
from sot.resume import resumable
from sot.show import records_table, side_by_side
from sot.steps import step_validity
from sot.tasks import get_task

grader = get_task(task)
base_records = load_set(task, base)
problems = load_problems(task, "train")
op, llm, style = operator, None, None
if operator == "lm_rewrite":
    ref, style = model_and_style(models, teacher)
    styles.require_chat_template(teacher, ref, style)
    if style != "chat":
        raise ValueError(f"corrupt: lm_rewrite instructs the teacher; models.{teacher} has style {style!r}, "
                         "it needs an instruct model (style: chat)")
    llm = resumable(get_backend("auto", ref, **backend_options("auto", None, None, dtype)),
                    cache_dir("corrupt", task), shard_size)
    op = lm_rewrite(llm, Sampling(n=1, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed))
    print(f"lm_rewrite by {teacher} = {ref} ({style} style)")
print(f"{len(base_records)} traces in {base}; operator {operator}")

# %% [markdown]
# ## Flaw every trace, grade, retry

# %%
flawed, metrics = corrupt_traces(base_records, problems, grader, operator=op, seed=seed)
if llm is not None:
    for r in flawed:
        r["source"].update(model_key=teacher, style=style)
    metrics.update(model_key=teacher, style=style, backend=llm.info(),
                   extraction_failures=dict(op.extraction_failures))
metrics.update(base=base, n_base=len(base_records),
               step_validity={base: step_validity(base_records, task), "flawed": step_validity(flawed, task)})
write_jsonl(DATA / "corrupt" / f"{task}.jsonl", flawed)
write_json(METRICS / "corrupt" / f"{task}.json", metrics)
pd.Series({k: metrics[k] for k in ("n_base", "n_flawed", "n_failed")}, name=task).to_frame()

# %% [markdown]
# ## Failures and retries
# `failure_reasons`: why a base trace got no flawed version after every try (`graded_correct`: every attempt
# still graded correct; `unparseable`: no answer left; `no_output`/`unchanged`). For `lm_rewrite`,
# `extraction_failures` counts the replies without a complete `<rewritten>` pair, over all tries.
# An empty base set (e.g. a G on which the teacher got nothing right) gives no flawed traces, and every F set
# is then empty too.

# %%
failures = pd.DataFrame({"failure_reasons": pd.Series(metrics["failure_reasons"], dtype="Int64"),
                         "extraction_failures": pd.Series(metrics.get("extraction_failures", {}), dtype="Int64")})
print(f"flawed at try (0 = first): {metrics['attempts']}")
if len(failures):
    display(failures.fillna(0).rename_axis("reason"))
else:
    print("no failures: every base trace got a flawed version")

# %% [markdown]
# ## A trace and its flawed version, the changes marked
# In the right column every changed stretch of the base trace is written `⟦old → new⟧`.

# %%
import difflib
import re

base_by_id = {r["id"]: r for r in base_records}
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|\w+|\s+|.", re.S)   # numbers whole, words, spaces, single symbols


def mark_changes(old: str, new: str) -> str:
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        out.append("".join(b[j1:j2]) if op == "equal" else f"⟦{''.join(a[i1:i2])} → {''.join(b[j1:j2])}⟧")
    return "".join(out)


def changed_lines(old: str, new: str) -> int:
    return sum(line.startswith("+ ") for line in difflib.ndiff(old.splitlines(), new.splitlines()))


for f in flawed[:2]:
    original = base_by_id[f["id"]]["completion"]
    answer = f"extracted {f['source']['extracted']!r}" if task != "mbpp" else "fails its tests"
    display(side_by_side({f"{base} (base)": original, "flawed, changes marked": mark_changes(original, f["completion"])},
                         title=f["id"], notes={"flawed, changes marked": f"{answer}; "
                                               f"{changed_lines(original, f['completion'])} of "
                                               f"{len(f['completion'].splitlines())} lines changed"}))
if not flawed:
    print("no flawed trace to show")

# %% [markdown]
# ## Step validity: base against flawed
# A completely flawed trace should have (almost) no valid arithmetic step left.

# %%
import matplotlib.pyplot as plt

validity = metrics["step_validity"]
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3))
names = [n for n in validity if validity[n]["frac_valid"] is not None]
left.bar(names, [validity[n]["frac_valid"] for n in names], color=["tab:green" if n == base else "tab:red" for n in names])
left.set(ylim=(0, 1), ylabel="valid steps / steps", title="step validity")
if not names:
    left.set(xticks=[], yticks=[])
    left.text(0.5, 0.5, "no arithmetic steps", ha="center", va="center", transform=left.transAxes)
changed = [changed_lines(base_by_id[f["id"]]["completion"], f["completion"]) / max(1, len(f["completion"].splitlines()))
           for f in flawed]
right.hist(changed, bins=10, range=(0, 1), color="tab:red")
right.set(xlabel="changed lines / lines of the flawed trace", ylabel="traces", title=f"{len(flawed)} flawed traces")
fig.tight_layout()
plt.show()
pd.DataFrame(validity).T.rename_axis("set")

# %% [markdown]
# ## The flawed traces

# %%
records_table(flawed, ["id", "source.attempt", "source.extracted", "completion"] if task != "mbpp"
              else ["id", "source.attempt", "completion"])
