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
# # 7 · Distance: how close each training set is to the student
#
# Before any training, the base student (`student`, a key of `models`) reads every training set and we measure
# how surprising it finds each completion: the mean negative log-likelihood per token (NLL, nats; perplexity =
# exp(NLL)), prompt tokens masked, the end token included, with exactly the tokenisation used for training
# (sot.distance). The paper's claim is that sets closer to the student's own distribution (lower NLL) train it
# better, whatever their correctness. The reference point is the student's **own greedy samples** on the same
# training problems: what it would write itself. Those samples are also graded, so the student's own accuracy on
# the training problems stands beside the teacher's.
#
# - **In:** `data/sets/<task>/<SET>.jsonl` for every set in `sets`, `data/prepare/<task>/train.jsonl`.
#   **Out:** `data/distance/<task>-<student>.jsonl` (the student's own samples, with their grades) and
#   `metrics/distance/<task>-<student>.json` (per set: NLL, perplexity, token and record counts, quartiles of the
#   per-record NLL; the student's own samples under `self`, their accuracy under `self_accuracy`).
# - **Matters:** `max_new_tokens` (an own sample cut there did not end: it is scored without an end token and
#   counted in `n_unterminated`), `max_length` (longer examples are cut from the right: `n_truncated`),
#   `batch_size`, `dtype` (the own samples' decoding only; every NLL is scored in float32).
# - **Resumable:** the own samples are decoded in shards of `shard_size` problems under
#   `data/.cache/distance/<task>-<student>/`; scoring is one forward pass per batch and is simply redone.
# - **Empty set:** a set with no record (e.g. no G for a weak teacher) has no distance; it is listed as empty.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/OWNER/shape-of-thought/blob/main/notebooks/07_distance.ipynb)

# %% tags=["parameters"]
task = 'mbpp'
student = 'smollm2-135m'
models = {'smollm2-135m': {'ref': 'smollm2-135m-instruct', 'style': 'chat'}, 'qwen2.5-coder-0.5b': {'ref': 'qwen2.5-coder-0.5b-instruct', 'style': 'chat'}, 'qwen2.5-coder-1.5b': {'ref': 'qwen2.5-coder-1.5b-instruct', 'style': 'chat'}, 'qwen2.5-1.5b': {'ref': 'Qwen/Qwen2.5-1.5B', 'style': 'plain'}, 'gemma-2-2b': {'ref': 'google/gemma-2-2b', 'style': 'plain'}, 'llama-3.1-8b': {'ref': 'meta-llama/Llama-3.1-8B', 'style': 'plain'}, 'gemma-2-27b-it': {'ref': 'google/gemma-2-27b-it', 'style': 'chat'}}
sets = ['H', 'G', 'W', 'P', 'F50', 'F100']
seed = 42
batch_size = 8
max_length = 512
max_new_tokens = 'auto'
dtype = 'bfloat16'
shard_size = 64

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
    install("07_distance", CLONE)
from sot.nb import setup

setup(seed)

# %% [markdown]
# ## The student and the training sets
# Every set must exist before any model is loaded (a missing one names the stage that writes it).

# %%
import pandas as pd
from IPython.display import display

from sot import styles
from sot.io import read_json, write_json, write_jsonl
from sot.scores import write_scores
from sot.llm import Sampling, get_backend
from sot.pipeline import (DATA, METRICS, backend_options, cache_dir, load_problems, load_set, model_and_style,
                          prompts_for, set_path, stop_for)
from sot.sft.data import is_truncated
from sot.show import records_table, side_by_side
from sot.tasks import get_task

model, style = model_and_style(models, student)
styles.require_chat_template(student, model, style)
missing = [s for s in sets if not set_path(task, s).exists()]
if missing:
    raise FileNotFoundError(f"training sets {missing} of {task} not found under {set_path(task, '').parent}; run "
                            "the stages that write them first (classify: H G W, paraphrase: P, mix: F<pct>)")
records = {s: load_set(task, s) for s in sets}
problems = load_problems(task, "train")
print(f"student {student} = {model} ({style} style); {len(problems)} training problems of {task}")
pd.DataFrame([{"set": s, "records": len(r), "cut by the generation limit (no end token)": sum(map(is_truncated, r))}
              for s, r in records.items()]).set_index("set")

# %% [markdown]
# ## The decoding cap covers every training completion
# The student's own samples are the reference point the sets are compared with; cutting them shorter than the
# sets' completions would compare a half-written sample with whole traces. `max_new_tokens` must be at least
# the longest completion of any set (in the student's tokens, with its end token), or the stage stops here.

