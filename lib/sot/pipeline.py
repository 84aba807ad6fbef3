"""The pipeline's file layout and the small loaders every stage notebook shares.

Paths are relative to the project root (`sot.nb.setup` moves there); DVC tracks data/ and runs/, git tracks
metrics/ and figures/:

    data/prepare/<task>/{train,test,H}.jsonl     problems (sot.tasks.Problem records) and the human traces H
    data/generate/<task>.jsonl                    teacher samples, one record per (id, sample)
    data/sets/<task>/<SET>.jsonl                  training sets H, G, W (classify), P (paraphrase), F<pct> (mix)
    data/corrupt/<task>.jsonl                     one completely flawed trace per base-set trace
    data/distance/<task>-<student>.jsonl          the base student's own greedy samples (the distance reference)
    data/sft/<task>-<student>/<set>/              LoRA adapter or full model (or SKIPPED.json: empty set);
                                                  with sft.sweep also steps/<step>/, one model per swept step
    data/evaluate/<task>-<student>/<set>.jsonl    per-problem outputs and both graders' verdicts (set `base` too;
                                                  `<set>@<step>` for a swept checkpoint: sot.checkpoint_sweep)
    data/.cache/<stage>/<item>/                   resumable shards and checkpoints (not DVC outputs: kept on a kill)
    metrics/<stage>/...json                       small metrics, in git (cache: false)
    metrics/{sft,evaluate}/<task>-<student>/<set>.json, metrics/sft/loss/<task>-<student>/<set>.csv

sft and evaluate are one DVC stage per (task, student), its group, looping over the sets in one process (the
model and libraries load once, and the paper's grid is 12 + 12 stages rather than 108 + 120): each group writes
one folder per stage output. A set's run is still the unit of work and of naming (`run_name`): it keeps its
resumable checkpoints and shards under data/.cache/<stage>/<run>/, and a group that reruns because one set
changed reuses the finished runs of the others (sot.sft.resume, sot.resume).
    figures/                                      the paper's figures and the results table

A training-set record is {id, task, category, prompt (the question), completion, source}; `source` says where
it came from (model, sampling, sample index, extracted answer, whether the length limit cut it ...).
"""
from __future__ import annotations

from pathlib import Path

from sot.io import read_jsonl
from sot.prompts import STYLES, stop_strings
from sot.styles import model_ref, style_of
from sot.tasks import Problem, get_task

DATA = Path("data")
METRICS = Path("metrics")
FIGURES = Path("figures")
CACHE = DATA / ".cache"
RECORD_FIELDS = ("id", "task", "category", "prompt", "completion")
PROBLEM_FIELDS = ("id", "task", "question", "reference", "record")
SKIPPED = "SKIPPED.json"      # written in data/sft/<run>/ instead of a model when the training set is empty


def set_path(task: str, name: str) -> Path:
    return DATA / "sets" / task / f"{name}.jsonl"


def run_name(task: str, student: str, set_name: str) -> str:
    """One (task, student, set) run: its name in reports and its data/.cache folders."""
    return f"{task}-{student}-{set_name}"


def group_name(task: str, student: str) -> str:
    """One (task, student) group: the sft and evaluate stages' matrix item, the folder of its runs."""
    return f"{task}-{student}"


def sft_dir(task: str, student: str, set_name: str) -> Path:
    """The fine-tuned model (or SKIPPED.json) of one run."""
    return DATA / "sft" / group_name(task, student) / set_name


def sft_metrics_path(task: str, student: str, set_name: str) -> Path:
    return METRICS / "sft" / group_name(task, student) / f"{set_name}.json"


def loss_path(task: str, student: str, set_name: str) -> Path:
    return METRICS / "sft" / "loss" / group_name(task, student) / f"{set_name}.csv"


def eval_rows_path(task: str, student: str, set_name: str) -> Path:
    """Per-problem outputs and verdicts of one evaluated run (set_name `base`: the student before fine-tuning)."""
    return DATA / "evaluate" / group_name(task, student) / f"{set_name}.jsonl"


def eval_metrics_path(task: str, student: str, set_name: str) -> Path:
    return METRICS / "evaluate" / group_name(task, student) / f"{set_name}.json"


def cache_dir(stage: str, item: str) -> Path:
    """Where a stage keeps what survives a kill (resumable shards, SFT checkpoints) for one matrix item."""
    return CACHE / stage / item


def load_problems(task: str, split: str) -> list[Problem]:
    """The problems the prepare stage wrote for `split` ("train" or "test")."""
    path = DATA / "prepare" / task / f"{split}.jsonl"
    return [Problem.from_dict(d) for d in read_jsonl(path, required=PROBLEM_FIELDS)]


def load_set(task: str, name: str) -> list[dict]:
    """A training set, every record checked for the fields the later stages read."""
    return read_jsonl(set_path(task, name), required=RECORD_FIELDS)


def model_and_style(models: dict, key: str) -> tuple[str, str]:
    """(reference for sot.models / get_backend, prompt style) of a key of params.yaml `models`."""
    return model_ref(models, key), style_of(models, key)


def prompts_for(task_name: str, problems: list[Problem], style: str) -> list:
    """Chat style: message lists (each backend applies the model's chat template); plain: the plain-format
    strings of sot.prompts (`Problem: ... Solution:`)."""
    task = get_task(task_name)
    if style == "chat":
        return [task.messages(p) for p in problems]
    if style in STYLES:   # plain, and the authors' prompts (sot.authors_style)
        return [task.prompt(p, style) for p in problems]
    raise ValueError(f"prompt style must be one of {', '.join(STYLES)}, got {style!r} (params.yaml models.<key>.style)")


def stop_for(task_name: str, style: str) -> tuple[str, ...]:
    """Stop strings of a style: the plain format's next-problem markers; none in chat (the end-of-turn ends it);
    the authors' list of the task for the authors styles (sot.prompts.stop_strings)."""
    return tuple(get_task(task_name).stop) if style == "plain" else stop_strings(style, task_name)


def backend_options(backend: str, batch_size: int | None = None, base_url: str | None = None,
                    dtype: str | None = None) -> dict:
    """The keyword arguments of sot.llm.get_backend that `backend` takes among these settings."""
    opts = {}
    if batch_size and backend in ("transformers", "auto"):
        opts["batch_size"] = batch_size
    if dtype and backend in ("transformers", "vllm", "auto"):
        opts["dtype"] = dtype
    if base_url and backend == "openai":
        opts["base_url"] = base_url
    return opts
