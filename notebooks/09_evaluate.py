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
# # 9 · Evaluate: the student answers the held-out test problems
#
# The student (`student`, a key of `models`) answers every test problem once, greedily, in its own prompt format
# (`models.<student>.style`): first as it is (`base`), then after fine-tuning on each training set of `sets` (the
# LoRA adapter or full model that stage 8 wrote), one model at a time. One DVC stage per (task, student). Each
# output is graded twice: **strict** (our grader; an unparseable answer counts as wrong, so the denominator is
# every problem) and the **authors'** rule (the paper's published scripts, which leave unparseable outputs out:
# their denominator is `n_parsed`). Both accuracies come with 95 % Wilson score intervals (README, "Statistics").
#
# - **In:** `data/prepare/<task>/test.jsonl`, `data/sft/<task>-<student>/<set>/`.
#   **Out:** `data/evaluate/<task>-<student>/<set>.jsonl` for `base` and every set (one row per problem: output,
#   both verdicts, tokens, finish reason) and `metrics/evaluate/<task>-<student>/<set>.json`.
# - **Matters:** `max_new_tokens` (an output cut there usually has no final answer: it counts as wrong under the
#   strict rule; `authors`: the paper authors' limit of the task, 2048 MATH/GSM8K, 4096 Countdown, 1024 MBPP), `backend` (`auto`: vLLM on a CUDA GPU, else transformers), `dtype` (bfloat16 decoded MBPP twice as fast as
#   float32 on 2 CPU cores, with the same 2 of 32 correct: README), `batch_size`, `n_boot` (> 0 adds a
#   percentile bootstrap to the metrics; nothing uses it).
# - **Resumable:** shards of `shard_size` problems under `data/.cache/evaluate/<task>-<student>-<set>/`, keyed by
#   the weights' digest, survive a kill; a rerun decodes only what is missing, so when one set was retrained only
#   its model decodes again.
# - **Swept checkpoints:** with `sft.sweep` the sft stage also saved the model at chosen steps
#   (`data/sft/<task>-<student>/<set>/steps/<step>/`); each is evaluated too, as `<set>@<step>` (its own rows and
#   metrics files beside the set's). The set's own model stays its headline: the checkpoint `sft.checkpoint` picked
#   before any test problem was seen (`final`, or `best_val` on the validation split carved from train), never the
#   one with the best test accuracy. Without a sweep nothing is added.
# - **Empty training set:** when stage 8 trained nothing for a set (it wrote `SKIPPED.json`: e.g. no G trace for
#   a weak teacher), there is no model to evaluate: this notebook writes an empty row file and the reason, and
#   the results table lists the run as not trained.
#
# Per-set comparisons (paired differences with H, the tolerance trend) are stage 10's.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/OWNER/shape-of-thought/blob/main/notebooks/09_evaluate.ipynb)

# %% tags=["parameters"]
task = 'mbpp'
student = 'smollm2-135m'
sets = ['H', 'G', 'W', 'P', 'F50', 'F100']
models = {'smollm2-135m': {'ref': 'smollm2-135m-instruct', 'style': 'chat'}, 'qwen2.5-coder-0.5b': {'ref': 'qwen2.5-coder-0.5b-instruct', 'style': 'chat'}, 'qwen2.5-coder-1.5b': {'ref': 'qwen2.5-coder-1.5b-instruct', 'style': 'chat'}, 'qwen2.5-1.5b': {'ref': 'Qwen/Qwen2.5-1.5B', 'style': 'plain'}, 'gemma-2-2b': {'ref': 'google/gemma-2-2b', 'style': 'plain'}, 'llama-3.1-8b': {'ref': 'meta-llama/Llama-3.1-8B', 'style': 'plain'}, 'gemma-2-27b-it': {'ref': 'google/gemma-2-27b-it', 'style': 'chat'}}
seed = 42
backend = 'auto'
max_new_tokens = 'auto'
dtype = 'float32'
batch_size = 10
shard_size = 64
n_boot = 0
min_adapter_kept = 0.95

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
    install("09_evaluate", CLONE)
from sot.nb import setup

setup(seed)

# %% [markdown]
# ## Which weights
# `base`: the student as downloaded. Any other set: what the sft stage of this (task, student) wrote, a LoRA
# adapter (evaluated on top of the base model) or a full fine-tuned model. The prompt format is the student's
# own; a `chat` style on a model without a chat template stops here, before any decoding.

# %%
import pandas as pd
from IPython.display import display

from sot import checkpoint_sweep, styles
from sot.evaluate import evaluate
from sot.io import read_json, write_json, write_jsonl
from sot.llm import get_backend
from sot.pipeline import (SKIPPED, backend_options, cache_dir, eval_metrics_path, eval_rows_path, group_name,
                          load_problems, model_and_style, run_name, sft_dir)
