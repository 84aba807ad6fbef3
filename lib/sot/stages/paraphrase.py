"""Stage paraphrase: an LM rewrites the H traces in its own words; those still graded correct form P."""
from __future__ import annotations

from sot.io import write_json, write_jsonl
from sot.llm import Sampling, get_backend
from sot.paraphrase import DEFAULT_TEMPLATE, paraphrase
from sot.resume import resumable
from sot.stages import DATA, METRICS, set_path
from sot.stages.common import backend_options, load_problems, load_set, model_ref
from sot.steps import step_validity
from sot.tasks import get_task


def run(task: str, models: dict, model: str, style: str, seed: int, temperature: float, max_new_tokens: int,
        batch_size: int, prompt: str | None) -> dict:
    h = load_set(set_path(task, "H"))
    problems = load_problems(task, "train")
    llm = get_backend("auto", model_ref(models, model), **backend_options("auto", batch_size))
    llm = resumable(llm, DATA / ".cache" / "paraphrase" / task)   # shards survive a kill
    sampling = Sampling(n=1, temperature=temperature, top_p=1.0, max_new_tokens=max_new_tokens, seed=seed)
    records, metrics = paraphrase(h, problems, get_task(task), llm, sampling, template=prompt or DEFAULT_TEMPLATE)
    write_jsonl(set_path(task, "P"), records)
    metrics.update(model=model, style=style, backend=llm.info(),
                   step_validity={"P": step_validity(records, task)})
    write_json(METRICS / "paraphrase" / f"{task}.json", metrics)
    return {k: v for k, v in metrics.items() if k != "backend"}
