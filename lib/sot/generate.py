"""The generate stage's sampling: k completions per problem into one JSONL file, resumable, exactly once.

A thin user of sot.resume: the backend is wrapped with `resumable(backend, shard_dir, shard_size)` and called
with the problem ids as keys, so shards live in shard_dir/<fingerprint>/ (model, adapter and its hash,
backend, device, dtype, sampling, the (id, prompt) list) and a rerun after a kill generates only the problems
not yet covered. The records are then written in problem order, then sample, after checking that every
(id, sample) occurs exactly once; out_path is written atomically. Keep shard_dir outside DVC outputs (DVC
deletes outputs before a stage runs), e.g. data/.cache/generate/<task>.
"""
from __future__ import annotations

from sot.io import write_jsonl
from sot.llm.base import Sampling
from sot.resume import DEFAULT_SHARD_SIZE, resumable


def _field(problem, name: str):
    return problem[name] if isinstance(problem, dict) else getattr(problem, name)


def sample_records(problems: list, outputs: list, k: int, source: dict) -> list[dict]:
    """Output records in problem order then sample; raises unless every (id, sample) occurs exactly once."""
    records = []
    for p, samples in zip(problems, outputs, strict=True):
        if len(samples) != k:
            raise RuntimeError(f"problem {_field(p, 'id')!r}: {len(samples)} samples, expected {k}")
        records += [{"id": _field(p, "id"), "sample": j, "completion": s.text, "n_tokens": s.n_tokens,
                     "finish_reason": s.finish_reason, "prompt": _field(p, "question"), "task": _field(p, "task"),
                     "source": source} for j, s in enumerate(samples)]
    keys = [(r["id"], r["sample"]) for r in records]
    if len(set(keys)) != len(keys) or len(keys) != len(problems) * k:
        raise RuntimeError(f"merge produced {len(keys)} records ({len(set(keys))} distinct) "
                           f"for {len(problems)} problems x {k} samples")
    return records


def generate_samples(problems: list, prompts: list, backend, sampling: Sampling, out_path, shard_dir,
                     shard_size: int = DEFAULT_SHARD_SIZE, meta: dict | None = None, progress: bool = True) -> dict:
    """Sample `sampling.n` completions per problem (prompts[i] belongs to problems[i]) into out_path (JSONL).

    Resumes from finished shards in shard_dir; returns stats (samples, tokens, generated_samples,
    generated_tokens, seconds, samples_per_s, tokens_per_s, resumed_chunks, new_chunks, shard_folder).
    `meta` is added to every record's "source".
    """
    if len(problems) != len(prompts):
        raise ValueError(f"got {len(problems)} problems but {len(prompts)} prompts; they must align")
    llm = resumable(backend, shard_dir, shard_size)
    outputs = llm.generate(prompts, sampling, progress=progress, ids=[_field(p, "id") for p in problems])
    info, st = backend.info(), llm.last_stats
    source = {**(meta or {}), "model": info.get("model"), "adapter": info.get("adapter"),
              "backend": info.get("backend"), "device": info.get("device"), "dtype": info.get("dtype"),
              "sampling": sampling.to_dict(), "versions": info.get("versions")}
    records = sample_records(problems, outputs, sampling.n, source)
    write_jsonl(out_path, records)
    return {"samples": len(records), "tokens": sum(r["n_tokens"] for r in records),
            "generated_samples": st.get("generated_samples", 0), "generated_tokens": st.get("generated_tokens", 0),
            "seconds": st.get("seconds", 0.0), "samples_per_s": st.get("samples_per_s", 0.0),
            "tokens_per_s": st.get("tokens_per_s", 0.0), "resumed_chunks": st["resumed_shards"],
            "new_chunks": st["new_shards"], "shard_folder": st.get("shard_folder")}
