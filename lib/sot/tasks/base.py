"""Problem, Grade and the Task base class shared by the four tasks."""
from __future__ import annotations

import hashlib
import json
import os
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from sot import prompts

DATA_DIR_ENV = "SOT_DATA_DIR"
# Stop strings for plain-style generation: defined with the plain format in sot.prompts, so a base model
# that goes on with a new problem in the prompt's own format is cut there.
DEFAULT_STOP = list(prompts.PLAIN_STOP)


@dataclass(frozen=True)
class Grade:
    correct: bool
    extracted: str | None  # None: no answer found (unparseable)


@dataclass
class Problem:
    id: str            # stable and unique, e.g. "gsm8k/test/12"
    task: str
    question: str      # problem text + the task's answer-format instruction
    reference: str     # the human trace H (grades correct)
    answer: str | None  # gold final answer where defined (None for mbpp)
    record: dict = field(default_factory=dict)  # the upstream record

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Problem":
        missing = [k for k in ("id", "task", "question", "reference", "answer", "record") if k not in d]
        if missing:
            raise ValueError(f"Problem record {d.get('id', '?')!r}: missing field {missing[0]!r}")
        return cls(**{k: d[k] for k in ("id", "task", "question", "reference", "answer", "record")})


def content_id(task: str, split: str, record: dict) -> str:
    """A stable id from the record's content, for records loaded without an index."""
    digest = hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]
    return f"{task}/{split}/{digest}"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """The offline data directory: the argument, else $SOT_DATA_DIR, else None (use the hub)."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else None


# Each task's files under the data folder (upstream formats, as ../shared/data holds them) and its hub dataset.
LOCAL_LAYOUT = {
    "gsm8k": ("gsm8k/{train,test}.jsonl (GSM8K's JSON lines: question, answer)", "openai/gsm8k (main)"),
    "math": ("math/MATH/{train,test}/<subject>/<n>.json (Hendrycks MATH) and math/math500_test.jsonl (MATH-500)",
             "EleutherAI/hendrycks_math and HuggingFaceH4/MATH-500"),
    "mbpp": ("mbpp/mbpp.jsonl (all 974 MBPP problems, JSON lines: text, code, task_id, test_list, ...)",
             "google-research-datasets/mbpp (full)"),
}


def missing_data_message(task: str, split: str, root: Path, missing: Path) -> str:
    """One line: what is missing, which setting chose the folder, the expected layout and both fixes."""
    env = os.environ.get(DATA_DIR_ENV, "")
    chosen = (f"${DATA_DIR_ENV}={env}" if env and Path(env) == Path(root)
              else f"data_dir: {root} (params.yaml, or the folder passed to load_split)")
    layout, hub = LOCAL_LAYOUT.get(task, (f"{task}/...", "the hub dataset"))
    where = "the data folder itself is missing" if not Path(root).is_dir() else f"{missing} is missing"
    return (f"{task} {split}: {where}; the folder comes from {chosen} and must hold <folder>/{layout}. Fix: point "
            f"data_dir in params.yaml (or ${DATA_DIR_ENV}, which wins when set) at a folder with that layout, or "
            f"set data_dir: null with ${DATA_DIR_ENV} unset to read {hub} from the Hugging Face hub (docs/data.md)")


def seeded_subset(items: list, limit: int | None, seed: int) -> list:
    """`limit` items drawn at random with `seed`, kept in their original order; all items if limit is None."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]


def _grade_chunk(args) -> list[Grade]:
    name, problems, completions = args
    from sot.tasks import get_task

    task = get_task(name)
    return [task.grade(p, c) for p, c in zip(problems, completions)]


