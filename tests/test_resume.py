"""Kill tests: every long stage's library code, SIGKILLed at a random point on the tiny model, then rerun,
ends with exactly the outputs of an uninterrupted run (bit-identical decoding on the CPU; the same losses for
SFT); SIGTERM stops SFT at a checkpoint.

The cases call the sot library directly (sot.generate, sot.paraphrase, sot.corrupt, sot.evaluate, sot.sft),
not the stage modules, with the wrapping the stages use (sot.resume.resumable around the backend). The killed
runs are processes forked from one driver process, `python tests/test_resume.py serve`, which imports torch,
transformers, TRL and sot once (the start-up is most of a run's time) and forks a child per case: the child
runs in its own session, slowed down by a sleep per shard or step so that the kill lands part-way (the runs
compared use no sleep), and writes WORKDIR/exit.json when it ends by itself.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SHARD = 2                       # prompts per shard: 8 shards for the 16 problems
N_PROBLEMS = 16
TOKENS = 6


class Slow:
    """The real backend, slowed down by `delay` seconds per call (the killed run only)."""

    def __init__(self, backend, delay: float):
        self.backend, self.delay = backend, delay

    def info(self):
        return self.backend.info()

    def generate(self, prompts, sampling, progress=True):
        time.sleep(self.delay)
        return self.backend.generate(prompts, sampling, progress=progress)


class Tap:
    """Records what each generate call of the (resumable) backend returned, to compare runs sample by sample."""

    def __init__(self, llm):
        self.llm, self.outputs, self.resumed = llm, [], 0

    def info(self):
        return self.llm.info()

    def generate(self, prompts, sampling, progress=True, **kwargs):
        out = self.llm.generate(prompts, sampling, progress=progress, **kwargs)
        self.outputs.append([[dataclasses.asdict(s) for s in row] for row in out])
        self.resumed += self.llm.last_stats["resumed_shards"]
        return out


def _problems():
    from sot.tasks import get_task
    from sot.tasks.countdown import generate_problems

    task = get_task("countdown")
    return task, [task.from_record(r, id=f"countdown/{i}") for i, r in enumerate(generate_problems(N_PROBLEMS, 7))]


def _llm(model: str, work: Path, slow: float):
    from sot.llm import get_backend
    from sot.resume import resumable

    backend = get_backend("transformers", model, batch_size=2)
    return Tap(resumable(Slow(backend, slow) if slow else backend, work / "cache", shard_size=SHARD))


def case_generate(model, work, slow):
    from sot.generate import generate_samples
    from sot.io import read_jsonl
    from sot.llm import Sampling, get_backend

    task, problems = _problems()
    backend = get_backend("transformers", model, batch_size=2)
    stats = generate_samples(problems, [task.messages(p) for p in problems], Slow(backend, slow) if slow else backend,
                             Sampling(n=2, temperature=1.0, max_new_tokens=TOKENS, seed=3), work / "out.jsonl",
                             work / "cache", shard_size=SHARD, progress=False)
    return {"result": read_jsonl(work / "out.jsonl"), "resumed": stats["resumed_chunks"]}


def case_paraphrase(model, work, slow):
    from sot.llm import Sampling
    from sot.paraphrase import paraphrase

    task, problems = _problems()
    h = [{"id": p.id, "task": p.task, "category": "H", "prompt": p.question, "completion": p.reference}
         for p in problems]
    llm = _llm(model, work, slow)
    records, metrics = paraphrase(h, problems, task, llm, Sampling(n=1, temperature=0.7, max_new_tokens=TOKENS,
                                                                   seed=1), progress=False)
    return {"result": [records, metrics], "outputs": llm.outputs, "resumed": llm.resumed}


def case_lm_rewrite(model, work, slow):
    from sot.corrupt import corrupt_traces, lm_rewrite
    from sot.llm import Sampling

    task, problems = _problems()
    base = [{"id": p.id, "task": p.task, "category": "H", "prompt": p.question, "completion": p.reference}
            for p in problems]
    llm = _llm(model, work, slow)
    op = lm_rewrite(llm, Sampling(n=1, temperature=0.7, max_new_tokens=TOKENS, seed=2), progress=False)
    flawed, metrics = corrupt_traces(base, problems, task, operator=op, seed=2, max_tries=2, progress=False)
    return {"result": [flawed, metrics], "outputs": llm.outputs, "resumed": llm.resumed}


def case_distance_samples(model, work, slow):
    """What the distance stage does for its reference set: the student's own greedy samples, keyed by id."""
    from sot.llm import Sampling

    task, problems = _problems()
    llm = _llm(model, work, slow)
    outs = llm.generate([task.messages(p) for p in problems], Sampling(n=1, temperature=0.0, max_new_tokens=TOKENS),
                        progress=False, ids=[p.id for p in problems])
    own = [{"id": p.id, "completion": o[0].text} for p, o in zip(problems, outs)]
    return {"result": own, "outputs": llm.outputs, "resumed": llm.resumed}