from sot.resume import resumable
from sot.scores import write_scores
from sot.show import records_table, shorten, side_by_side
from sot.tasks import get_task


def student_weights(models: dict, student: str, task: str, set_name: str) -> tuple[str, str | None] | None:
    """(model, adapter) to evaluate: the base student, or its fine-tuned LoRA adapter / full model; None when
    stage 8 trained nothing for the set (SKIPPED.json)."""
    base, _ = model_and_style(models, student)
    if set_name == "base":
        return base, None
    trained = sft_dir(task, student, set_name)
    if (trained / SKIPPED).exists():
        return None
    if not trained.exists():
        raise FileNotFoundError(f"{trained}: no fine-tuned model for set {set_name!r}; run "
                                f"`dvc repro sft@{group_name(task, student)}` (or notebook 08_sft with this task "
                                "and student) first")
    return folder_weights(base, trained)


def folder_weights(base: str, trained) -> tuple[str, str | None]:
    """(model, adapter) of a fine-tuned folder: the base + its LoRA adapter, or the full model it holds."""
    if (trained / "adapter_config.json").exists():
        return base, str(trained)
    return str(trained), None


def adapter_kept(llm, path: str, adapter: str, problems, style: str, n_prompts: int = 4) -> dict:
    """sot.fidelity's kept fraction for the model this backend decodes with (transformers: the merged model;
    vLLM applies LoRA unmerged in its own kernels: measured only in float32 terms, see the error below)."""
    from sot import fidelity
    from sot.evaluate import build_prompts
    from sot.llm.base import render

    inner = getattr(llm, "model", None)
    if inner is None or not hasattr(inner, "forward"):
        if llm.info().get("dtype") != "float32":
            raise ValueError(f"{llm.name} backend with a LoRA adapter in {llm.info().get('dtype')}: its kept share "
                             "of the adapter's effect cannot be measured here; set evaluate.dtype: float32 in "
                             "params.yaml (or evaluate.backend: transformers)")
        return {"kept": None, "note": f"{llm.name}: adapter applied unmerged in float32 (not measured)",
                "dtype": "float32"}
    prompts, _ = build_prompts(get_task(task), problems[:n_prompts], style)
    texts = [render(llm.tokenizer, p) for p in prompts]
    return fidelity.measure(path, adapter, inner, llm.dtype, texts, device=llm.device)


group = group_name(task, student)
model, style = model_and_style(models, student)
styles.require_chat_template(student, model, style)
problems = load_problems(task, "test")
plan = {}                                     # every model exists, or stop here
for s in ["base", *sets]:
    plan[s] = student_weights(models, student, task, s)
    swept = checkpoint_sweep.swept_folders(sft_dir(task, student, s)) if plan[s] and s != "base" else {}
    plan.update({name: folder_weights(model, folder) for name, folder in swept.items()})   # <set>@<step>
    if s != "base":       # swept checkpoints an earlier run evaluated and this one does not (outside DVC)
        for path in checkpoint_sweep.stale(task, student, s, keep=list(swept)):
            path.unlink()
pd.DataFrame([{"set": s, "weights": w[0] if w else "—", "LoRA adapter": (w[1] or "—") if w else "—",
               "evaluated": w is not None} for s, w in plan.items()]).set_index("set")

# %% [markdown]
# ## The instrument: the cap covers what was trained, the evaluated model is the trained one
# Two checks before any decoding. **The cap:** `max_new_tokens` must be at least the longest completion any set
# was trained on (student tokens, with the end token, from each model's `train_summary.json`); a lower cap cuts
# the sets with long traces (the teacher's) mid-answer. **The adapter's effect:** before each fine-tuned model
# decodes, its next-token log-probabilities on four test prompts are compared with the unmerged float32 adapter's
# (`sot.fidelity`): the share of the adapter's effect the evaluated model keeps must reach `min_adapter_kept`.
# bf16 kept 77-89 % of the demo adapters' effect; float32 keeps all of it.

# %%
from sot.instrument import check_kept, decoding_cap, trained_longest
from sot.sft import SUMMARY_FILE

longest = trained_longest({s: sft_dir(task, student, s) / SUMMARY_FILE for s, w in plan.items()
                           if w is not None and s != "base" and (sft_dir(task, student, s) / SUMMARY_FILE).exists()})
from sot.authors_style import generation_limit

max_new_tokens = generation_limit(max_new_tokens, task)   # "authors": the authors' limit of this task (paper preset)
max_new_tokens = decoding_cap(max_new_tokens, longest, "evaluate.max_new_tokens")   # "auto": the longest
print(f"max_new_tokens = {max_new_tokens}; longest training completion per set: {longest or 'none recorded'}")

# %% [markdown]
# ## Greedy decoding and grading (resumable), one model at a time
# Each run's rows and metrics are written as soon as it is done.

