"""sot.generate: resumable, exactly-once sampling into JSONL (fake backends, plus one tiny-model run)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sot.generate import generate_samples
from sot.io import read_jsonl
from sot.llm import Sample, Sampling
from sot.llm.base import Backend


class FakeBackend(Backend):
    """Deterministic text per (prompt, sample); counts generate calls and prompts; can die after N calls."""
    name = "fake"

    def __init__(self, model="fake-model", fail_after=None):
        self.model, self.fail_after, self.calls, self.prompts_seen = model, fail_after, 0, []

    def _info(self):
        return {"backend": self.name, "model": self.model, "adapter": None, "device": "cpu",
                "dtype": "float32", "versions": {"fake": "1"}}

    def generate(self, prompts, sampling, progress=True):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.calls += 1
        self.prompts_seen += list(prompts)
        return [[Sample(f"{p} -> {j} (t={sampling.temperature})", 3 + j, "stop") for j in range(sampling.n)]
                for p in prompts]


def problems(n=10):
    return [{"id": f"t/{i}", "task": "toy", "question": f"q{i}"} for i in range(n)]


def prompts_for(probs):
    return [f"Q: {p['question']}\nA:" for p in probs]


def check_exactly_once(path, probs, k):
    recs = read_jsonl(path, required=("id", "sample", "completion", "n_tokens", "finish_reason", "prompt",
                                      "task", "source"))
    assert [(r["id"], r["sample"]) for r in recs] == [(p["id"], j) for p in probs for j in range(k)]
    return recs


def test_kill_and_resume_redoes_no_finished_chunk(tmp_path):
    probs, sampling = problems(10), Sampling(n=3, temperature=0.7)
    out, shards = tmp_path / "out.jsonl", tmp_path / "cache"
    dying = FakeBackend(fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        generate_samples(probs, prompts_for(probs), dying, sampling, out, shards, shard_size=3)
    assert not out.exists() and dying.calls == 2
    again = FakeBackend()
    stats = generate_samples(probs, prompts_for(probs), again, sampling, out, shards, shard_size=3,
                             meta={"stage": "teacher"})
    assert again.calls == 2 and len(dying.prompts_seen) + len(again.prompts_seen) == 10
    assert sorted(dying.prompts_seen + again.prompts_seen) == sorted(prompts_for(probs))
    recs = check_exactly_once(out, probs, 3)
    assert recs[4]["completion"] == "Q: q1\nA: -> 1 (t=0.7)" and recs[4]["prompt"] == "q1"
    assert recs[0]["source"]["stage"] == "teacher" and recs[0]["source"]["model"] == "fake-model"
    assert recs[0]["source"]["sampling"]["n"] == 3 and recs[0]["task"] == "toy"
    assert stats["resumed_chunks"] == 2 and stats["new_chunks"] == 2 and stats["samples"] == 30
    assert stats["generated_samples"] == 12 and stats["tokens"] == sum(r["n_tokens"] for r in recs)
    done = FakeBackend()                                           # a third run only merges
    assert generate_samples(probs, prompts_for(probs), done, sampling, out, shards, shard_size=3)["new_chunks"] == 0
    assert done.calls == 0


def test_other_settings_never_reuse_shards(tmp_path):
    probs = problems(4)
    out, shards = tmp_path / "out.jsonl", tmp_path / "cache"
    generate_samples(probs, prompts_for(probs), FakeBackend(), Sampling(n=2), out, shards)
    for backend, sampling, prompts in [(FakeBackend(), Sampling(n=2, temperature=1.0), prompts_for(probs)),
                                       (FakeBackend(model="other"), Sampling(n=2), prompts_for(probs)),
                                       (FakeBackend(), Sampling(n=2), [p + " " for p in prompts_for(probs)])]:
        stats = generate_samples(probs, prompts, backend, sampling, out, shards)
        assert backend.calls == 1 and stats["resumed_chunks"] == 0
    assert len(list(shards.iterdir())) == 4
    assert all((d / "manifest.json").exists() for d in shards.iterdir())


def test_a_subset_reuses_finished_chunks_and_bad_input_fails_early(tmp_path):
    probs = problems(6)
    shards = tmp_path / "cache"
    generate_samples(probs, prompts_for(probs), FakeBackend(), Sampling(), tmp_path / "a.jsonl", shards, shard_size=2)
    (next(shards.iterdir()) / ".shard-x.jsonl.123.tmp").write_text("half a recor")      # killed mid-write
    backend = FakeBackend()
    generate_samples(probs, prompts_for(probs), backend, Sampling(), tmp_path / "b.jsonl", shards, shard_size=4)
    assert backend.calls == 0 and not list(shards.glob("*/.shard-*.tmp"))
    with pytest.raises(ValueError, match="unique"):
        generate_samples(probs + probs[:1], prompts_for(probs + probs[:1]), FakeBackend(), Sampling(),
                         tmp_path / "c.jsonl", shards)
    with pytest.raises(ValueError, match="align"):
        generate_samples(probs, prompts_for(probs)[:-1], FakeBackend(), Sampling(), tmp_path / "c.jsonl", shards)


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from test_generate import FakeBackend, problems, prompts_for
    from sot.generate import generate_samples
    from sot.llm import Sampling

    class Slow(FakeBackend):
        def generate(self, prompts, sampling, progress=True):
            time.sleep(0.15)
            return super().generate(prompts, sampling, progress)

    probs = problems(40)
    generate_samples(probs, prompts_for(probs), Slow(), Sampling(n=2), sys.argv[1], sys.argv[2], shard_size=2)
""")


