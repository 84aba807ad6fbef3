"""MATH (Hendrycks et al. 2021): records {problem, solution, level, type}; MATH-500 adds answer, unique_id.

Splits: "train" = MATH/train (7,500), "test" = MATH-500 (PRM800K subset), "test_full" = MATH/test (5,000).
Local layout (under the data directory): math/MATH/{train,test}/<subject>/<n>.json and math/math500_test.jsonl.
"""
from __future__ import annotations

from pathlib import Path

from sot.io import DataError, MissingFileError, iter_jsonl, read_json
from sot.prompts import MATH_INSTRUCTION
from sot.tasks import answers, authors, equivalence
from sot.tasks.base import Grade, Problem, Task, content_id

SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
            "prealgebra", "precalculus")
HUB_FULL = "EleutherAI/hendrycks_math"      # one config per subject, splits train/test
HUB_MATH500 = "HuggingFaceH4/MATH-500"
FIELDS = ("problem", "solution")
MATH500_FIELDS = ("problem", "solution", "answer", "unique_id")
# Upstream defects: these two solutions end in an empty \boxed{} (no gold answer). load_split skips them.
KNOWN_NO_ANSWER = ("math/train/number_theory/7115", "math/train/number_theory/7117")


def gold_answer(record: dict, where: str = "record") -> str:
    """The record's `answer` (MATH-500), else the answer its solution's last \\boxed{} states (boxes that form
    one answer with it joined: "$\\boxed{(-2,18)}$ and $\\boxed{(8,38)}$" is "(-2,18), (8,38)")."""
    gold = record.get("answer") or answers.last_boxed_answer(record["solution"])
    if not gold:
        raise DataError(f"{where}: field 'solution' has no \\boxed{{...}} answer and there is no 'answer' field")
    return gold


def id_from_unique_id(unique_id: str) -> str:
    """PRM800K unique_id "test/precalculus/807.json" -> "math/test/precalculus/807"."""
    return "math/" + unique_id.removesuffix(".json")


class MATH(Task):
    name = "math"
    splits = ("train", "test", "test_full")

    def from_record(self, record: dict, id: str | None = None, split: str = "train") -> Problem:
        missing = [k for k in FIELDS if k not in record]
        if missing:
            raise DataError(f"MATH record {id or '?'}: missing field {missing[0]!r}")
        if id is None:
            id = id_from_unique_id(record["unique_id"]) if "unique_id" in record else content_id(
                self.name, split, record)
        return Problem(id=id, task=self.name, question=f"{record['problem'].strip()}\n\n{MATH_INSTRUCTION}",
                       reference=record["solution"], answer=gold_answer(record, id), record=dict(record))

    def statement(self, problem: Problem) -> str:
        return problem.record["problem"].strip()

    def grade(self, problem: Problem, completion: str) -> Grade:
        """Strict grading (README "Grading contract"): the last answer statement, no last-number fallback."""
        span = answers.extract_answer(completion)
        if span is None:
            return Grade(False, None)
        span = equivalence.after_equals(span, problem.answer)
        return Grade(equivalence.equivalent(problem.answer, span), span)

    def grade_authors(self, problem: Problem, completion: str) -> Grade:
        """The authors' eval_math_gsm8k.py rule (see sot.tasks.authors.math_verify_grade)."""
        return authors.math_verify_grade(problem.reference, completion)

    def _local_records(self, split: str, data_dir: Path) -> list[tuple[str, dict]]:
        if split == "test":
            path = data_dir / "math" / "math500_test.jsonl"
            pairs = []
            for lineno, rec in iter_jsonl(path, required=MATH500_FIELDS):
                gold_answer(rec, f"{path}:{lineno}")
                pairs.append((id_from_unique_id(rec["unique_id"]), rec))
            return pairs
        folder = data_dir / "math" / "MATH" / ("train" if split == "train" else "test")
        if not folder.is_dir():
            raise MissingFileError(f"{folder}: MATH folder not found", folder)
        files = sorted(folder.glob("*/*.json"), key=lambda p: (p.parent.name, int(p.stem) if p.stem.isdigit()
                                                                else p.stem))
        pairs = []
        for path in files:
            rec = read_json(path)
            if not isinstance(rec, dict):
                raise DataError(f"{path}: expected a JSON object, got {type(rec).__name__}")
            missing = [k for k in FIELDS if k not in rec]
            if missing:
                raise DataError(f"{path}: missing field {missing[0]!r} (required: {', '.join(FIELDS)})")
            pid = f"math/{folder.name}/{path.parent.name}/{path.stem}"
            if pid in KNOWN_NO_ANSWER:
                continue
            gold_answer(rec, str(path))
            pairs.append((pid, rec))
        return pairs

    def _hub_records(self, split: str) -> list[tuple[str, dict]]:
        from datasets import load_dataset

        if split == "test":
            ds = load_dataset(HUB_MATH500, split="test")
            return [(id_from_unique_id(r["unique_id"]), dict(r)) for r in ds]
        hub_split = "train" if split == "train" else "test"
        pairs = []
        for subject in SUBJECTS:  # ids use the hub row index, not the original file number
            ds = load_dataset(HUB_FULL, subject, split=hub_split)
            pairs += [(f"math/{hub_split}/{subject}/hub{i}", dict(r)) for i, r in enumerate(ds)
                      if answers.last_boxed(r["solution"])]  # drops the KNOWN_NO_ANSWER defects
        return pairs