class Task:
    """One task: loading splits, the question wording, grading. Subclasses fill in the hooks."""

    name: str = ""
    splits: tuple[str, ...] = ("train", "test")
    stop: list[str] = DEFAULT_STOP     # plain style only (chat style ends at the template's end-of-turn token)

    # --- hooks -------------------------------------------------------------------------------
    def from_record(self, record: dict, id: str | None = None, split: str = "train") -> Problem:
        raise NotImplementedError

    def grade(self, problem: Problem, completion: str) -> Grade:
        raise NotImplementedError

    def human_trace(self, problem: Problem) -> str:
        """The H trace as it is trained and scored: the reference, in the form the task's own instruction asks
        for (the question tells the model how to give its answer; a trace that ignores that would teach the
        student to ignore it). Grades correct like the reference itself."""
        return problem.reference

    def grade_authors(self, problem: Problem, completion: str) -> Grade:
        """The paper authors' published scoring rule (sot.tasks.authors): `correct` is their verdict,
        `extracted` is None exactly when their script leaves the item out of the accuracy's denominator."""
        raise NotImplementedError(f"task {self.name!r} has no grade_authors")

    def _local_records(self, split: str, data_dir: Path) -> list[tuple[str, dict]]:
        """(id, upstream record) pairs from the offline directory, validated."""
        raise NotImplementedError

    def _hub_records(self, split: str) -> list[tuple[str, dict]]:
        """(id, upstream record) pairs from the Hugging Face hub (needs network)."""
        raise NotImplementedError

    # --- shared ------------------------------------------------------------------------------
    def check_split(self, split: str) -> None:
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r} for task {self.name!r}; valid: {', '.join(self.splits)}")

    def load_split(self, split: str, data_dir: str | os.PathLike | None = None,
                   limit: int | None = None, seed: int = 0) -> list[Problem]:
        """Problems of `split`; `limit` keeps a seeded random subset in dataset order."""
        self.check_split(split)
        root = resolve_data_dir(data_dir)
        pairs = self._local_or_explained(split, root) if root is not None else self._hub_or_explained(split)
        pairs = seeded_subset(pairs, limit, seed)
        return [self.from_record(rec, id=pid, split=split) for pid, rec in pairs]

    def _local_or_explained(self, split: str, root: Path) -> list[tuple[str, dict]]:
        """_local_records, with a missing file explained: which setting chose the folder, what it must hold, the
        two fixes (docs/data.md)."""
        from sot.io import MissingFileError

        try:
            return self._local_records(split, root)
        except MissingFileError as e:
            raise MissingFileError(missing_data_message(self.name, split, root, e.path), e.path) from None

    def _hub_or_explained(self, split: str) -> list[tuple[str, dict]]:
        """_hub_records; a failed download says why the hub was asked and what to do instead."""
        if self.name not in LOCAL_LAYOUT:      # generated (Countdown): no download
            return self._hub_records(split)
        try:
            return self._hub_records(split)
        except Exception as e:  # datasets raises many types (offline, not found, connection): one message
            from sot.io import DataError

            offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
            cause = (str(e).strip().splitlines() or [""])[0][:200]
            raise DataError(
                f"{self.name} {split}: loading {LOCAL_LAYOUT[self.name][1]} from the Hugging Face hub failed "
                f"({type(e).__name__}: {cause}); the hub is used because data_dir is null in params.yaml and "
                f"${DATA_DIR_ENV} is unset. Fix: "
                + ("allow downloads (HF_HUB_OFFLINE=1 is set; `make` sets it unless you pass HF_HUB_OFFLINE=0), "
                   if offline else "check the network and the dataset id, ")
                + f"or point data_dir in params.yaml at a local copy laid out as <data_dir>/"
                f"{LOCAL_LAYOUT[self.name][0]} (docs/data.md)") from None

    def statement(self, problem: Problem) -> str:
        """The problem as the dataset states it, without the answer-format instruction of Problem.question
        (what a paraphrase or rewrite prompt shows beside the solution: the instruction asks for an answer,
        which a small model then gives instead of rewriting). Default: the whole question."""
        return problem.question

    def messages(self, problem: Problem) -> list[dict]:
        """Chat style: the question as one user message (each backend applies the model's chat template)."""
        return [{"role": "user", "content": problem.question}]

    def prompt(self, problem: Problem, style: str, tokenizer=None) -> str:
        """The rendered prompt text (sot.prompts.render); plain style pairs with `self.stop`, the authors styles
        with prompts.stop_strings(style, task.name)."""
        return prompts.render(problem.question, style, tokenizer, task=self.name)

    def grade_many(self, problems: Sequence[Problem], completions: Sequence[str],
                   workers: int | None = None) -> list[Grade]:
        """Grades in order; workers > 1 spreads chunks over a process pool (None or 1: this process)."""
        if len(problems) != len(completions):
            raise ValueError(f"grade_many: {len(problems)} problems but {len(completions)} completions")
        if not workers or workers <= 1 or len(problems) < 2 * workers:
            return [self.grade(p, c) for p, c in zip(problems, completions)]
        size = -(-len(problems) // (workers * 4))
        chunks = [(self.name, list(problems[i:i + size]), list(completions[i:i + size]))
                  for i in range(0, len(problems), size)]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            return [g for part in pool.map(_grade_chunk, chunks) for g in part]

    def grade_authors_many(self, problems: Sequence[Problem], completions: Sequence[str],
                           workers: int | None = None) -> list[Grade]:
        """`grade_authors` in order, in this process (`workers` is for tasks that run programs: MBPP)."""
        if len(problems) != len(completions):
            raise ValueError(f"grade_authors_many: {len(problems)} problems but {len(completions)} completions")
        return [self.grade_authors(p, c) for p, c in zip(problems, completions)]
