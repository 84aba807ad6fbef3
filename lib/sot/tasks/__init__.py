"""The four tasks behind one contract: get_task(name) -> Task (load_split, from_record, grade, prompt).

    task = get_task("gsm8k")                  # "gsm8k" | "math" | "countdown" | "mbpp"
    problem = task.from_record(record)        # an upstream-format record
    task.grade(problem, problem.reference)    # Grade(correct=True, extracted=...): strict, our rules
    task.grade_authors(problem, completion)   # the paper authors' scoring rule; extracted None = not counted
    task.grade_many(...), task.grade_authors_many(...)   # the same over lists (MBPP: in the sandbox)

The strict rules are in sot.tasks.answers (what the final answer is) and sot.tasks.equivalence (how it is
compared); the authors' rules in sot.tasks.authors.
"""
from __future__ import annotations

from sot.tasks.base import Grade, Problem, Task

TASK_NAMES = ("gsm8k", "math", "countdown", "mbpp")


def get_task(name: str, **options) -> Task:
    """The task called `name`; options go to its constructor (mbpp: timeout, memory_mb)."""
    if name == "gsm8k":
        from sot.tasks.gsm8k import GSM8K as cls
    elif name == "math":
        from sot.tasks.math import MATH as cls
    elif name == "countdown":
        from sot.tasks.countdown import Countdown as cls
    elif name == "mbpp":
        from sot.tasks.mbpp import MBPP as cls
    else:
        raise ValueError(f"unknown task {name!r}; valid: {', '.join(TASK_NAMES)}")
    return cls(**options)


__all__ = ["Grade", "Problem", "Task", "TASK_NAMES", "get_task"]
