"""sft.sweep: model folders saved at chosen optimizer steps beside the final model (sot.sft.sweep), reloadable,
kept through the finished-run reuse and a resume; sweep null writes what it wrote before."""
from __future__ import annotations

import json
import shutil

import pytest

from sot.prompts import render
from sot.sft import SFTConfig, load_trained, train
from sot.sft.sweep import resolve

RECORDS = [{"id": f"p{i}", "prompt": f"What is {i} + 1?", "completion": f" {i}+1={i + 1}. The answer is {i + 1}."}
           for i in range(4)]


def files(folder, skip=("train_summary.json", "training_log.json")) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in skip and "steps" not in p.relative_to(folder).parts[:-1]}


def test_sweep_spec_is_checked_and_resolved():
    assert resolve(None, 10) == ([], [])
    assert resolve([6, 2, 2, 30], 10) == ([2, 6], [30])
    assert resolve({"every": 4}, 10) == ([4, 8], [])
    assert resolve({"every": 5}, 10) == ([5, 10], [])
    for bad in ([], [0], [2.5], {"every": 0}, {"each": 2}, "100", 100, [True]):
        with pytest.raises(ValueError, match=r"sweep.*params.yaml sft.sweep"):
            SFTConfig(model="m", sweep=bad)
    from sot.params_check import problems
    assert problems({"sft": {"sweep": None}}, {"sft"}) == problems({"sft": {"sweep": {"every": 100}}}, {"sft"}) == []
    (problem,) = problems({"sft": {"sweep": [100, -1]}}, {"sft"})
    assert problem.startswith("sft.sweep in params.yaml: must be a non-empty list of positive optimizer steps")


def test_lora_sweep_saves_folders_that_reload_and_survive_the_finished_run_reuse(tiny_model, tmp_path):
    cfg = SFTConfig(model=tiny_model, method="lora", lr=1e-2, budget="steps", budget_value=5,
                    per_device_batch_size=2, logging_steps=3, sweep={"every": 2})
    out = tmp_path / "out"
    summary = train(RECORDS, cfg, out, render=render, checkpoint_dir=tmp_path / "ck")
    assert summary["sweep"] == {"asked": {"every": 2}, "steps": [2, 4], "beyond_run": [], "folder": "steps"}
    assert sorted(p.name for p in (out / "steps").iterdir()) == ["2", "4"]
    logged = {r["step"] for r in summary["history"] if "loss" in r}
    assert {2, 4} <= logged                                   # a sweep step is a logging step
    adapters = {}
    for step in (2, 4):
        folder = out / "steps" / str(step)
        own = json.loads((folder / "train_summary.json").read_text())
        assert own["steps"] == step and own["checkpoint"]["rule"] == "sweep" and own["checkpoint"]["step"] == step
        assert own["swept_from"] == str(out) and "sweep" not in own
        assert max(r["step"] for r in json.loads((folder / "training_log.json").read_text())) == step
        model, _ = load_trained(folder)
        assert type(model).__name__ == "PeftModelForCausalLM"
        adapters[step] = (folder / "adapter_model.safetensors").read_bytes()
    adapters["final"] = (out / "adapter_model.safetensors").read_bytes()
    assert len(set(adapters.values())) == 3                  # three different points of the run
    kept = files(out, skip=()) | {f"steps/{s}/{k}": v for s in (2, 4) for k, v in files(out / "steps" / str(s), ()).items()}
    shutil.rmtree(out)                                        # what DVC does before it reruns the stage
    again = train(RECORDS, cfg, out, render=render, checkpoint_dir=tmp_path / "ck")
    assert again["resume"]["reused_finished_run"].endswith("final")
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == kept
    (run,) = (tmp_path / "ck").iterdir()
    assert not (run / "sweep").exists()                        # moved into the output folder, not left behind


def test_full_model_swept_at_the_last_step_is_the_final_model(tiny_model, tmp_path):
    """The same format as the final model, here cast to save_dtype while the training copy stays float32."""
    cfg = SFTConfig(model=tiny_model, method="full", lr=1e-3, budget="steps", budget_value=4, save_dtype="bfloat16",
                    per_device_batch_size=2, logging_steps=10, sweep=[2, 4, 9])
    summary = train(RECORDS, cfg, tmp_path / "out", render=render)
    assert summary["sweep"]["steps"] == [2, 4] and summary["sweep"]["beyond_run"] == [9]
    last, final = files(tmp_path / "out" / "steps" / "4"), files(tmp_path / "out")
    assert last.keys() == final.keys() and "model.safetensors" in last and "training_args.bin" not in last
    assert [k for k in last if last[k] != final[k]] == []
    assert files(tmp_path / "out" / "steps" / "2")["model.safetensors"] != final["model.safetensors"]
    model, _ = load_trained(tmp_path / "out" / "steps" / "2")
    assert json.loads((tmp_path / "out" / "steps" / "2" / "config.json").read_text())["dtype"] == "bfloat16"


def test_a_resumed_run_takes_the_remaining_sweep_steps_as_an_uninterrupted_one(tiny_model, tmp_path):
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise KeyboardInterrupt("simulated crash")

    cfg = SFTConfig(model=tiny_model, method="lora", lr=1e-2, budget="steps", budget_value=5,
                    per_device_batch_size=2, logging_steps=1, save_every=2, sweep=[1, 2, 4])
    whole = train(RECORDS, cfg, tmp_path / "whole", render=render, checkpoint_dir=tmp_path / "ck-whole")
    with pytest.raises(KeyboardInterrupt):
        train(RECORDS, cfg, tmp_path / "again", render=render, checkpoint_dir=tmp_path / "ck", callbacks=[Crash()])
    (run,) = (tmp_path / "ck").iterdir()
    assert sorted(p.name for p in (run / "sweep").iterdir()) == ["1", "2"]
    again = train(RECORDS, cfg, tmp_path / "again", render=render, checkpoint_dir=tmp_path / "ck")
    assert again["resume"]["resumed_from_step"] == 2
    for step in (1, 2, 4):
        a, b = (files(tmp_path / name / "steps" / str(step)) for name in ("whole", "again"))
        assert a == b, f"step {step}"
    assert whole["sweep"] == again["sweep"]


def test_no_sweep_writes_no_steps_folder(tiny_model, tmp_path):
    cfg = SFTConfig(model=tiny_model, method="lora", budget="steps", budget_value=1, per_device_batch_size=2)
    summary = train(RECORDS[:2], cfg, tmp_path / "out", render=render, checkpoint_dir=tmp_path / "ck")
    assert "sweep" not in summary and not (tmp_path / "out" / "steps").exists()
    assert "sweep" not in json.loads((tmp_path / "out" / "train_summary.json").read_text())
    (run,) = (tmp_path / "ck").iterdir()
    assert not (run / "sweep").exists()