def case_evaluate(model, work, slow):
    from sot.evaluate import evaluate

    task, problems = _problems()
    llm = _llm(model, work, slow)
    rows, summary = evaluate(task, problems, llm, style="chat", max_new_tokens=TOKENS, n_boot=200, progress=False)
    timing = ("generation", "grading_seconds")
    return {"result": [rows, {k: v for k, v in summary.items() if k not in timing}], "outputs": llm.outputs,
            "resumed": llm.resumed}


SFT_STEPS, SFT_SAVE_EVERY = 12, 2


def sft_setup(model):
    from sot.sft import SFTConfig

    records = [{"id": f"p{i}", "prompt": f"What is {i} + {i}?", "completion": f" {i} + {i} = {2 * i}."}
               for i in range(7)]          # 4 steps per epoch: the run crosses two epoch boundaries
    cfg = SFTConfig(model=model, method="lora", lora_r=8, lora_alpha=16, lr=5e-3, budget="steps",
                    budget_value=SFT_STEPS, per_device_batch_size=2, logging_steps=1, warmup_ratio=0.1,
                    save_every=SFT_SAVE_EVERY, seed=5)
    return records, cfg


def case_sft(model, work, slow):
    from transformers import TrainerCallback

    from sot.prompts import render
    from sot.sft import train

    class SlowSteps(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            time.sleep(slow)

    records, cfg = sft_setup(model)
    summary = train(records, cfg, work / "out", render=render, checkpoint_dir=work / "ck",
                    callbacks=[SlowSteps()] if slow else [])
    history = [{k: r.get(k) for k in ("step", "loss", "tokens_seen", "lr")} for r in summary["history"]]
    return {"result": {"history": history, "final_loss": summary["final_loss"], "steps": summary["steps"],
                       "mean_train_loss": summary["mean_train_loss"], "tokens": summary["tokens"]},
            "resumed": summary["resume"]["resumed_from_step"] or 0}


CASES = {"generate": case_generate, "paraphrase": case_paraphrase, "lm_rewrite": case_lm_rewrite,
         "distance_samples": case_distance_samples, "evaluate": case_evaluate, "sft": case_sft}


def progress_made(work: Path) -> int:
    """Finished units on disk: written shards (decoding) or committed checkpoints (SFT)."""
    return len(list(work.glob("cache/*/shard-*.jsonl"))) + len(list(work.glob("ck/*/checkpoint-*/sot_complete.json")))


@pytest.fixture(scope="module")
def driver():
    """The fork server (module docstring); closing its stdin ends it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, __file__, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    yield proc
    proc.stdin.close()
    proc.wait(timeout=60)


def fork(driver, case: str, model: str, work: Path, slow: float) -> int:
    """Start `case` in a child of the driver; returns the child's pid."""
    work.mkdir(parents=True)
    driver.stdin.write(json.dumps([case, model, str(work), slow]) + "\n")
    driver.stdin.flush()
    line = driver.stdout.readline()
    assert line, f"the driver process died (rc {driver.poll()})"
    return int(line)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until(condition, what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def run_until_progress(driver, case, model, work, slow) -> int:
    pid = fork(driver, case, model, work, slow)
    try:
        wait_until(lambda: progress_made(work) >= 1 or (work / "exit.json").exists(), "a first shard / checkpoint")
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
        raise
    assert not (work / "exit.json").exists(), (work / "exit.json").read_text() + (work / "log.txt").read_text()[-3000:]
    return pid


def normalise(obj):
    """JSON round trip (tuples -> lists), so in-process and on-disk results compare as equal values."""
    return json.loads(json.dumps(obj, sort_keys=True))


@pytest.mark.parametrize("case", list(CASES))
def test_sigkill_at_a_random_point_then_rerun_equals_an_uninterrupted_run(case, driver, tiny_model, tmp_path):
    reference = normalise(CASES[case](tiny_model, tmp_path / "whole", 0))
    work = tmp_path / "killed"
    pid = run_until_progress(driver, case, tiny_model, work, 0.3 if case == "sft" else 0.25)
    delay = random.Random(os.urandom(8)).uniform(0, 1.2)      # a random point after the first finished unit
    time.sleep(delay)
    assert not (work / "exit.json").exists(), f"{case}: finished before the kill ({delay:.2f} s after the first unit)"
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), "the killed process to go")
    assert progress_made(work) >= 1 and not (work / "exit.json").exists()
    resumed = normalise(CASES[case](tiny_model, work, 0))
    assert resumed["resumed"] >= 1, f"{case}: the rerun did not resume (kill at +{delay:.2f} s)"
    assert resumed["result"] == reference["result"], f"{case}: resumed output differs (kill at +{delay:.2f} s)"
    assert resumed.get("outputs") == reference.get("outputs")
    if case == "sft":
        (run,) = (work / "ck").iterdir()     # a finished run keeps no checkpoint, only its output (for reuse)
        assert not list(run.glob("checkpoint-*")) and (run / "final").is_dir(), "a finished run keeps no checkpoint"
        assert [r["step"] for r in resumed["result"]["history"]] == list(range(1, SFT_STEPS + 1))


