"""Small helpers the stage modules share: problems on disk, prompts for a style, backend options."""
from __future__ import annotations

from sot.io import read_jsonl
from sot.stages import DATA
from sot.tasks import Problem, get_task

RECORD_FIELDS = ("id", "task", "category", "prompt", "completion")


def load_problems(task: str, split: str) -> list[Problem]:
    path = DATA / "prepare" / task / f"{split}.jsonl"
    return [Problem.from_dict(d) for d in read_jsonl(path, required=("id", "task", "question", "reference", "record"))]


def load_set(path) -> list[dict]:
    """A training set, every record checked for the fields the later stages read."""
    return read_jsonl(path, required=RECORD_FIELDS)


def model_ref(models: dict, name: str) -> str:
    if name not in models:
        raise KeyError(f"params.yaml: model {name!r} is not a key of `models` ({', '.join(models)}); add it there")
    return models[name]


def prompts_for(task_name: str, problems: list[Problem], style: str, tokenizer=None) -> list:
    """Chat style: messages (each backend applies its own chat template); plain: `...\\nSolution:` strings."""
    task = get_task(task_name)
    if style == "chat":
        return [task.messages(p) for p in problems]
    if style == "plain":
        return [task.prompt(p, "plain") for p in problems]
    raise ValueError(f"params.yaml: style must be 'chat' or 'plain', got {style!r}")


def stop_for(task_name: str, style: str) -> tuple[str, ...]:
    return tuple(get_task(task_name).stop) if style == "plain" else ()


def backend_options(backend: str, batch_size: int | None = None, base_url: str | None = None) -> dict:
    opts = {}
    if batch_size and backend in ("transformers", "auto"):
        opts["batch_size"] = batch_size
    if base_url and backend == "openai":
        opts["base_url"] = base_url
    return opts
