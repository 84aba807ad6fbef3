"""Resumable sampling of k completions per problem: id-keyed shards, exactly-once merge.

Layout: shard_dir/<fingerprint>/manifest.json + chunk-<hash of the chunk's ids>.jsonl. The fingerprint
covers the model, adapter (and its file hash), backend, dtype, sampling and the (id, prompt) list, so shards
written under other settings are never reused. Each finished chunk is written atomically; a rerun after a
crash loads every finished chunk, generates only the problems not yet covered, then merges in problem order
and checks that every (id, sample) is present exactly once before writing out_path atomically.
Keep shard_dir outside DVC outputs (DVC deletes outputs before a stage runs), e.g. data/.cache/generate/<task>.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

from tqdm.auto import tqdm

from sot.io import DataError, read_json, read_jsonl, write_json, write_jsonl
from sot.llm.base import Sampling

log = logging.getLogger(__name__)
FINGERPRINT_INFO_KEYS = ("backend", "model", "adapter", "adapter_sha256", "dtype", "base_url")


def _field(problem, name: str):
    return problem[name] if isinstance(problem, dict) else getattr(problem, name)


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def fingerprint(info: dict, sampling: Sampling, ids: list[str], prompts: list) -> dict:
    """Everything that decides what a shard holds (the manifest); its hash names the shard folder."""
    return {"backend": {k: info.get(k) for k in FINGERPRINT_INFO_KEYS},
            "sampling": sampling.to_dict(),
            "prompts_sha256": _digest([[i, p] for i, p in zip(ids, prompts)]),
            "n_problems": len(ids)}


def shard_folder(shard_dir: str | Path, manifest: dict) -> Path:
    """The folder for this manifest; a folder whose manifest differs (hash collision) is never reused."""
    key = _digest(manifest)
    for suffix in [""] + [f"-{k}" for k in range(1, 100)]:
        folder = Path(shard_dir) / (key[:16] + suffix)
        if not (folder / "manifest.json").exists():
            write_json(folder / "manifest.json", manifest)
            return folder
        if read_json(folder / "manifest.json") == manifest:
            return folder
    raise RuntimeError(f"{shard_dir}: 100 shard folders with colliding names; delete {shard_dir}")


def load_shards(folder: Path, wanted: set[str], k: int) -> tuple[dict[str, list[dict]], int]:
    """Finished chunks in `folder`: id -> its k samples, and how many chunk files hold wanted ids."""
    for stale in folder.glob(".chunk-*.tmp"):        # temp files of a run killed mid-write
        stale.unlink(missing_ok=True)
    done: dict[str, list[dict]] = {}
    files = 0
    for path in sorted(folder.glob("chunk-*.jsonl")):
        by_id: dict[str, list[dict]] = {}
        for rec in read_jsonl(path, required=("id", "sample", "text", "n_tokens", "finish_reason")):
            by_id.setdefault(rec["id"], []).append(rec)
        for pid, recs in by_id.items():
            if sorted(r["sample"] for r in recs) != list(range(k)):
                raise DataError(f"{path}: id {pid!r} has samples {sorted(r['sample'] for r in recs)}, "
                                f"expected 0..{k - 1}; delete {folder} and rerun")
            if pid in done:
                raise DataError(f"{path}: id {pid!r} is also in another chunk of {folder}; delete {folder} and rerun")
            if pid in wanted:
                done[pid] = sorted(recs, key=lambda r: r["sample"])
        files += any(pid in wanted for pid in by_id)
    return done, files


def merge_records(problems: list, done: dict[str, list[dict]], k: int, source: dict) -> list[dict]:
    """Output records in problem order then sample; raises unless every (id, sample) occurs exactly once."""
    records = []
    for p in problems:
        pid = _field(p, "id")
        recs = done.get(pid, [])
        if [r["sample"] for r in recs] != list(range(k)):
            raise RuntimeError(f"problem {pid!r}: samples {[r['sample'] for r in recs]}, expected 0..{k - 1}")
        for r in recs:
            records.append({"id": pid, "sample": r["sample"], "completion": r["text"], "n_tokens": r["n_tokens"],
                            "finish_reason": r["finish_reason"], "prompt": _field(p, "question"),
                            "task": _field(p, "task"), "source": source})
    keys = [(r["id"], r["sample"]) for r in records]
    if len(set(keys)) != len(keys) or len(keys) != len(problems) * k:
        raise RuntimeError(f"merge produced {len(keys)} records ({len(set(keys))} distinct) "
                           f"for {len(problems)} problems x {k} samples")
    return records


def generate_samples(problems: list, prompts: list, backend, sampling: Sampling, out_path, shard_dir,
                     shard_size: int = 64, meta: dict | None = None, progress: bool = True) -> dict:
    """Sample `sampling.n` completions per problem (prompts[i] belongs to problems[i]) into out_path (JSONL).

    Resumes from finished chunks in shard_dir; returns stats (samples, tokens, seconds, samples_per_s,
    tokens_per_s, resumed_chunks, new_chunks, shard_folder). `meta` is added to every record's "source".
    """
    if len(problems) != len(prompts):
        raise ValueError(f"got {len(problems)} problems but {len(prompts)} prompts; they must align")
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    ids = [_field(p, "id") for p in problems]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"problem ids must be unique; {dup!r} occurs {ids.count(dup)} times")
    k, info = sampling.n, backend.info()
    folder = shard_folder(shard_dir, fingerprint(info, sampling, ids, prompts))
    done, resumed = load_shards(folder, set(ids), k)
    todo = [i for i, pid in enumerate(ids) if pid not in done]
    chunks = [todo[c:c + shard_size] for c in range(0, len(todo), shard_size)]
    log.warning("generate: %d problems x %d samples; %d done in %d reused chunks under %s; %d chunks to go",
                len(ids), k, len(done), resumed, folder, len(chunks))
    start, new_samples, new_tokens = time.perf_counter(), 0, 0
    bar = tqdm(total=len(ids), initial=len(done), unit="problem", desc="problems", disable=not progress)
    for c, chunk in enumerate(chunks, 1):
        outputs = backend.generate([prompts[i] for i in chunk], sampling, progress=progress)
        if len(outputs) != len(chunk) or any(len(o) != k for o in outputs):
            raise RuntimeError(f"backend {info.get('backend')} returned {[len(o) for o in outputs]} samples "
                               f"for {len(chunk)} prompts with n={k}")
        recs = [{"id": ids[i], "sample": j, "text": s.text, "n_tokens": s.n_tokens, "finish_reason": s.finish_reason}
                for i, samples in zip(chunk, outputs) for j, s in enumerate(samples)]
        chunk_ids = [ids[i] for i in chunk]
        write_jsonl(folder / f"chunk-{_digest(chunk_ids)[:16]}.jsonl", recs)
        for pid, n in zip(chunk_ids, range(0, len(recs), k)):
            done[pid] = recs[n:n + k]
        new_samples += len(recs)
        new_tokens += sum(r["n_tokens"] for r in recs)
        secs = max(time.perf_counter() - start, 1e-9)
        bar.update(len(chunk))
        bar.set_postfix(chunk=f"{c}/{len(chunks)}", samples_s=f"{new_samples / secs:.2f}",
                        tok_s=f"{new_tokens / secs:.1f}")
    bar.close()
    seconds = time.perf_counter() - start
    source = {**(meta or {}), "model": info.get("model"), "adapter": info.get("adapter"),
              "backend": info.get("backend"), "device": info.get("device"), "dtype": info.get("dtype"),
              "sampling": sampling.to_dict(), "versions": info.get("versions")}
    records = merge_records(problems, done, k, source)
    write_jsonl(out_path, records)
    return {"samples": len(records), "tokens": sum(r["n_tokens"] for r in records),
            "generated_samples": new_samples, "generated_tokens": new_tokens, "seconds": round(seconds, 3),
            "samples_per_s": new_samples / seconds if seconds > 0 else 0.0,
            "tokens_per_s": new_tokens / seconds if seconds > 0 else 0.0,
            "resumed_chunks": resumed, "new_chunks": len(chunks), "shard_folder": str(folder)}
