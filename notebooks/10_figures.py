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
# Everything the earlier stages measured, gathered for every task in `tasks` and student in `students`: test
# accuracy after fine-tuning on each training set with its difference from H, the tolerance to flawed traces
# (F<pct> against F0, and the trend over pct), the training-loss curves, distance against accuracy, the arithmetic
# validity of each set's steps, and the results table with every paired comparison. Accuracies and tests are
# recomputed here from the per-problem rows, never copied from a stored summary (sot.report).
#
# - **In:** `data/evaluate/<task>-<student>/<set>.jsonl` (per-problem verdicts), `metrics/{evaluate,sft,distance,classify,paraphrase,mix}/`.
#   **Out:** `figures/{accuracy_by_set,tolerance,loss_curves,distance_vs_accuracy,step_validity}.{png,pdf}`,
#   `figures/results.md` (the table), `figures/accuracy.csv` and `figures/trend.csv` (what `dvc plots` reads).
# - **Matters:** `n_perm` and `seed` (the permutations of the trend test, the only resampling here), `formats`
#   and `dpi` of the saved figures.
# - **Missing pieces:** a figure whose data no stage produced (no F<pct> set evaluated, no loss curve ...) is
#   skipped with a line saying so; a run not trained because its set was empty is listed under the table.
#   With no evaluated run at all this notebook stops at the first cell that needs one.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/OWNER/shape-of-thought/blob/main/notebooks/10_figures.ipynb)

# %% tags=["parameters"]
tasks = ['mbpp']
students = ['smollm2-135m']
sets = ['H', 'G', 'W', 'P', 'F50', 'F100']
seed = 42
formats = ['png', 'pdf']
dpi = 150
n_perm = 2000

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
    install("10_figures", CLONE)
from sot.nb import setup

setup(seed)

# %% [markdown]
# ## Accuracy and every comparison, from the per-problem rows
# Per (task, student) panel: each set's strict and authors' accuracy (Wilson intervals), each set against H and
# each F<pct> against F0 on the same problems (Tango intervals, exact McNemar), the trend test over pct, and
# Holm's correction over all of the panel's tests.

# %%
import pandas as pd
from IPython.display import Image, Markdown, display

from sot import plots, report
from sot.pipeline import FIGURES

acc, trend = report.accuracy_tables(tasks, students, sets, n_perm=n_perm, seed=seed)
skipped = report.skipped_runs(tasks, students, sets)
plots.set_output(formats, dpi)
FIGURES.mkdir(exist_ok=True)


def show(paths) -> None:
    """Display the PNG a figure function wrote (the other formats are on disk beside it)."""
    png = [p for p in paths if p.suffix == ".png"]
    print("written: " + ", ".join(str(p) for p in paths))
    if png:
        display(Image(filename=str(png[0])))
    else:
        print("(no png among figures.formats: open the files above)")


columns = ["task", "student", "set", "n", "strict", "strict_lo", "strict_hi", "n_parsed", "authors", "delta_vs_H",
           "p_vs_H_holm"]
acc[columns].round(3)

# %% [markdown]
# ## Accuracy by training set, and the difference from H
# Bars: strict accuracy with 95 % Wilson intervals (H hatched: the reference; dashed line: the student without
# fine-tuning). Below: each set minus H on the same problems, with 95 % Tango intervals; a star marks a
# Holm-adjusted p < 0.05.

# %%
show(plots.plot_accuracy_by_set(acc, FIGURES / "accuracy_by_set"))

# %% [markdown]
# ## Tolerance to flawed traces
# Accuracy against the share of completely flawed traces in the training set (F0 = the mixtures' base set: when
# F0 itself was not evaluated, that set stands for it), with F<pct> − F0 below and the trend test in the panel.

# %%
if acc["set"].str.match(r"^F\d+$").any():
    show(plots.plot_tolerance(acc, FIGURES / "tolerance", trend=trend, f0_set=report.mixture_base(tasks)))