# %%
summaries, all_rows = {}, {}
for set_name, weights in plan.items():
    name = run_name(task, student, set_name)
    if weights is None:   # no model was trained (empty set): record why, for the results table
        rows, summary = [], {**read_json(sft_dir(task, student, set_name) / SKIPPED), "evaluated": False}
        print(f"WARNING: {name} not evaluated: {summary['reason']}")
    else:
        path, adapter = weights
        print(f"{name}: {path}" + (f" + LoRA adapter {adapter}" if adapter else "")
              + f" ({style} style) on {len(problems)} test problems of {task}")
        llm = get_backend(backend, path, adapter=adapter, **backend_options(backend, batch_size, dtype=dtype))
        effect = adapter_kept(llm, path, adapter, problems, style) if adapter else None
        if effect is not None:
            print(f"  keeps {effect['kept']:.1%} of its adapter's effect (cosine {effect['cosine']:.4f}; "
                  f"{effect['dtype']}, {effect['n_positions']} positions)" if effect.get("kept") is not None
                  else f"  adapter effect: {effect.get('note')}")
            check_kept(effect, min_adapter_kept, name, effect["dtype"])
        llm = resumable(llm, cache_dir("evaluate", name), shard_size)
        rows, summary = evaluate(get_task(task), problems, llm, style=style, max_new_tokens=max_new_tokens,
                                 batch_size=None, n_boot=n_boot, seed=seed)   # the wrapper cuts the shards
        summary.update(student=student, set=set_name, model=path, adapter=adapter, adapter_effect=effect,
                       max_new_tokens=max_new_tokens, n_cut=summary["generation"]["n_truncated"],
                       # which checkpoint (sft.checkpoint's pick, or swept at a step: sot.checkpoint_sweep)
                       checkpoint=checkpoint_sweep.checkpoint_of(adapter or path) if set_name != "base" else None,
                       resume={k: llm.last_stats[k] for k in ("resumed_shards", "new_shards", "shard_folder")})
        done = llm.last_stats   # what this run decoded itself (a resumed run decodes only the missing shards)
        print(f"  {summary['n_correct']}/{len(rows)} correct (strict); decoded now: {done['generated_tokens']} tokens "
              f"in {done['seconds']:.0f} s ({done['tokens_per_s']:.1f} tokens/s), {done['new_shards']} new and "
              f"{done['resumed_shards']} reused shards")
        del llm
    write_jsonl(eval_rows_path(task, student, set_name), rows)
    write_json(eval_metrics_path(task, student, set_name), summary)
    write_scores("evaluate", task, student, set_name, summary)   # what `dvc metrics show` lists (sot.scores)
    summaries[set_name], all_rows[set_name] = summary, rows

# %% [markdown]
# ## Accuracy by set, strict and the authors' way
# Strict: correct / all `n` problems. Authors': their verdict / the `n_parsed` problems their scripts keep (an
# output they cannot parse leaves the denominator). Intervals: 95 % Wilson score intervals; with a few dozen test
# problems they are tens of points wide, so small differences between sets mean little on their own (the paired
# comparisons are in stage 10).

# %%
def accuracy_frame(summaries: dict) -> pd.DataFrame:
    def pct(v):
        return None if v is None else round(100 * v, 1)

    out = []
    for s, m in summaries.items():
        if m.get("evaluated") is False:
            out.append({"set": s, "strict %": None, "strict 95% CI": "not trained: empty set"})
            continue
        out.append({"set": s, "checkpoint": checkpoint_sweep.describe(m), "correct": m["n_correct"], "of": m["n"],
                    "strict %": pct(m["strict"]),
                    "strict 95% CI": f"[{pct(m['strict_lo'])}, {pct(m['strict_hi'])}]",
                    "authors' correct": m["n_authors_correct"], "of parsed": m["n_parsed"],
                    "authors' %": pct(m["authors"]),
                    "authors' 95% CI": (f"[{pct(m['authors_lo'])}, {pct(m['authors_hi'])}]" if m["n_parsed"]
                                        else "-")})
    return pd.DataFrame(out).set_index("set")


accuracy_frame(summaries)

# %%
import matplotlib.pyplot as plt

from sot.plot_base import set_color

shown_sets = [s for s, m in summaries.items() if m.get("evaluated") is not False]
fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 3.2), gridspec_kw={"width_ratios": [1.4, 1]})
for i, s in enumerate(shown_sets):
    m = summaries[s]
    ax.bar(i, 100 * m["strict"], color=set_color(checkpoint_sweep.parse(s)[0]),
           hatch="//" if checkpoint_sweep.parse(s)[1] is not None else None)   # hatched: a swept checkpoint
    ax.errorbar(i, 100 * m["strict"], yerr=[[100 * max(0.0, m["strict"] - m["strict_lo"])],
                                            [100 * max(0.0, m["strict_hi"] - m["strict"])]],
                color="black", capsize=3)
