"""MBPP (Austin et al. 2021): records {text, code, task_id, test_setup_code, test_list, challenge_test_list}.

Splits by task_id (upstream README + the Hugging Face convention): prompt 1-10, test 11-510,
validation 511-600, train 601-974. Grading runs the extracted code + test_setup_code + the test_list
asserts in sot.sandbox (a subprocess with limits); correct only when the program runs to its end.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from sot.io import DataError, iter_jsonl
from sot.prompts import MBPP_INSTRUCTION
from sot.tasks.base import Grade, Problem, Task

HUB_DATASET = ("google-research-datasets/mbpp", "full")
FIELDS = ("text", "code", "task_id", "test_setup_code", "test_list")
SPLIT_IDS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)```", re.DOTALL)
_OPEN_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*)\Z", re.DOTALL | re.IGNORECASE)


def extract_code(completion: str) -> str | None:
    """The last ```python block, else the last ``` block, else an unclosed final block, else the whole text."""
    if not completion:
        return None
    blocks = _FENCE.findall(completion)
    python = [code for lang, code in blocks if lang.lower() in ("python", "py", "python3")]
    if python or blocks:
        code = (python or [code for _, code in blocks])[-1]
    else:
        tail = _OPEN_FENCE.search(completion)  # generation cut off before the closing fence
        code = tail.group(1) if tail else completion
    code = code.strip("\n")
    return code if code.strip() else None


def build_program(record: dict, code: str) -> str:
    """The candidate code, then test_setup_code, then the test_list asserts.

    The setup goes after the code: upstream's only two setups (tasks 367, 927) build trees from the
    `Node` class that the solution itself defines, so setup-first fails even the reference.
    """
    parts = [code, (record.get("test_setup_code") or "").replace("\r\n", "\n"), "\n".join(record["test_list"])]
    return "\n\n".join(p for p in parts if p.strip()) + "\n"


class MBPP(Task):
    name = "mbpp"
    splits = ("train", "test", "validation", "prompt")

    def __init__(self, timeout: float = 10.0, memory_mb: int = 2048):
        self.timeout = timeout
        self.memory_mb = memory_mb

    def from_record(self, record: dict, id: str | None = None, split: str = "train") -> Problem:
        missing = [k for k in FIELDS if k not in record]
        if missing:
            raise DataError(f"MBPP record {id or record.get('task_id', '?')}: missing field {missing[0]!r}")
        tests = "\n".join(record["test_list"])
        question = f"{record['text'].strip()}\n\n{MBPP_INSTRUCTION.format(tests=tests)}"
        return Problem(id=id or f"mbpp/{record['task_id']}", task=self.name, question=question,
                       reference=record["code"].replace("\r\n", "\n"), answer=None, record=dict(record))

    def grade(self, problem: Problem, completion: str) -> Grade:
        from sot.sandbox import run_program

        code = extract_code(completion)
        if code is None:
            return Grade(False, None)
        result = run_program(build_program(problem.record, code), timeout=self.timeout, memory_mb=self.memory_mb)
        return Grade(bool(result.passed), code)

    def grade_many(self, problems: Sequence[Problem], completions: Sequence[str],
                   workers: int | None = None) -> list[Grade]:
        """All programs through sot.sandbox.run_many (all cores unless `workers` says otherwise)."""
        from sot.sandbox import run_many

        if len(problems) != len(completions):
            raise ValueError(f"grade_many: {len(problems)} problems but {len(completions)} completions")
        codes = [extract_code(c) for c in completions]
        todo = [i for i, code in enumerate(codes) if code is not None]
        results = run_many([build_program(problems[i].record, codes[i]) for i in todo], workers=workers,
                           timeout=self.timeout, memory_mb=self.memory_mb)
        passed = dict(zip(todo, (bool(r.passed) for r in results)))
        return [Grade(passed.get(i, False), code) for i, code in enumerate(codes)]

    def _local_records(self, split: str, data_dir: Path) -> list[tuple[str, dict]]:
        path = data_dir / "mbpp" / "mbpp.jsonl"
        lo, hi = SPLIT_IDS[split]
        pairs = []
        for lineno, rec in iter_jsonl(path, required=FIELDS):
            if not isinstance(rec["task_id"], int) or not isinstance(rec["test_list"], list):
                raise DataError(f"{path}:{lineno}: field 'task_id' must be an integer and 'test_list' a list")
            if lo <= rec["task_id"] <= hi:
                pairs.append((f"mbpp/{rec['task_id']}", rec))
        return pairs

    def _hub_records(self, split: str) -> list[tuple[str, dict]]:
        from datasets import load_dataset

        ds = load_dataset(*HUB_DATASET, split=split)
        return [(f"mbpp/{r['task_id']}", dict(r)) for r in ds]
