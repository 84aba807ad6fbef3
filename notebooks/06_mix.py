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
# # 6 · Mix: the F sets, base traces mixed with flawed ones
#
# **F`fraction`** is the base set (`base`, default G) with `fraction` % of its traces replaced by their
# completely flawed versions from the corrupt stage; the rest stay as they were. The base ids are put in one
# seeded order (`sha256(seed, "mix", id)`), and F`p` flaws the first `round(p % x n)` ids of that order that
# have a flawed version: the mixtures are *nested* (what is flawed in F25 is flawed in F50), and F0 is the base
# set itself. A base trace without a flawed version (the operator failed on it) stays clean and is counted.
#
# - **In:** `data/sets/<task>/<base>.jsonl`, `data/corrupt/<task>.jsonl`. **Out:**
#   `data/sets/<task>/F<fraction>.jsonl` and `metrics/mix/<task>-F<fraction>.json`.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/OWNER/shape-of-thought/blob/main/notebooks/06_mix.ipynb)

# %% tags=["parameters"]
task = 'mbpp'
seed = 42
base = 'G'
fraction = 0

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
    install("06_mix", CLONE)
from sot.nb import setup

setup(seed)

# %% [markdown]
# ## Mix

# %%
import pandas as pd

from sot.corrupt import mix
from sot.io import read_jsonl, write_json, write_jsonl
from sot.pipeline import DATA, METRICS, RECORD_FIELDS, load_set, set_path
from sot.selection import seeded_key
from sot.show import records_table
from sot.steps import step_validity

base_records = load_set(task, base)
flawed = read_jsonl(DATA / "corrupt" / f"{task}.jsonl", required=RECORD_FIELDS + ("source",))
sets, mixed = mix(base_records, flawed, fractions=[fraction], seed=seed)
name = f"F{fraction}"
records = sets[name]
report = {"base": base, "fraction": fraction, **mixed["sets"][name],
          "flawed_ids": [r["id"] for r in records if r["source"]["flawed"]],
          "step_validity": {name: step_validity(records, task)}}
write_jsonl(set_path(task, name), records)
write_json(METRICS / "mix" / f"{task}-{name}.json", report)
pd.Series({k: report[k] for k in ("base", "size", "target_flawed", "n_flawed", "shortfall", "skipped_failures")},
          name=name).to_frame()

# %% [markdown]
# `shortfall` > 0: fewer base traces had a flawed version than the fraction asks for (see the corrupt report's
# failures). An empty F set means the base set is empty (the sft stage then skips it and says why).
#
# ## The make-up of the set
# Each base trace in the seeded mix order: red where this set holds its flawed version, green where it holds
# the base trace, grey where the corrupt stage has no flawed version of it (it stays clean at every fraction).

# %%
import matplotlib.pyplot as plt

flawed_ids = {f["id"] for f in flawed}
chosen = set(report["flawed_ids"])
order = sorted((r["id"] for r in base_records), key=lambda pid: seeded_key(seed, "mix", pid))
colors = ["tab:red" if pid in chosen else "tab:green" if pid in flawed_ids else "tab:gray" for pid in order]
fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(order)), 1.6))
ax.bar(range(len(order)), [1] * len(order), color=colors, edgecolor="white")
ax.set_xticks(range(len(order)), [pid.rsplit("/", 1)[-1] for pid in order], rotation=90, fontsize=7)
ax.set(yticks=[], xlabel="base id in mix order",
       title=f"{task} {name}: {report['n_flawed']} of {report['size']} traces flawed (base {base})")
plt.show()

# %% [markdown]
# ## The set's records
# `source.flawed`: the flawed version (its operator and, except for MBPP code, its wrong answer) or the
# base trace as it was.

# %%
fields = ["id", "source.flawed", "source.operator", "source.extracted", "completion"]
records_table(records, [f for f in fields if not (task == "mbpp" and f == "source.extracted")], limit=110)

# %%
pd.DataFrame(report["step_validity"]).T.rename_axis("set")