ax.set_xticks(range(len(shown_sets)), shown_sets, rotation=45 if len(shown_sets) > 8 else 0)
ax.set(ylabel="strict accuracy (%)", ylim=(0, 100), xlabel="training set",
       title=f"{group}: strict accuracy, 95 % Wilson intervals (n = {len(problems)})")
verdicts = {"correct": 0, "wrong": 0, "unparseable": 0}
lengths = {k: [] for k in verdicts}
for s in shown_sets:
    for r in all_rows[s]:
        kind = "unparseable" if r["extracted"] is None else ("correct" if r["correct"] else "wrong")
        lengths[kind].append(r["n_tokens"])
for kind, color in (("correct", "#2a9d5c"), ("wrong", "#d1495b"), ("unparseable", "#999999")):
    bx.hist(lengths[kind], bins=20, range=(0, max_new_tokens), alpha=0.75, color=color,
            label=f"{kind} ({len(lengths[kind])})")
bx.axvline(max_new_tokens, ls="--", color="black", lw=1, label="max_new_tokens")
bx.set(xlabel="output tokens", ylabel="outputs (all sets)", title="output lengths by strict verdict")
bx.legend(fontsize="small")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Swept checkpoints and the headline
# With `sft.sweep`: every evaluated checkpoint of each set, and the one that stands for the set in the results
# (stage 10), picked by the rule `sft.checkpoint` fixed before training (`final`: the last step; `best_val`: the
# lowest loss on the validation split carved from train; `sot.checkpoint_sweep.select`), whatever their test
# accuracies.

# %%
sweep_table = []
for s in sets:
    found = [{"name": n, "swept": n != s, **(summaries[n].get("checkpoint") or {})} for n in summaries
             if checkpoint_sweep.parse(n)[0] == s and summaries[n].get("evaluated") is not False]
    if len(found) < 2:
        continue
    pick = checkpoint_sweep.select(found, found[0]["rule"])["name"]
    sweep_table += [{"set": s, "checkpoint": c["name"], "step": c["step"], "validation loss": c.get("val_loss"),
                     "strict %": round(100 * summaries[c["name"]]["strict"], 1),
                     "headline": f"yes ({found[0]['rule']})" if c["name"] == pick else ""} for c in found]
(pd.DataFrame(sweep_table).set_index(["set", "checkpoint"]) if sweep_table
 else print("no sft.sweep: each set has one checkpoint, the one sft.checkpoint picked"))

# %% [markdown]
# ## A correct, a wrong and an unparseable output, with both graders' verdicts
# From the first fine-tuned set that was evaluated (else the base student). *Unparseable*: our grader found no
# final answer (`extracted` is empty); the authors' scripts then usually leave the problem out (`left out`). A
# kind that did not occur is said so.

# %%
by_id = {p.id: p for p in problems}
shown_set = next((s for s in shown_sets if s != "base"), "base")
rows = all_rows[shown_set]


def verdict_note(row: dict) -> str:
    authors = ("left out" if row["authors_extracted"] is None
               else ("correct" if row["authors_correct"] else "wrong") + f" ({short(row['authors_extracted'])})")
    ours = ("correct" if row["correct"] else "wrong") + f" ({short(row['extracted'])})"
    reference = by_id[row["id"]]   # the gold answer, as our grader reads it off the human trace
    gold = get_task(task).grade(reference, reference.reference).extracted
    return (f"{row['id']} · gold: {short(gold)} · strict: {ours} · authors': {authors} · "
            f"{row['n_tokens']} tokens, {row['finish_reason']}")


def short(answer) -> str:
    return "no answer" if answer is None else shorten(" ".join(str(answer).split()), 40)


kinds = {"correct": lambda r: r["correct"], "wrong": lambda r: not r["correct"] and r["extracted"] is not None,
         "unparseable": lambda r: r["extracted"] is None}
examples = {kind: next((r for r in rows if pick(r)), None) for kind, pick in kinds.items()}
shown = {kind: f"{by_id[r['id']].question}\n\n──── {student} after {shown_set} ────\n{r['completion']}"
         for kind, r in examples.items() if r is not None}
missing = [k for k, r in examples.items() if r is None]
print(f"set {shown_set}: " + (f"no {' and no '.join(missing)} output among the {len(rows)}" if missing
                              else "one output of each kind"))
side_by_side(shown, notes={k: verdict_note(r) for k, r in examples.items() if r is not None}, width=420) \
    if shown else "nothing evaluated"

# %% [markdown]
# ## Every problem of that set (first 20)

# %%
records_table(rows[:20], ["id", "extracted", "correct", "authors_extracted", "authors_correct", "n_tokens",
                          "finish_reason", "completion"], limit=100)
