"""Stage prepare: per task, the train and test problems and the human-trace set H."""
from __future__ import annotations

from sot.io import write_json, write_jsonl
from sot.stages import DATA, METRICS
from sot.tasks import get_task


def run(tasks: list[str], data_dir: str | None, n_train: int | None, n_test: int | None, seed: int) -> dict:
    """Load every task's splits (validated before anything is written), write them with H, check the golds."""
    loaded = {}
    for name in tasks:  # load everything first: bad input fails before any file is written
        task = get_task(name)
        loaded[name] = (task, task.load_split("train", data_dir, limit=n_train, seed=seed),
                        task.load_split("test", data_dir, limit=n_test, seed=seed))
    summary = {}
    for name, (task, train, test) in loaded.items():
        out = DATA / "prepare" / name
        write_jsonl(out / "train.jsonl", (p.to_dict() for p in train))
        write_jsonl(out / "test.jsonl", (p.to_dict() for p in test))
        write_jsonl(out / "H.jsonl", (human_record(p) for p in train))
        gold = task.grade_many(train + test, [p.reference for p in train + test])
        summary[name] = {"train": len(train), "test": len(test),
                         "gold_correct": sum(g.correct for g in gold), "gold_total": len(gold)}
        if summary[name]["gold_correct"] != len(gold):
            bad = [p.id for p, g in zip(train + test, gold) if not g.correct]
            print(f"warning: {name}: {len(bad)} reference traces do not grade correct: {bad[:10]}")
    write_json(METRICS / "prepare.json", summary)
    return summary


def human_record(problem) -> dict:
    return {"id": problem.id, "task": problem.task, "category": "H", "prompt": problem.question,
            "completion": problem.reference, "source": {"kind": "human", "dataset": problem.task}}
