"""GSM8K (Cobbe et al. 2021): records {question, answer}; the answer ends with "#### N"."""
from __future__ import annotations

from pathlib import Path

from sot.io import DataError, iter_jsonl
from sot.prompts import GSM8K_INSTRUCTION
from sot.tasks import answers, authors, equivalence
from sot.tasks.base import Grade, Problem, Task, content_id

HUB_DATASET = ("openai/gsm8k", "main")
FIELDS = ("question", "answer")


def gold_answer(solution: str, where: str = "record") -> str:
    """The number after the last "####" of a GSM8K solution."""
    if "####" not in solution:
        raise DataError(f"{where}: field 'answer' has no '#### <number>' line; not a GSM8K record?")
    return solution.rsplit("####", 1)[1].strip()


class GSM8K(Task):
    name = "gsm8k"
    splits = ("train", "test")

    def from_record(self, record: dict, id: str | None = None, split: str = "train") -> Problem:
        missing = [k for k in FIELDS if k not in record]
        if missing:
            raise DataError(f"GSM8K record {id or '?'}: missing field {missing[0]!r}")
        return Problem(id=id or content_id(self.name, split, record), task=self.name,
                       question=f"{record['question'].strip()}\n\n{GSM8K_INSTRUCTION}",
                       reference=record["answer"], answer=gold_answer(record["answer"], id or "record"),
                       record=dict(record))

    def human_trace(self, problem: Problem) -> str:
        """The reference with its closing "#### N" line in the sentence GSM8K_INSTRUCTION asks for,
        "The answer is N." (the calculator annotations <<...>> are the dataset's own and stay)."""
        head, _, _ = problem.reference.rpartition("####")
        return f"{head.rstrip()}\nThe answer is {problem.answer}."

    def statement(self, problem: Problem) -> str:
        return problem.record["question"].strip()

    def grade(self, problem: Problem, completion: str) -> Grade:
        """Strict grading (README "Grading contract"): the last answer statement, else the last number."""
        span = answers.extract_answer(completion, last_number_fallback=True)
        if span is None:
            return Grade(False, None)
        span = equivalence.after_equals(span, problem.answer)
        pred, hedge = equivalence.gsm8k_prediction(span)
        return Grade(not hedge and equivalence.equivalent(problem.answer, pred), span)

    def grade_authors(self, problem: Problem, completion: str) -> Grade:
        """The authors' eval_math_gsm8k.py rule (see sot.tasks.authors.math_verify_grade)."""
        return authors.math_verify_grade(problem.reference, completion)

    def _local_records(self, split: str, data_dir: Path) -> list[tuple[str, dict]]:
        path = data_dir / "gsm8k" / f"{split}.jsonl"
        pairs = []
        for i, (lineno, rec) in enumerate(iter_jsonl(path, required=FIELDS)):
            gold_answer(rec["answer"], f"{path}:{lineno}")
            pairs.append((f"gsm8k/{split}/{i}", rec))
        return pairs

    def _hub_records(self, split: str) -> list[tuple[str, dict]]:
        from datasets import load_dataset

        ds = load_dataset(*HUB_DATASET, split=split)
        return [(f"gsm8k/{split}/{i}", {k: r[k] for k in FIELDS}) for i, r in enumerate(ds)]
