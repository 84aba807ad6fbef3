"""Cheap checks of params.yaml before a stage starts: a typo'd task or set, a k below 1, an unknown backend.

Each problem is one line naming the key as the user wrote it in params.yaml, what it must be and what it is:
`generate.k in params.yaml: must be an integer >= 1, got -1`. `python -m sot.nb run` checks the keys the stage
reads (its section, the top-level names its parameters cell has) and stops with that line before any model
loads; the stages' own checks stay for what only the data can tell.
"""
from __future__ import annotations

import re

TASKS = ("gsm8k", "math", "countdown", "mbpp")
SET_NAME = re.compile(r"^(H|G|W|P|F(\d+))$")
DTYPES = ("auto", "float32", "bfloat16", "float16")
# section.key -> rule: ("int", minimum, nullable) | ("float", low, high, nullable) | ("choice", options) |
# ("int_or", minimum, words): an integer or one of the words
RULES = {
    "seed": ("int", 0, False),
    "prepare.n_train": ("int", 1, True), "prepare.n_test": ("int", 1, True),
    "generate.backend": ("choice", ("auto", "transformers", "vllm", "openai")),
    "generate.dtype": ("choice", DTYPES),
    "generate.k": ("int", 1, False), "generate.max_new_tokens": ("int", 1, False),
    "generate.batch_size": ("int", 1, False), "generate.shard_size": ("int", 1, False),
    "generate.temperature": ("float", 0, None, False), "generate.top_p": ("float", 1e-9, 1, False),
    "classify.w_policy": ("choice", ("parsed", "any")), "classify.truncated": ("choice", ("drop", "keep")),
    "paraphrase.dtype": ("choice", DTYPES), "paraphrase.k": ("int", 1, False),
    "paraphrase.temperature": ("float", 0, None, False), "paraphrase.max_new_tokens": ("int", 1, False),
    "paraphrase.batch_size": ("int", 1, False), "paraphrase.shard_size": ("int", 1, False),
    "paraphrase.min_length_ratio": ("float", 0, None, False),
    "corrupt.operator": ("choice", ("perturb_steps", "lm_rewrite")), "corrupt.dtype": ("choice", DTYPES),
    "corrupt.base": ("choice", ("H", "G", "W", "P")),
    "corrupt.temperature": ("float", 0, None, False), "corrupt.max_new_tokens": ("int", 1, False),
    "corrupt.shard_size": ("int", 1, False),
    "distance.batch_size": ("int", 1, False), "distance.max_length": ("int", 1, False),
    "distance.max_new_tokens": ("int_or", 1, ("auto", "authors")), "distance.dtype": ("choice", DTYPES),
    "distance.shard_size": ("int", 1, False),
    "sft.backend": ("choice", ("auto", "trl", "unsloth")), "sft.method": ("choice", ("lora", "full")),
    "sft.lora_r": ("int", 1, False), "sft.lr": ("float", 1e-12, None, False), "sft.epochs": ("float", 1e-9, None, False),
    "sft.budget": ("choice", ("steps", "tokens", "epochs")), "sft.batch_size": ("int", 1, False),
    "sft.grad_accum": ("int", 1, False), "sft.max_length": ("int", 1, False),
    "sft.warmup_ratio": ("float", 0, 0.999999, False), "sft.checkpoint": ("choice", ("final", "best_val")),
    "sft.num_processes": ("int", 1, False),
    "evaluate.backend": ("choice", ("auto", "transformers", "vllm")), "evaluate.dtype": ("choice", DTYPES),
    "evaluate.max_new_tokens": ("int_or", 1, ("auto", "authors")), "evaluate.batch_size": ("int", 1, False),
    "evaluate.shard_size": ("int", 1, False), "evaluate.n_boot": ("int", 0, False),
    "evaluate.min_adapter_kept": ("float", 0, 1, True), "sft.max_epochs": ("float", 1e-9, None, True),
    "figures.dpi": ("int", 1, False), "figures.n_perm": ("int", 1, False),
}


class ParamsError(ValueError):
    """A value of params.yaml the stage cannot run with; the message is the line to show the user."""


