"""One resumable generation path for every stage that samples or decodes: `resumable(backend, shard_dir)`.

    llm = resumable(get_backend("auto", model), "data/.cache/evaluate/gsm8k-smollm2-135m-G", shard_size=64)
    outputs = llm.generate(prompts, sampling, ids=[p.id for p in problems])   # same result as the backend's

The wrapper has the backend interface, so sot.paraphrase.paraphrase, sot.corrupt.lm_rewrite and
sot.evaluate.evaluate take it as they take any backend. Each call:
- keys every prompt by its id when `ids` is given, else by a hash of the prompt itself (identical prompts are
  then generated once and returned at each of their positions);
- works in the folder shard_dir/<fingerprint>/, the fingerprint (manifest.json there) covering the backend,
  model, adapter and its file hash, device, dtype, the sampling settings and the (key, prompt) list, so shards
  written under other settings are never reused (a colliding short name gets a suffix, never a reuse);
- writes each finished shard of `shard_size` prompts atomically as shard-<hash of its keys>.jsonl (records
  {id, sample, text, n_tokens, finish_reason}); a rerun after a kill loads every finished shard and generates
  only the keys not yet covered; half-written temp files of a killed run are deleted;
- returns one list of `sampling.n` Samples per prompt, in input order, checking that every (key, sample)
  occurs exactly once;
- on SIGTERM/SIGINT, finishes and writes the shard in progress, then raises sot.signals.StopRequested
  (also after the last shard: nothing is lost, a rerun only merges).
Keep shard_dir outside DVC outputs (DVC deletes outputs before a stage runs): data/.cache/<stage>/<item>.
A rerun with another shard_size still reuses every finished shard (shards are read by key, not by name);
the transformers backend's samples do not depend on batching (per-sample seeds), so the resumed output is
the uninterrupted one. `last_stats` holds the counts and timings of the latest call.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

from sot.progress import tqdm

from sot import signals
from sot.io import DataError, read_json, read_jsonl, write_json, write_jsonl
from sot.llm.base import Backend, Sample, Sampling, check_prompts

log = logging.getLogger(__name__)
DEFAULT_SHARD_SIZE = 64
FINGERPRINT_INFO_KEYS = ("backend", "model", "adapter", "adapter_sha256", "device", "dtype", "base_url",
                         "ignore_eos", "sampler")
SHARD_FIELDS = ("id", "sample", "text", "n_tokens", "finish_reason")


def digest(obj) -> str:
    """sha256 of the canonical JSON of obj."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def prompt_key(prompt) -> str:
    """Key of a prompt given without an id: a hash of its content (a str or a message list)."""
    return "sha256:" + digest(prompt)[:32]


def fingerprint(info: dict, sampling: Sampling, keys: list[str], prompts: list) -> dict:
    """Everything that decides what a shard holds (the manifest); its hash names the shard folder."""
    return {"backend": {k: info.get(k) for k in FINGERPRINT_INFO_KEYS},
            "sampling": sampling.to_dict(),
            "prompts_sha256": digest([[k, p] for k, p in zip(keys, prompts)]),
            "n_problems": len(keys)}


def shard_folder(shard_dir: str | Path, manifest: dict) -> Path:
    """The folder for this manifest; a folder whose manifest differs (short-hash collision) is never reused."""
    key = digest(manifest)
    for suffix in [""] + [f"-{k}" for k in range(1, 100)]:
        folder = Path(shard_dir) / (key[:16] + suffix)
        if not (folder / "manifest.json").exists():
            write_json(folder / "manifest.json", manifest)
            return folder
        if read_json(folder / "manifest.json") == manifest:
            return folder
    raise RuntimeError(f"{shard_dir}: 100 shard folders with colliding names; delete {shard_dir}")


def load_shards(folder: Path, wanted: set[str], k: int) -> tuple[dict[str, list[dict]], int]:
    """Finished shards in `folder`: key -> its k sample records, and how many shard files hold wanted keys."""
    for stale in folder.glob(".shard-*.tmp"):                 # temp files of a write cut short by a kill
        stale.unlink(missing_ok=True)
    done: dict[str, list[dict]] = {}
    files = 0
    for path in sorted(folder.glob("shard-*.jsonl")):
        by_key: dict[str, list[dict]] = {}
        for rec in read_jsonl(path, required=SHARD_FIELDS):
            by_key.setdefault(rec["id"], []).append(rec)
        for key, recs in by_key.items():
            samples = sorted(r["sample"] for r in recs)
            if samples != list(range(k)):
                raise DataError(f"{path}: key {key!r} has samples {samples}, expected 0..{k - 1}; "
                                f"delete {folder} and rerun")
            if key in done:
                raise DataError(f"{path}: key {key!r} is also in another shard of {folder}; delete {folder} and rerun")
            if key in wanted:
                done[key] = sorted(recs, key=lambda r: r["sample"])
        files += any(key in wanted for key in by_key)
    return done, files


