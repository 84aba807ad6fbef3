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
# An instruct model (`paraphrase.model`, default the `teacher`) rewrites every H trace in its own words, asked
# to keep every step and the final answer (`prompt`, default `sot.paraphrase.DEFAULT_TEMPLATE`). The request
# shows the problem as the dataset states it (without the answer-format instruction, which a small model answers
# instead of rewriting), quotes H's final answer line to be kept verbatim, and opens the reply with a
# `<rewritten>` tag; only what the model writes before closing it can become **P**. `k` replies are sampled per
# trace and the first one kept is P. P is meant to be *H reworded*, so a paraphrase is kept only if it
# 0. does not talk to the reader inside the tags (a first line such as "Here is the completed code:" or a last
#    line such as "This code defines ..." is `commentary`),
# 1. grades correct with the task's grader,
# 2. states its final answer the way the task's answer contract reads it (GSM8K: an answer statement such as
#    `The answer is 72` or `#### 72`, not the grader's last-number fallback, which would accept a one-line
#    "Josh has $3 left."),
# 3. keeps the reasoning: at least `min_length_ratio` of H's length in words (calculator notes `<<...>>`
#    aside),
# 4. is not H itself (the same words, only the spacing changed, is `unchanged`).
#
# Every other reply is dropped and counted under its reason.
#
# - **In:** `data/sets/<task>/H.jsonl`, `data/prepare/<task>/train.jsonl`. **Out:** `data/sets/<task>/P.jsonl`
#   and `metrics/paraphrase/<task>.json` (kept, dropped by reason, length ratios, examples of drops).
# - **Matters:** `model`, `k`, `temperature`, `max_new_tokens` (a reply cut before `</rewritten>` is dropped as
#   `unclosed`), `prompt`, `min_length_ratio`.
# - **Resumable:** shards of `shard_size` traces under `data/.cache/paraphrase/<task>/`.
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/OWNER/shape-of-thought/blob/main/notebooks/04_paraphrase.ipynb)

# %% tags=["parameters"]
task = 'mbpp'
models = {'smollm2-135m': {'ref': 'smollm2-135m-instruct', 'style': 'chat'}, 'qwen2.5-coder-0.5b': {'ref': 'qwen2.5-coder-0.5b-instruct', 'style': 'chat'}, 'qwen2.5-coder-1.5b': {'ref': 'qwen2.5-coder-1.5b-instruct', 'style': 'chat'}, 'qwen2.5-1.5b': {'ref': 'Qwen/Qwen2.5-1.5B', 'style': 'plain'}, 'gemma-2-2b': {'ref': 'google/gemma-2-2b', 'style': 'plain'}, 'llama-3.1-8b': {'ref': 'meta-llama/Llama-3.1-8B', 'style': 'plain'}, 'gemma-2-27b-it': {'ref': 'google/gemma-2-27b-it', 'style': 'chat'}}
teacher = 'qwen2.5-coder-0.5b'
model = None
seed = 42
dtype = 'bfloat16'
k = 2
temperature = 0.7
max_new_tokens = 256
batch_size = 48
shard_size = 64
prompt = None
min_length_ratio = 0.5

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
    install("04_paraphrase", CLONE)
from sot.nb import setup

setup(seed)

# %% [markdown]
# ## The paraphrasing model
# The request is an instruction, so the model must be prompted through its chat template (`style: chat`).

# %%
import pandas as pd

from sot import styles
from sot.io import write_json, write_jsonl
from sot.llm import Sampling, get_backend
from sot.paraphrase import DEFAULT_TEMPLATE, fill_template, paraphrase
from sot.pipeline import METRICS, backend_options, cache_dir, load_problems, load_set, model_and_style, set_path
from sot.resume import resumable
from sot.show import records_table, side_by_side
from sot.steps import step_validity
from sot.tasks import get_task

key = model or teacher
ref, style = model_and_style(models, key)
styles.require_chat_template(key, ref, style)
if style != "chat":
    raise ValueError(f"paraphrase: models.{key} has style {style!r}; paraphrasing is an instruction to an instruct "
                     "model (style: chat). Set paraphrase.model (params.yaml) to one")
