"""Stage evaluate: greedy decoding of the base or a fine-tuned student on the test problems, graded strictly."""
from __future__ import annotations

from pathlib import Path

from sot.evaluate import check_rows, evaluate
from sot.io import DataError, iter_jsonl, read_json, write_json, write_jsonl
from sot.llm import get_backend
from sot.resume import resumable
from sot.stages import DATA, METRICS, run_name
from sot.stages.common import backend_options, load_problems, model_ref
from sot.tasks import get_task


def student_weights(models: dict, student: str, task: str, set_name: str) -> tuple[str, str | None]:
    """(model, adapter) to evaluate: the base student, or its fine-tuned LoRA adapter / full model."""
    base = model_ref(models, student)
    if set_name == "base":
        return base, None
    trained = DATA / "sft" / run_name(task, student, set_name)
    if not trained.exists():
        raise FileNotFoundError(f"{trained}: no fine-tuned model; run `dvc repro sft@{run_name(task, student, set_name)}`")
    if (trained / "adapter_config.json").exists():
        return base, str(trained)
    return str(trained), None


def run(task: str, student: str, set_name: str, models: dict, style: str, seed: int, backend: str,
        max_new_tokens: int, batch_size: int, n_boot: int) -> dict:
    name = run_name(task, student, set_name)
    skipped = DATA / "sft" / name / "SKIPPED.json"
    if set_name != "base" and skipped.exists():  # no model was trained (empty set): nothing to evaluate
        report = {**read_json(skipped), "evaluated": False}
        write_jsonl(DATA / "evaluate" / f"{name}.jsonl", [])
        write_json(METRICS / "evaluate" / f"{name}.json", report)
        print(f"WARNING: {name} not evaluated: {report['reason']}")
        return report
    problems = load_problems(task, "test")
    model, adapter = student_weights(models, student, task, set_name)
    llm = get_backend(backend, model, adapter=adapter, **backend_options(backend, batch_size))
    llm = resumable(llm, DATA / ".cache" / "evaluate" / name)   # shards survive a kill
    rows, summary = evaluate(get_task(task), problems, llm, style=style, max_new_tokens=max_new_tokens,
                             batch_size=None, n_boot=n_boot, seed=seed)
    write_jsonl(DATA / "evaluate" / f"{name}.jsonl", rows)
    summary.update(student=student, set=set_name, model=model, adapter=adapter)
    write_json(METRICS / "evaluate" / f"{name}.json", summary)
    keys = ("n", "strict", "strict_lo", "strict_hi", "n_parsed", "authors", "authors_lo", "authors_hi")
    return {k: summary[k] for k in keys if k in summary}


def load_rows(task: str, student: str, set_name: str) -> list[dict]:
    """The stored per-problem rows of one run, checked (sot.evaluate.check_rows: errors name file and line)."""
    path = Path(DATA / "evaluate" / f"{run_name(task, student, set_name)}.jsonl")
    if not path.exists():
        raise DataError(f"{path}: no per-problem rows for an evaluated run; rerun `dvc repro evaluate`")
    numbered = list(iter_jsonl(path))
    return check_rows([r for _, r in numbered], str(path), lines=[n for n, _ in numbered])