def _keys(prompts: list, ids) -> list[str]:
    if ids is None:
        return [prompt_key(p) for p in prompts]
    ids = list(ids)
    if len(ids) != len(prompts):
        raise ValueError(f"got {len(ids)} ids for {len(prompts)} prompts; they must align")
    if any(not isinstance(i, str) or not i for i in ids):
        bad = next(i for i in ids if not isinstance(i, str) or not i)
        raise ValueError(f"ids must be non-empty strings, got {bad!r}")
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"problem ids must be unique; {dup!r} occurs {ids.count(dup)} times")
    return ids


class ResumableBackend(Backend):
    """A backend whose generate() keeps id-keyed shards on disk and resumes from them (module docstring)."""
    name = "resumable"

    def __init__(self, backend, shard_dir, shard_size: int = DEFAULT_SHARD_SIZE):
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        if isinstance(backend, ResumableBackend):
            raise TypeError("backend is already resumable; wrap the plain backend once")
        self.backend, self.shard_dir, self.shard_size = backend, Path(shard_dir), int(shard_size)
        self.last_stats: dict | None = None

    def __getattr__(self, name):            # tokenizer, model, batch_size ... of the wrapped backend
        if name == "backend":
            raise AttributeError(name)
        return getattr(self.backend, name)

    def info(self) -> dict:
        """The wrapped backend's provenance, unchanged: resuming does not change what a record is."""
        return self.backend.info()

    def generate(self, prompts, sampling: Sampling, progress: bool = True, ids=None) -> list[list[Sample]]:
        check_prompts(prompts)
        keys = _keys(list(prompts), ids)
        first = {}                                             # key -> its first prompt (duplicates share it)
        for key, p in zip(keys, prompts):
            first.setdefault(key, p)
        unique = list(first)
        if not unique:
            self.last_stats = {"prompts": 0, "samples": 0, "resumed_shards": 0, "new_shards": 0}
            return []
        k, info = sampling.n, self.backend.info()
        folder = shard_folder(self.shard_dir, fingerprint(info, sampling, unique, [first[u] for u in unique]))
        done, resumed = load_shards(folder, set(unique), k)
        todo = [u for u in unique if u not in done]
        shards = [todo[c:c + self.shard_size] for c in range(0, len(todo), self.shard_size)]
        log.warning("%s: %d prompts x %d samples; %d done in %d reused shards under %s; %d shards to go",
                    self.shard_dir, len(unique), k, len(done), resumed, folder, len(shards))
        start, new_samples, new_tokens = time.perf_counter(), 0, 0
        bar = tqdm(total=len(unique), initial=len(done), unit="prompt", desc="shards", disable=not progress)
        try:
            with signals.deferred_signals():
                for s, shard in enumerate(shards, 1):
                    recs = self._generate_shard(shard, first, sampling, progress)
                    write_jsonl(folder / f"shard-{digest(shard)[:16]}.jsonl", recs)
                    for n, key in enumerate(shard):
                        done[key] = recs[n * k:(n + 1) * k]
                    new_samples += len(recs)
                    new_tokens += sum(r["n_tokens"] for r in recs)
                    secs = max(time.perf_counter() - start, 1e-9)
                    bar.update(len(shard))
                    bar.set_postfix(shard=f"{s}/{len(shards)}", samples_s=f"{new_samples / secs:.2f}",
                                    tok_s=f"{new_tokens / secs:.1f}")
                    signals.check(f"shard {s}/{len(shards)} written to {folder}")
        finally:
            bar.close()
        outputs = [[Sample(r["text"], r["n_tokens"], r["finish_reason"]) for r in done[key]] for key in keys]
        if any(len(o) != k for o in outputs):                  # load_shards and _generate_shard check each key
            raise RuntimeError(f"{folder}: a prompt does not have exactly {k} samples after the merge")
        seconds = time.perf_counter() - start
        self.last_stats = {
            "prompts": len(keys), "unique_prompts": len(unique), "samples": len(keys) * k,
            "resumed_shards": resumed, "new_shards": len(shards), "generated_samples": new_samples,
            "generated_tokens": new_tokens, "seconds": round(seconds, 3),
            "samples_per_s": new_samples / seconds if seconds > 0 else 0.0,
            "tokens_per_s": new_tokens / seconds if seconds > 0 else 0.0, "shard_folder": str(folder)}
        return outputs

    def _generate_shard(self, shard: list[str], first: dict, sampling: Sampling, progress: bool) -> list[dict]:
        k = sampling.n
        outputs = self.backend.generate([first[key] for key in shard], sampling, progress=progress)
        if len(outputs) != len(shard) or any(len(o) != k for o in outputs):
            raise RuntimeError(f"backend {self.backend.info().get('backend')} returned "
                               f"{[len(o) for o in outputs]} samples for {len(shard)} prompts with n={k}")
        return [{"id": key, "sample": j, "text": s.text, "n_tokens": s.n_tokens, "finish_reason": s.finish_reason}
                for key, samples in zip(shard, outputs) for j, s in enumerate(samples)]


def resumable(backend, shard_dir, shard_size: int = DEFAULT_SHARD_SIZE) -> ResumableBackend:
    """Wrap `backend` so that its generate() resumes from id-keyed shards under shard_dir (module docstring)."""
    return ResumableBackend(backend, shard_dir, shard_size)