grader = get_task(task)
h = load_set(task, "H")
problems = load_problems(task, "train")
template = prompt or DEFAULT_TEMPLATE
sampling = Sampling(n=k, temperature=temperature, top_p=1.0, max_new_tokens=max_new_tokens, seed=seed)
print(f"{key} = {ref} ({style} style); {len(h)} H traces; {sampling}")
by_id = {p.id: p for p in problems}
print(fill_template(template, by_id[h[0]["id"]].question, h[0]["completion"]) if h
      else "H is empty: nothing to paraphrase")

# %% [markdown]
# ## Paraphrase, grade and keep (resumable)

# %%
llm = resumable(get_backend("auto", ref, **backend_options("auto", batch_size, None, dtype)),
                cache_dir("paraphrase", task), shard_size)
records, metrics = paraphrase(h, problems, grader, llm, sampling, template=template,
                              min_length_ratio=min_length_ratio)
for r in records:
    r["source"].update(model_key=key, style=style)
metrics.update(model_key=key, style=style, backend=llm.info(),
               step_validity={"H": step_validity(h, task), "P": step_validity(records, task)})
write_jsonl(set_path(task, "P"), records)
write_json(METRICS / "paraphrase" / f"{task}.json", metrics)
print(f"kept {metrics['kept']} of {metrics['requested']} H traces; grading alone would keep "
      f"{metrics['graded_correct']}")

# %% [markdown]
# ## Kept and dropped, with reasons
# A dropped trace counts once, under the reason of its reply that got furthest through the checks
# (in this order: no tags, an unclosed tag, empty, commentary, no answer found, a wrong answer, no answer statement,
# too short, unchanged). An empty P means every paraphrase was dropped: the sft stage then skips P and says so.

# %%
counts = pd.Series({"kept": metrics["kept"], **metrics["dropped"]}, name="traces").to_frame()
counts["share"] = (counts["traces"] / max(1, metrics["requested"])).round(2)
counts

# %%
import matplotlib.pyplot as plt

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.4))
left.barh(counts.index[::-1], counts["traces"][::-1],
          color=["tab:green" if k == "kept" else "tab:red" for k in counts.index[::-1]])
left.set(xlabel="H traces", title=f"{task}: kept and dropped ({metrics['requested']} requested)")
hist = metrics["length_ratio_hist"]
edges = hist["edges"]
bottom = [0] * len(edges)
for outcome, values in hist["counts"].items():
    right.bar(edges, values, width=0.1, align="edge", bottom=bottom, label=outcome, edgecolor="white")
    bottom = [b + v for b, v in zip(bottom, values)]
right.axvline(min_length_ratio, color="black", linestyle="--", label=f"min_length_ratio {min_length_ratio}")
right.set(xlabel="paraphrase words / H words (last bar: 2 and more)", ylabel="replies",
          title="length of each extracted reply against its H")
right.legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## H and P of two problems, side by side

# %%
h_by_id = {r["id"]: r for r in h}
for r in records[:2]:
    src = r["source"]
    answer = "passes its tests" if task == "mbpp" else f"extracted {src['extracted']!r}"
    display(side_by_side({"H (human)": h_by_id[r["id"]]["completion"], "P (paraphrase)": r["completion"]},
                         title=r["id"], notes={"P (paraphrase)": f"{answer}, length ratio "
                                               f"{src['length_ratio']:.2f}, {src['n_tokens']} tokens"}))
if not records:
    print("P is empty: no paraphrase was kept")

# %% [markdown]
# ## What was dropped
# The first replies dropped for each reason (from the metrics; text shortened), then the two that got furthest
# through the checks, each beside its H.

# %%
examples = metrics["dropped_examples"]
fields = ["id", "reason", "extracted", "length_ratio", "text"]
display(records_table(examples, [f for f in fields if not (task == "mbpp" and f == "extracted")], limit=140))
for e in examples[::-1][:2]:
    ratio = "" if e["length_ratio"] is None else f", length ratio {e['length_ratio']:.2f}"
    answer = "" if task == "mbpp" else f", extracted {e['extracted']!r}"
    display(side_by_side({"H (human)": h_by_id[e["id"]]["completion"], "dropped reply": e["text"]}, title=e["id"],
                         notes={"dropped reply": f"{e['reason']}{answer}{ratio}"}))

# %% [markdown]
# ## Step validity, H against P

# %%
pd.DataFrame(metrics["step_validity"]).T.rename_axis("set")
