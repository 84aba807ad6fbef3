"""MBPP (Austin et al. 2021): records {text, code, task_id, test_setup_code, test_list, challenge_test_list}.

Splits by task_id (upstream README + the Hugging Face convention): prompt 1-10, test 11-510,
validation 511-600, train 601-974. Grading runs the extracted code + test_setup_code + the test_list
asserts in sot.sandbox (a subprocess with limits); correct only when the program runs to its end.
"""
from __future__ import annotations

import ast
import builtins
import re
import textwrap
from pathlib import Path
from typing import Sequence

from sot.io import DataError, iter_jsonl
from sot.prompts import MBPP_INSTRUCTION
from sot.tasks import authors
from sot.tasks.base import Grade, Problem, Task

HUB_DATASET = ("google-research-datasets/mbpp", "full")
FIELDS = ("text", "code", "task_id", "test_setup_code", "test_list")
SPLIT_IDS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = ("python", "py", "python3", "")
_CALLED = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\s*\(")
_NOT_TESTED = frozenset(dir(builtins)) | {"assert", "not", "and", "or", "in", "is", "lambda", "if", "else"}
_DEFINED = re.compile(r"^(?:async[ \t]+)?(?:def|class)[ \t]+([A-Za-z_]\w*)|^([A-Za-z_]\w*)[ \t]*=(?!=)", re.MULTILINE)
_IMPORT = re.compile(r"^(?:import|from)[ \t]+\S.*$", re.MULTILINE)
_CODE_START = re.compile(r"^(?:def|class|import|from|async[ \t]+def|@)\b", re.MULTILINE)


def functions_under_test(test_list) -> set[str]:
    """Names the asserts call that are not builtins: the functions (or classes) the completion must define."""
    return {name for test in test_list for name in _CALLED.findall(test) if name not in _NOT_TESTED}


def _defined(code: str) -> set[str]:
    """Top-level names a block defines (def, class, assignment)."""
    return {a or b for a, b in _DEFINED.findall(code)}


def _unfenced(completion: str) -> str:
    """Code without fences: the whole text if it parses; else from the first def/class/import line, with
    trailing prose lines dropped until it parses (at most 40), so "Here is the code:\ndef f..." counts."""
    if _parses(completion):
        return completion
    start = _CODE_START.search(completion)
    if not start:
        return completion
    lines = completion[start.start():].split("\n")
    for cut in range(len(lines), max(0, len(lines) - 40), -1):
        if _parses("\n".join(lines[:cut])):
            return "\n".join(lines[:cut])
    return "\n".join(lines)


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
        return True
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False


def extract_code(completion: str, names=()) -> str | None:
    """The code to test (README "Grading contract"). Fenced blocks (a final one cut off before its closing
    fence counts), dedented; Python-tagged or untagged ones (all, if none is). The last block that defines one
    of `names` (the functions the tests call), after the import lines and the blocks defining helpers it calls
    from the other blocks; else every block joined in order; else the unfenced completion (`_unfenced`)."""
    if not completion:
        return None
    blocks = [(lang.lower(), textwrap.dedent(code)) for lang, code in _FENCE.findall(completion)]
    python = [code for lang, code in blocks if lang in _PYTHON_TAGS] or [code for _, code in blocks]
    defining = [i for i, code in enumerate(python) if set(names) & _defined(code)]
    if defining:
        code = python[defining[-1]]
        others = [c for i, c in enumerate(python) if i != defining[-1]]
        missing = set(_CALLED.findall(code)) - _defined(code) - _NOT_TESTED
        helpers = [c for c in others if missing & _defined(c)]
        have = set(_IMPORT.findall(code + "\n" + "\n".join(helpers)))
        imports = list(dict.fromkeys(line for c in others for line in _IMPORT.findall(c) if line not in have))
        code = "\n\n".join(part.strip("\n") for part in ["\n".join(imports), *helpers, code] if part.strip())
    elif python:
        code = "\n\n".join(c.strip("\n") for c in python)
    else:
        code = _unfenced(completion)
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

        code = extract_code(completion, functions_under_test(problem.record["test_list"]))
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
        codes = [extract_code(c, functions_under_test(p.record["test_list"])) for p, c in zip(problems, completions)]
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

    def grade_authors(self, problem: Problem, completion: str) -> Grade:
        """The authors' gen_plus_eval_codegen_mbpp.py rule (see sot.tasks.authors); every item counts."""
        return self.grade_authors_many([problem], [completion], workers=1)[0]

    def grade_authors_many(self, problems: Sequence[Problem], completions: Sequence[str],
                           workers: int | None = None) -> list[Grade]:
        """The authors' rule for many items, their programs through sot.sandbox.run_many (5 s timeout)."""
        from sot.sandbox import run_many

        if len(problems) != len(completions):
            raise ValueError(f"grade_authors_many: {len(problems)} problems but {len(completions)} completions")
        codes = [authors.mbpp_code(c) for c in completions]
        todo = [i for i, code in enumerate(codes) if authors.mbpp_compiles(code)]
        results = run_many([authors.mbpp_program(codes[i], problems[i].record) for i in todo], workers=workers,
                           timeout=authors.MBPP_TIMEOUT_S, memory_mb=self.memory_mb)
        passed = dict(zip(todo, (bool(r.passed) for r in results)))
        return [Grade(passed.get(i, False), code) for i, code in enumerate(codes)]