def _rule_problem(key: str, value, rule) -> str | None:
    where = f"{key} in params.yaml"
    kind = rule[0]
    if kind == "int_or":
        if value in rule[2]:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < rule[1]:
            return f"{where}: must be an integer >= {rule[1]} or one of {', '.join(rule[2])}, got {value!r}"
        return None
    if kind == "choice":
        if value not in rule[1]:
            return f"{where}: must be one of {', '.join(map(str, rule[1]))}, got {value!r}"
        return None
    nullable = rule[-1]
    if value is None:
        return None if nullable else f"{where}: must be a number, got null"
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{where}: must be an integer{' (or null)' if nullable else ''}, got {value!r}"
        if value < rule[1]:
            return f"{where}: must be >= {rule[1]}{' (or null)' if nullable else ''}, got {value}"
        return None
    low, high = rule[1], rule[2]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{where}: must be a number, got {value!r}"
    if value < low or (high is not None and value > high):
        bound = f"between {low:g} and {high:g}" if high is not None else f">= {low:g}"
        return f"{where}: must be {bound}, got {value}"
    return None


def _lookup(params: dict, key: str):
    node = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def problems(params: dict, keys: set[str] | None = None) -> list[str]:
    """Every problem among `keys` (top-level names and section names; None: all of params.yaml), one line each."""
    def wanted(key: str) -> bool:
        return keys is None or key.split(".")[0] in keys

    out = []
    models = params.get("models") or {}
    if wanted("tasks"):
        tasks = params.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            out.append(f"tasks in params.yaml: must be a non-empty list of {', '.join(TASKS)}, got {tasks!r}")
        else:
            out += [f"tasks in params.yaml: unknown task {t!r}; use {', '.join(TASKS)}" for t in tasks if t not in TASKS]
    if wanted("students"):
        students = params.get("students")
        if not isinstance(students, list) or not students:
            out.append(f"students in params.yaml: must be a non-empty list of keys of models, got {students!r}")
        else:
            out += [f"students in params.yaml: {s!r} is not a key of models (keys: {', '.join(models)})"
                    for s in students if s not in models]
    if wanted("teacher") and "teacher" in params and params["teacher"] not in models:
        out.append(f"teacher in params.yaml: {params['teacher']!r} is not a key of models (keys: {', '.join(models)})")
    if wanted("paraphrase") and (m := (params.get("paraphrase") or {}).get("model")) is not None and m not in models:
        out.append(f"paraphrase.model in params.yaml: {m!r} is not a key of models or null (keys: {', '.join(models)})")
    if wanted("sets"):
        sets = params.get("sets")
        if not isinstance(sets, list) or not sets:
            out.append(f"sets in params.yaml: must be a non-empty list of H, G, W, P, F<pct>, got {sets!r}")
        else:
            out += [f"sets in params.yaml: unknown set {s!r}; use H, G, W, P or F<pct> (pct 0-100)"
                    for s in sets if not (isinstance(s, str) and (m := SET_NAME.match(s))
                                          and (m[2] is None or int(m[2]) <= 100))]
    if wanted("corrupt"):
        fractions = (params.get("corrupt") or {}).get("fractions")
        if fractions is not None and not (isinstance(fractions, list) and all(
                isinstance(f, int) and not isinstance(f, bool) and 0 <= f <= 100 for f in fractions)):
            out.append(f"corrupt.fractions in params.yaml: must be a list of integers 0-100, got {fractions!r}")
    if wanted("sft") and (found := _lookup(params, "sft.sweep"))[0]:
        from sot.sft.sweep import spec_problem     # the rule SFTConfig applies (null, [steps] or {every: N})
        if problem := spec_problem(found[1]):
            out.append(f"sft.sweep in params.yaml: {problem}")
    for key, rule in RULES.items():
        if wanted(key):
            found, value = _lookup(params, key)
            if found and (problem := _rule_problem(key, value, rule)):
                out.append(problem)
    return out


def check(params: dict, keys: set[str] | None = None) -> None:
    """Raise ParamsError with the first problem (and how many more there are) among `keys`."""
    found = problems(params, keys)
    if found:
        more = f" (and {len(found) - 1} more: {'; '.join(found[1:])})" if len(found) > 1 else ""
        raise ParamsError(found[0] + more)