# %%
from transformers import AutoTokenizer

from sot.instrument import decoding_cap, longest_completion
from sot.models import resolve

student_tokenizer = AutoTokenizer.from_pretrained(resolve(model))
longest = {s: longest_completion(r, student_tokenizer) for s, r in records.items() if r}
max_new_tokens = decoding_cap(max_new_tokens, longest, "distance.max_new_tokens")   # "auto": the longest
print(f"max_new_tokens = {max_new_tokens}; longest completion per set: {longest}")

# %% [markdown]
# ## The reference point: the student's own greedy samples (resumable)
# Temperature 0, one sample per training problem, in the student's prompt format. Each sample is graded like
# any other trace, so we also learn how often the base student already solves the training problems.

# %%
import gc

from sot.metrics import proportion_ci
from sot.resume import resumable

llm = resumable(get_backend("auto", model, **backend_options("auto", batch_size, dtype=dtype)),
                cache_dir("distance", f"{task}-{student}"), shard_size)
sampling = Sampling(n=1, temperature=0.0, max_new_tokens=max_new_tokens, seed=seed, stop=stop_for(task, style))
outs = llm.generate(prompts_for(task, problems, style), sampling, ids=[p.id for p in problems])
grades = get_task(task).grade_many(problems, [o[0].text for o in outs])
own = [{"id": p.id, "task": task, "category": "self", "prompt": p.question, "completion": o[0].text,
        "source": {"kind": "student greedy", "model": model, "style": style, "finish_reason": o[0].finish_reason,
                   "truncated": o[0].finish_reason == "length", "n_tokens": o[0].n_tokens,
                   "extracted": g.extracted, "correct": bool(g.correct)}}
       for p, o, g in zip(problems, outs, grades)]
write_jsonl(DATA / "distance" / f"{task}-{student}.jsonl", own)
backend_info, decoded = llm.info(), llm.last_stats
del llm   # free the generator (on a GPU, vLLM's memory) before the scorer is loaded
gc.collect()
n_own, n_right = len(own), sum(r["source"]["correct"] for r in own)
self_accuracy = None if not own else {
    "problems": "train", "decoding": "greedy", "n": n_own, "n_correct": n_right, "accuracy": n_right / n_own,
    **dict(zip(("lo", "hi"), proportion_ci(n_right, n_own))), "interval": "wilson",
    "n_parsed": sum(r["source"]["extracted"] is not None for r in own),
    "n_truncated": sum(r["source"]["truncated"] for r in own)}
print(f"{n_own} own samples ({decoded.get('new_shards', 0)} shards decoded now, {decoded.get('resumed_shards', 0)} "
      f"reused); {sum(r['source']['truncated'] for r in own)} cut by max_new_tokens={max_new_tokens}; "
      f"{n_right} of {n_own} graded correct")

# %% [markdown]
# ## Score every set under the base student
# One model, loaded once, reads each set; an empty set is skipped (it has no distance).

# %%
from sot.distance import completion_nll
from sot.models import load

scorer = load(model)
scored = {name: completion_nll(scorer, recs, style, batch_size, max_length)
          for name, recs in {"self": own, **records}.items() if recs}
empty = [s for s in sets if not records[s]]


def without_records(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "records"}


result = {"student": student, "model": model, "style": style,
          "sets": {s: without_records(scored[s]) for s in sets if s in scored}, "empty_sets": empty,
          "self": without_records(scored["self"]) if "self" in scored else None, "self_accuracy": self_accuracy,
          "self_sampling": sampling.to_dict(), "backend": backend_info,
          "resume": {k: decoded.get(k) for k in ("resumed_shards", "new_shards", "shard_folder")}}
write_json(METRICS / "distance" / f"{task}-{student}.json", result)
for scored_set, d in result["sets"].items():   # what `dvc metrics show` lists (sot.scores): each set's NLL
    write_scores("distance", task, student, scored_set, d)
if empty:
    print(f"empty sets, no distance: {', '.join(empty)}")

# %% [markdown]
# ## Distance per set
# `nll`: total NLL / scored tokens (token-weighted: long traces weigh more); `median` and the quartiles are over
# records (each record's own mean NLL per token). `n_unterminated`: records cut by the generation limit, scored
# without an end token; `n_truncated`: examples cut at `max_length`; `n_dropped`: no completion token left.

# %%
from sot.plot_base import set_color, set_order

