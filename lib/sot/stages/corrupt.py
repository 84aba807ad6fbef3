"""Stage corrupt: one completely flawed version of every trace of the base set (each grades wrong)."""
from __future__ import annotations

from sot.corrupt import corrupt_traces, lm_rewrite
from sot.io import write_json, write_jsonl
from sot.llm import Sampling, get_backend
from sot.resume import resumable
from sot.stages import DATA, METRICS, set_path
from sot.stages.common import load_problems, load_set, model_ref
from sot.steps import step_validity
from sot.tasks import get_task


def run(task: str, models: dict, teacher: str, style: str, seed: int, base: str, operator: str) -> dict:
    base_records = load_set(set_path(task, base))
    problems = load_problems(task, "train")
    op = operator
    if operator == "lm_rewrite":  # the teacher writes the flawed traces
        llm = resumable(get_backend("auto", model_ref(models, teacher)), DATA / ".cache" / "corrupt" / task)
        op = lm_rewrite(llm, Sampling(n=1, temperature=0.7, max_new_tokens=512, seed=seed))
    flawed, metrics = corrupt_traces(base_records, problems, get_task(task), operator=op, seed=seed)
    write_jsonl(DATA / "corrupt" / f"{task}.jsonl", flawed)
    metrics.update(base=base, operator=operator, n_base=len(base_records),
                   step_validity={"flawed": step_validity(flawed, task), base: step_validity(base_records, task)})
    write_json(METRICS / "corrupt" / f"{task}.json", metrics)
    return metrics