def test_sigkill_at_any_moment_then_rerun_gives_every_sample_once(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT.format(tests=str(Path(__file__).parent)))
    out, shards = tmp_path / "out.jsonl", tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(shards)], start_new_session=True,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while len(list(shards.glob("*/shard-*.jsonl"))) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(list(shards.glob("*/shard-*.jsonl")))
    assert 3 <= finished < 20 and not out.exists()
    backend = FakeBackend()
    stats = generate_samples(problems(40), prompts_for(problems(40)), backend, Sampling(n=2), out, shards,
                             shard_size=2)
    assert stats["resumed_chunks"] == finished and len(backend.prompts_seen) == 40 - 2 * finished
    check_exactly_once(out, problems(40), 2)


def test_resumed_tiny_model_run_equals_an_uninterrupted_one(tiny_model, tmp_path):
    from sot.llm import get_backend

    probs = problems(5)
    hf = get_backend("transformers", tiny_model, batch_size=4)
    sampling = Sampling(n=2, temperature=1.0, max_new_tokens=6, seed=3)
    whole = tmp_path / "whole.jsonl"
    generate_samples(probs, prompts_for(probs), hf, sampling, whole, tmp_path / "c1", shard_size=5)

    class Dying:
        def __init__(self):
            self.calls = 0

        def info(self):
            return hf.info()

        def generate(self, prompts, sampling, progress=True):
            self.calls += 1
            if self.calls > 1:
                raise KeyboardInterrupt
            return hf.generate(prompts, sampling, progress)

    with pytest.raises(KeyboardInterrupt):
        generate_samples(probs, prompts_for(probs), Dying(), sampling, tmp_path / "r.jsonl", tmp_path / "c2",
                         shard_size=2)
    stats = generate_samples(probs, prompts_for(probs), hf, sampling, tmp_path / "r.jsonl", tmp_path / "c2",
                             shard_size=2)
    assert stats["resumed_chunks"] == 1
    assert read_jsonl(tmp_path / "r.jsonl") == read_jsonl(whole)


# ---- sot.resume: the one resumable path every decoding stage uses ------------------------------------------

def test_wrapper_returns_what_the_backend_returns_and_keys_by_prompt_without_ids(tmp_path):
    from sot.resume import resumable

    prompts = ["a", [{"role": "user", "content": "b"}], "a", "c", "a"]        # "a" three times
    sampling = Sampling(n=2, temperature=0.5)
    plain = FakeBackend().generate(prompts, sampling)
    inner = FakeBackend()
    llm = resumable(inner, tmp_path / "cache", shard_size=2)
    assert llm.generate(prompts, sampling, progress=False) == plain
    assert inner.prompts_seen == ["a", [{"role": "user", "content": "b"}], "c"]  # each distinct prompt once
    assert llm.last_stats["new_shards"] == 2 and llm.last_stats["samples"] == 10
    assert llm.info() == inner.info() and llm.model == "fake-model"             # provenance and attributes pass through
    again = FakeBackend()
    assert resumable(again, tmp_path / "cache", shard_size=3).generate(prompts, sampling, progress=False) == plain
    assert again.calls == 0
    with pytest.raises(ValueError, match="align"):
        llm.generate(prompts, sampling, ids=["x"])
    with pytest.raises(ValueError, match="unique"):
        llm.generate(["p", "q"], sampling, ids=["x", "x"])
    with pytest.raises(TypeError, match="already resumable"):
        resumable(llm, tmp_path)
    assert llm.generate([], sampling) == []


def test_device_and_dtype_are_part_of_the_fingerprint(tmp_path):
    from sot.resume import resumable

    class OnGPU(FakeBackend):
        def _info(self):
            return {**super()._info(), "device": "cuda", "dtype": "bfloat16"}

    resumable(FakeBackend(), tmp_path, 4).generate(["p", "q"], Sampling())
    gpu = OnGPU()
    llm = resumable(gpu, tmp_path, 4)
    llm.generate(["p", "q"], Sampling())
    assert gpu.calls == 1 and llm.last_stats["resumed_shards"] == 0 and len(list(tmp_path.iterdir())) == 2


STOP_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from test_generate import FakeBackend
    from sot.llm import Sampling
    from sot.resume import resumable

    class Slow(FakeBackend):
        def generate(self, prompts, sampling, progress=True):
            time.sleep(0.3)
            return super().generate(prompts, sampling, progress)

    resumable(Slow(), sys.argv[1], shard_size=2).generate([f"p{{i}}" for i in range(40)], Sampling(n=2),
                                                          progress=False)
""")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_stop_after_the_shard_in_progress(tmp_path, signum):
    from sot.resume import resumable

    script = tmp_path / "run.py"
    script.write_text(STOP_SCRIPT.format(tests=str(Path(__file__).parent)))
    shards = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, str(script), str(shards)], start_new_session=True,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while len(list(shards.glob("*/shard-*.jsonl"))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    before = len(list(shards.glob("*/shard-*.jsonl")))
    os.killpg(proc.pid, signum)                      # mid-shard: the backend is sleeping
    _, err = proc.communicate(timeout=60)
    after = len(list(shards.glob("*/shard-*.jsonl")))
    assert proc.returncode != 0 and "StopRequested" in err and "stopped at a safe point" in err, err[-2000:]
    assert after in (before, before + 1) and after < 20 and not list(shards.glob("*/.shard-*"))
    backend = FakeBackend()
    out = resumable(backend, shards, shard_size=2).generate([f"p{i}" for i in range(40)], Sampling(n=2))
    assert len(backend.prompts_seen) == 40 - 2 * after and out == FakeBackend().generate(
        [f"p{i}" for i in range(40)], Sampling(n=2))