else:
    print(f"no tolerance figure: no F<pct> set was evaluated (sets: {sorted(acc['set'].unique())})")

# %% [markdown]
# ## Training loss by set

# %%
loss = report.loss_table(tasks, students, sets)
report.write_loss(loss)   # figures/loss.csv: what `dvc plots show` draws (one chart per task and student)
if loss.empty:
    print("no loss curves: no fine-tuning run logged a loss (metrics/sft/loss/<task>-<student>/<set>.csv)")
else:
    show(plots.plot_loss_curves(loss, FIGURES / "loss_curves"))

# %% [markdown]
# ## Distance from the student against accuracy
# x: each set's mean NLL per token under the base student, before training (stage 7; dashed: the student's own
# samples); y: accuracy after fine-tuning on it. The paper's claim: closer sets (left) train better.

# %%
distance, self_nll = report.distance_tables(tasks, students)
evaluated_sets = acc[acc.set != "base"][["task", "student", "set"]]
if distance.empty or distance.merge(evaluated_sets, on=["task", "student", "set"]).empty:
    print("no distance figure: no set has both a distance (metrics/distance) and an evaluation")
else:
    show(plots.plot_distance_vs_accuracy(distance, acc, FIGURES / "distance_vs_accuracy", self_nll=self_nll))

# %% [markdown]
# ## Arithmetic validity of the steps in each set
# Share of the arithmetic steps (`a op b = c`) whose stated result is right, per set (stages 3, 4 and 6): W traces
# end wrong but are mostly right inside; F traces are wrong by construction.

# %%
steps = report.steps_table(tasks).dropna(subset=["valid_fraction"])
if steps.empty:
    print("no step-validity figure: no set has arithmetic steps (or the metrics are missing)")
else:
    show(plots.plot_step_validity(steps, FIGURES / "step_validity"))

# %% [markdown]
# ## The results table
# Written to `figures/results.md` (and `accuracy.csv`, `trend.csv`); below it, the teacher and the base student
# on the same training problems, and with `sft.sweep` every swept checkpoint's accuracy with the rule that picked
# each set's headline (the checkpoint the table above uses: `sft.checkpoint`, never the best test accuracy).

# %%
from sot import checkpoint_sweep, training_table

teacher_student = report.teacher_student_table(tasks, students)
table = report.write_table(acc, trend, skipped, FIGURES, teacher_student=teacher_student,
                           shortfalls=report.mixture_shortfalls(tasks, sets),
                           training=training_table.markdown(tasks, students, sets),
                           sweep=checkpoint_sweep.markdown(tasks, students, sets))
Markdown(table)

# %% [markdown]
# ## How to read it
# - **Intervals.** `strict acc % [95% CI]` is a Wilson score interval: the range of accuracies compatible with
#   what was observed on these `n` test problems. With the demo's 10 problems it spans 30-50 points (0/10 is
#   [0, 27.8] %), so most differences between sets are not resolved: the demo shows the pipeline working, not the
#   paper's effects. The authors' accuracy is over the `n_parsed` problems their scripts keep.
# - **Δ vs H** is the accuracy difference on the *same* problems, in points, with a Tango score interval for
#   paired proportions; it depends on the problems one set solves and the other does not. It never collapses to
#   [0, 0]: with no such problem at n = 10 it is ±27.8 points.
# - **p** is the exact McNemar test on those discordant problems; **Holm** adjusts it for the number of tests
#   made on the same panel (every set vs H, every F<pct> vs F0, the trend test), so a star or a small Holm p
#   survives having looked at all of them. The intervals are not adjusted. With few discordant problems the
#   interval can exclude 0 while the exact p is ≥ 0.05 (the test is the more conservative of the two).
# - **Tolerance trend**: the slope of accuracy over the flawed share and a permutation p within problems
#   (`n_perm` shuffles, seeded with `seed`).
# - A "—" with a note means a comparison could not be made (e.g. two sets evaluated on different problems).
# README, "Statistics", gives the methods and why.
