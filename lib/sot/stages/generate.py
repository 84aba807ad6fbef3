"""Stage generate: the teacher samples k chain-of-thought traces per training problem (resumable)."""
from __future__ import annotations

from sot.io import write_json
from sot.llm import Sampling, get_backend
from sot.stages import DATA, METRICS
from sot.stages.common import backend_options, load_problems, model_ref, prompts_for, stop_for


def run(task: str, models: dict, teacher: str, style: str, backend: str, base_url: str | None, k: int,
        temperature: float, top_p: float, max_new_tokens: int, batch_size: int, shard_size: int,
        seed: int) -> dict:
    from sot.generate import generate_samples

    problems = load_problems(task, "train")
    llm = get_backend(backend, model_ref(models, teacher), **backend_options(backend, batch_size, base_url))
    sampling = Sampling(n=k, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed,
                        stop=stop_for(task, style))
    stats = generate_samples(problems, prompts_for(task, problems, style), llm, sampling,
                             out_path=DATA / "generate" / f"{task}.jsonl",
                             shard_dir=DATA / ".cache" / "generate" / task, shard_size=shard_size,
                             meta={"teacher": teacher, "style": style, "task": task})
    stats.update(backend=llm.info(), problems=len(problems), k=k)
    write_json(METRICS / "generate" / f"{task}.json", stats)
    return stats
