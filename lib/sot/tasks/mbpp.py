"""MBPP (Austin et al. 2021): records {text, code, task_id, test_setup_code, test_list, challenge_test_list}.

Splits by task_id (upstream README + the Hugging Face convention): prompt 1-10, test 11-510,
validation 511-600, train 601-974. Grading runs the extracted code + test_setup_code in sot.sandbox (a
subprocess with limits), then the test_list asserts' calls; the values they return come back as plain data and
are compared here with the expected values, which never enter the sandbox (sot.sandbox_checks). Correct only
when the program runs to its end and every check holds.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from sot.io import DataError, iter_jsonl
from sot.prompts import MBPP_INSTRUCTION
from sot.sandbox_checks import judge, parse_tests
from sot.tasks import authors
from sot.tasks.base import Grade, Problem, Task
from sot.tasks.mbpp_extract import FENCE, extract, functions_under_test  # noqa: F401 (re-exported)

HUB_DATASET = ("google-research-datasets/mbpp", "full")
FIELDS = ("text", "code", "task_id", "test_setup_code", "test_list")
SPLIT_IDS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}

_FENCE = FENCE  # the fenced blocks exactly as the grader reads them (bench/grader_gap.py uses it)


def extract_code(completion: str, names=()) -> str | None:
    """The code to test (see ``sot.tasks.mbpp_extract.extract``); None when there is none."""
    return extract(completion, names)[0]


def build_setup(record: dict, code: str) -> str:
    """The candidate code, then test_setup_code: what runs before the test calls (``MBPP.verdicts``)."""
    parts = [code, (record.get("test_setup_code") or "").replace("\r\n", "\n")]
    return "\n\n".join(p for p in parts if p.strip()) + "\n"


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

    def human_trace(self, problem: Problem) -> str:
        """The reference code in the one ```python block MBPP_INSTRUCTION asks for."""
        return f"```python\n{problem.reference.strip()}\n```"

    def grade(self, problem: Problem, completion: str) -> Grade:
        return self.grade_many([problem], [completion], workers=1)[0]

    def grade_many(self, problems: Sequence[Problem], completions: Sequence[str],
                   workers: int | None = None) -> list[Grade]:
        """All programs through sot.sandbox.run_many (all cores unless `workers` says otherwise)."""
        return [Grade(v["correct"], v["extracted"]) for v in self.verdicts(problems, completions, workers)]

    def verdicts(self, problems: Sequence[Problem], completions: Sequence[str],
                 workers: int | None = None) -> list[dict]:
        """Each completion's verdict with its details: {"correct", "extracted", "reason", "path",
        "memory_limit", "status", "failed", "weak_asserts"}. The program runs the code and test_setup_code, then
        the test CALLS only; their values come back as plain data and are compared here with the expected
        values, which never enter the sandbox (``sot.sandbox_checks``)."""
        from sot.sandbox import run_many

        if len(problems) != len(completions):
            raise ValueError(f"grade_many: {len(problems)} problems but {len(completions)} completions")
        out, todo = [], []
        for i, (p, c) in enumerate(zip(problems, completions)):
            code, why = extract(c, functions_under_test(p.record["test_list"]))
            out.append({"correct": False, "extracted": code, "reason": why})
            if code is not None:
                todo.append(i)
        checks = {i: parse_tests(problems[i].record["test_list"]) for i in todo}
        results = run_many([build_setup(problems[i].record, out[i]["extracted"]) for i in todo], workers=workers,
                           steps=[[c.step() for c in checks[i]] for i in todo], timeout=self.timeout,
                           memory_mb=self.memory_mb)
        for i, result in zip(todo, results):
            correct, details = judge(checks[i], result)
            out[i].update(details, correct=correct, reason=details["failed"] or "")
        return out

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