def test_sigterm_stops_sft_at_a_checkpoint_and_the_rerun_matches(driver, tiny_model, tmp_path):
    from sot.sft.resume import checkpoints, is_complete

    reference = normalise(case_sft(tiny_model, tmp_path / "whole", 0))
    work = tmp_path / "stopped"
    pid = run_until_progress(driver, "sft", tiny_model, work, 0.3)
    time.sleep(0.45)                                          # between two periodic checkpoints, most likely
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: (work / "exit.json").exists() and not alive(pid), "the stopped process to exit")
    ended = json.loads((work / "exit.json").read_text())
    assert ended["error"].startswith("StopRequested") and "stopped at a safe point" in ended["error"], ended
    (run,) = (work / "ck").iterdir()
    saved = checkpoints(run)
    assert saved and all(is_complete(p) for _, p in saved) and len(saved) <= 2   # committed, pruned
    last = saved[-1][0]
    assert 0 < last < SFT_STEPS and not (work / "out").exists()
    resumed = normalise(case_sft(tiny_model, work, 0))
    assert resumed["resumed"] == last and resumed["result"]["final_loss"] == pytest.approx(
        reference["result"]["final_loss"], rel=1e-6)
    assert [r["loss"] for r in resumed["result"]["history"]] == pytest.approx(
        [r["loss"] for r in reference["result"]["history"]], rel=1e-6)


def _child(case: str, model: str, work: Path, slow: float) -> None:
    """A forked child: own session, output to WORKDIR/log.txt, exit.json when it ends by itself."""
    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    log = os.open(work / "log.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        CASES[case](model, work, slow)
        error = None
    except BaseException as e:  # noqa: BLE001  (reported to the test, which decides)
        error = f"{type(e).__name__}: {e}"
    (work / "exit.json").write_text(json.dumps({"error": error}))
    os._exit(0 if error is None else 1)


def serve() -> None:
    """Import everything once, then fork one child per request line [case, model, workdir, slow]."""
    import torch
    import transformers  # noqa: F401
    import trl  # noqa: F401

    import sot.corrupt, sot.evaluate, sot.generate, sot.paraphrase, sot.sft  # noqa: E401,F401
    import sot.sft.trl_backend  # noqa: F401
    from sot.llm import hf  # noqa: F401

    torch.set_num_threads(1)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)            # children are reaped by the kernel
    for line in sys.stdin:
        case, model, work, slow = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(case, model, Path(work), float(slow))
        print(pid, flush=True)


if __name__ == "__main__":
    serve()
