"""Stage distance: how close each training set is to the base student, measured before any training.

Mean per-token negative log-likelihood (and perplexity) of each set's completions under the base student,
prompt tokens masked, end token included (none for a completion cut by the length limit: counted as
n_unterminated, see sot.distance); the reference point is the student's own greedy samples on the same
training problems (the set that is, by construction, closest to it)."""
from __future__ import annotations

from sot.distance import completion_nll
from sot.io import write_json, write_jsonl
from sot.llm import Sampling, get_backend
from sot.resume import resumable
from sot.stages import DATA, METRICS, set_path
from sot.stages.common import load_problems, load_set, model_ref, prompts_for, stop_for


def own_samples(task: str, model: str, style: str, max_new_tokens: int, batch_size: int, seed: int,
                shard_dir) -> list[dict]:
    problems = load_problems(task, "train")
    llm = resumable(get_backend("auto", model, batch_size=batch_size), shard_dir)
    outs = llm.generate(prompts_for(task, problems, style),
                        Sampling(n=1, temperature=0.0, max_new_tokens=max_new_tokens, seed=seed,
                                 stop=stop_for(task, style)), ids=[p.id for p in problems])
    return [{"id": p.id, "task": task, "category": "self", "prompt": p.question, "completion": o[0].text,
             "source": {"kind": "student greedy", "model": model, "finish_reason": o[0].finish_reason,
                        "truncated": o[0].finish_reason == "length"}} for p, o in zip(problems, outs)]


def run(task: str, student: str, models: dict, sets: list[str], style: str, seed: int, batch_size: int,
        max_length: int, max_new_tokens: int) -> dict:
    model = model_ref(models, student)
    missing = [s for s in sets if not set_path(task, s).exists()]
    if missing:
        raise FileNotFoundError(f"training sets {missing} of {task} not found under {set_path(task, '')}; "
                                "run `dvc repro` for classify, paraphrase and mix first")
    own = own_samples(task, model, style, max_new_tokens, batch_size, seed,
                      shard_dir=DATA / ".cache" / "distance" / f"{task}-{student}")
    write_jsonl(DATA / "distance" / f"{task}-{student}.jsonl", own)
    from sot.models import load

    scorer = load(model)  # loaded once, scored against every set
    result = {"student": student, "model": model, "style": style, "sets": {}}
    for name in sets:
        records = load_set(set_path(task, name))
        if records:
            result["sets"][name] = _summary(completion_nll(scorer, records, style, batch_size, max_length))
    result["self"] = _summary(completion_nll(scorer, own, style, batch_size, max_length))
    write_json(METRICS / "distance" / f"{task}-{student}.json", result)
    return {name: {"nll": v["nll"], "ppl": v["ppl"], "n_tokens": v["n_tokens"], "n_unterminated": v["n_unterminated"]}
            for name, v in {**result["sets"], "self": result["self"]}.items()}


def _summary(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "records"}
