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
# # 2 · Generate: the teacher samples k traces per training problem
#
# The teacher (`teacher`, a key of `models`; the demo's is Qwen2.5-Coder-0.5B-Instruct) answers every training
# problem `k` times at temperature `temperature` (nucleus `top_p`), in its own prompt format (`models.<teacher>.style`:
# `chat` applies its chat template). These samples are the raw material of **G** (correct final answer) and **W**
# (wrong), chosen in the next stage.
#
# - **In:** `data/prepare/<task>/train.jsonl`. **Out:** `data/generate/<task>.jsonl` (one record per
#   `(id, sample)`: completion, token count, finish reason, provenance) and `metrics/generate/<task>.json`.
# - **Matters:** `k`, `temperature`, `top_p`, `max_new_tokens` (a sample that reaches it is *truncated*, and by
#   default never becomes G or W), `dtype` (bfloat16 runs ~3x faster on CPUs with AMX), `backend`.
# - **Resumable:** shards of `shard_size` problems under `data/.cache/generate/<task>/` survive a kill; a rerun
#   generates only what is missing and never mixes shards made under other settings.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/OWNER/shape-of-thought/blob/main/notebooks/02_generate.ipynb)

# %% tags=["parameters"]
task = 'mbpp'
models = {'smollm2-135m': {'ref': 'smollm2-135m-instruct', 'style': 'chat'}, 'qwen2.5-coder-0.5b': {'ref': 'qwen2.5-coder-0.5b-instruct', 'style': 'chat'}, 'qwen2.5-coder-1.5b': {'ref': 'qwen2.5-coder-1.5b-instruct', 'style': 'chat'}, 'qwen2.5-1.5b': {'ref': 'Qwen/Qwen2.5-1.5B', 'style': 'plain'}, 'gemma-2-2b': {'ref': 'google/gemma-2-2b', 'style': 'plain'}, 'llama-3.1-8b': {'ref': 'meta-llama/Llama-3.1-8B', 'style': 'plain'}, 'gemma-2-27b-it': {'ref': 'google/gemma-2-27b-it', 'style': 'chat'}}
teacher = 'qwen2.5-coder-0.5b'
seed = 42
backend = 'auto'
base_url = None
dtype = 'bfloat16'
k = 4
temperature = 0.8
top_p = 0.95
max_new_tokens = 256
batch_size = 48
shard_size = 12

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
    install("02_generate", CLONE)
from sot.nb import setup

setup(seed)

# %% [markdown]
# ## The teacher and its prompts
# The prompt format is the teacher's own (`models.<teacher>.style`); a `chat` style on a model without a chat
# template stops here, before any generation.

# %%
import pandas as pd

from sot import styles
from sot.generate import generate_samples
from sot.io import read_jsonl, write_json
from sot.llm import Sampling, get_backend
from sot.pipeline import (DATA, METRICS, backend_options, cache_dir, load_problems, model_and_style,
                          prompts_for, stop_for)
from sot.show import side_by_side

model, style = model_and_style(models, teacher)
styles.require_chat_template(teacher, model, style)
problems = load_problems(task, "train")
prompts = prompts_for(task, problems, style)
sampling = Sampling(n=k, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed,
                    stop=stop_for(task, style))
print(f"teacher {teacher} = {model} ({style} style); {len(problems)} problems x k={k}; {sampling}")
prompts[0]

# %% [markdown]
# ## Sample (resumable)

# %%
llm = get_backend(backend, model, **backend_options(backend, batch_size, base_url, dtype))
stats = generate_samples(problems, prompts, llm, sampling, out_path=DATA / "generate" / f"{task}.jsonl",
                         shard_dir=cache_dir("generate", task), shard_size=shard_size,
                         meta={"teacher": teacher, "style": style, "task": task})
stats.update(backend=llm.info(), problems=len(problems), k=k, style=style)
write_json(METRICS / "generate" / f"{task}.json", stats)
print(f"{stats['samples']} samples, {stats['tokens']} tokens; generated now: {stats['generated_samples']} samples "
      f"in {stats['seconds']:.0f} s = {stats['tokens_per_s']:.1f} tokens/s ({stats['resumed_chunks']} shards reused)")

# %% [markdown]
# ## What came out: finish reasons and lengths
# `length` = cut by `max_new_tokens` (no ending: by default such a sample is never G or W).

# %%
samples = pd.DataFrame(read_jsonl(DATA / "generate" / f"{task}.jsonl"))
summary = samples.groupby("finish_reason")["n_tokens"].describe()[["count", "mean", "min", "50%", "max"]]
summary

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6, 3))
for reason, group in samples.groupby("finish_reason"):
    ax.hist(group["n_tokens"], bins=20, range=(0, max_new_tokens), alpha=0.7, label=f"{reason} ({len(group)})")
ax.set(xlabel="completion tokens", ylabel="samples", title=f"{task}: teacher sample lengths")
ax.legend()
plt.show()

# %% [markdown]
# ## All k samples of one problem, side by side

# %%
first = samples[samples["id"] == problems[0].id].sort_values("sample")
print(problems[0].question)
side_by_side({f"sample {r.sample}": r.completion for r in first.itertuples()},
             notes={f"sample {r.sample}": f"{r.n_tokens} tokens, {r.finish_reason}" for r in first.itertuples()})