order = [s for s in ["self", *set_order(sets)] if s in scored]
table = pd.DataFrame([{"set": s, **{k: scored[s][k] for k in ("nll", "ppl", "n_records", "n_tokens", "n_unterminated",
                                                               "n_truncated", "n_dropped")},
                       **{f"record {k}": scored[s]["per_record"][k] for k in ("q1", "median", "q3")}}
                      for s in order])
table.set_index("set").round(3) if order else "no set to score (no training problem and every set empty)"

# %%
import matplotlib.pyplot as plt

if not scored:
    print("no figure: nothing to score (no training problem and every set empty)")
else:
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(order) + 1.4))
    values = [[r["nll"] for r in scored[s]["records"]] for s in order]
    ax.boxplot(values, orientation="horizontal", widths=0.6, showfliers=False)
    for y, (s, v) in enumerate(zip(order, values), start=1):
        jitter = [y + 0.18 * ((i * 7919) % 11 - 5) / 5 for i in range(len(v))]   # deterministic spread
        ax.scatter(v, jitter, s=14, alpha=0.7, color="#f4a261" if s == "self" else set_color(s), zorder=3)
        ax.plot(scored[s]["nll"], y, marker="D", color="black", ms=5, zorder=4)
    if "self" in scored:
        ax.axvline(scored["self"]["nll"], ls="--", color="grey", lw=1)
    ax.set_yticks(range(1, len(order) + 1), [f"{s} ({scored[s]['n_records']})" for s in order])
    ax.invert_yaxis()
    ax.set(xlabel="mean NLL per token under the base student (nats)",
           title=f"{task} · {student}: per-record NLL by set (◆ token-weighted set NLL; dashed: own samples)")
    plt.show()

# %% [markdown]
# ## The student's own samples
# `end token scored` is False for a sample cut by `max_new_tokens`: it did not end, so it is scored without an end
# token (like any length-cut trace in training).

# %%
own_nll = {r["id"]: r["nll"] for r in scored["self"]["records"]} if "self" in scored else {}
records_table([{**r, "nll": own_nll.get(r["id"]), "end token scored": not r["source"]["truncated"]} for r in own],
              ["id", "source.finish_reason", "end token scored", "source.n_tokens", "nll", "source.extracted",
               "source.correct", "completion"], limit=90)

# %%
first = problems[0] if problems else None
if first is None:
    print("no training problem")
else:
    columns = {"H (human)": first.reference, f"{student} (own, greedy)": next(r["completion"] for r in own
                                                                               if r["id"] == first.id)}
    for s in ("G", "W", "P"):
        hit = next((r for r in records.get(s, []) if r["id"] == first.id), None)
        if hit:
            columns[s] = hit["completion"]
    nll_of = {s: {r["id"]: r["nll"] for r in scored[s]["records"]} for s in scored}
    key = {"H (human)": "H", f"{student} (own, greedy)": "self"}
    print(first.question)
    display(side_by_side(columns, width=360, notes={c: f"NLL {nll_of[key.get(c, c)][first.id]:.3f}"
                                            for c in columns if first.id in nll_of.get(key.get(c, c), {})}))

# %% [markdown]
# ## Teacher and student on the same training problems
# The teacher's accuracy is over its `k` samples per problem at `generate.temperature` (stage 3's
# `metrics/classify/<task>.json`); the student's is its one greedy sample per problem (above; 95 % Wilson
# interval over problems). A G set exists only where the teacher gets problems right; a student that already
# solves them greedily has less to learn from G.

# %%
classify_path = METRICS / "classify" / f"{task}.json"
rows = []
if classify_path.exists():
    c = read_json(classify_path)
    rows += [{"who": "teacher, per sample", "correct": c["n_correct_samples"], "of": c["n_samples"],
              "accuracy %": 100 * c["n_correct_samples"] / c["n_samples"] if c["n_samples"] else None},
             {"who": "teacher, problems with a correct sample (G)", "correct": c["n_problems_with_G"],
              "of": c["n_problems"], "accuracy %": 100 * c["n_problems_with_G"] / c["n_problems"] if c["n_problems"] else None}]
else:
    print(f"{classify_path} not found: run stage 3 (classify) for the teacher's side")
if self_accuracy:
    rows.append({"who": f"{student} (base), greedy", "correct": n_right, "of": n_own,
                 "accuracy %": 100 * self_accuracy["accuracy"],
                 "95% CI": f"[{100 * self_accuracy['lo']:.1f}, {100 * self_accuracy['hi']:.1f}]"})
pd.DataFrame(rows).set_index("who").round(1).fillna("-") if rows else "nothing to compare"
