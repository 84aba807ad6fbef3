"""Stage modules on fixtures: the figures stage on a copy of one demo run's metrics (GSM8K, SmolLM2-135M), and
the sft stage's handling of an empty training set."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "pipeline"
SETS = ["H", "G", "W", "P", "F50", "F100"]


@pytest.fixture
def in_run_dir(tmp_path, monkeypatch):
    shutil.copytree(FIXTURE, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_figures_stage_draws_every_figure_and_prints_the_table(in_run_dir):
    from sot.stages import figures

    table = figures.run(["gsm8k"], ["smollm2-135m"], SETS, formats=["png"], dpi=40, seed=0)
    out = in_run_dir / "figures"
    for name in ("accuracy_by_set", "tolerance", "loss_curves", "distance_vs_accuracy", "step_validity"):
        assert (out / f"{name}.png").stat().st_size > 1000, name
    assert not list(out.glob("*.pdf"))                          # formats is honoured
    results = (out / "results.md").read_text()
    assert results == table or table in results
    rows = {line.split("|")[3].strip(): line for line in results.splitlines() if line.startswith("| gsm8k")}
    assert set(rows) == {"base (no fine-tuning)", "H", "W", "P", "F50", "F100"}
    # the fixture's evaluation: H solved 1 of 10 problems, W none (hand-checked against data/evaluate)
    assert "| 10.0 [0.0, 30.0] |" in rows["H"] and "| ref | ref |" in rows["H"]
    assert "| 0.0 [0.0, 0.0] |" in rows["W"] and "| -10.0 |" in rows["W"]
    assert "gsm8k-smollm2-135m-G: data/sets/gsm8k/G.jsonl is empty" in results   # skipped runs are listed


def test_figures_stage_fails_loudly_without_metrics(tmp_path, monkeypatch):
    from sot.stages import figures

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no evaluation metrics under metrics/evaluate; run `dvc repro"):
        figures.run(["gsm8k"], ["smollm2-135m"], SETS, formats=["png"], dpi=40)


@pytest.mark.parametrize("set_name, hint", [("G", "answered no training problem correctly"),
                                            ("W", "w_policy 'any'"), ("P", "paraphrase was dropped"),
                                            ("F50", "corrupt.base")])
def test_sft_stage_skips_an_empty_set_and_says_why(tmp_path, monkeypatch, set_name, hint):
    from sot.stages import sft

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "sets" / "gsm8k").mkdir(parents=True)
    (tmp_path / "data" / "sets" / "gsm8k" / f"{set_name}.jsonl").write_text("")
    report = sft.run("gsm8k", "tiny", set_name, models={"tiny": "unused"}, style="plain", seed=0, options={})
    assert report["skipped"] and hint in report["reason"] and "is empty (0 records)" in report["reason"]
    saved = json.loads((tmp_path / "metrics" / "sft" / f"gsm8k-tiny-{set_name}.json").read_text())
    assert saved == report
    assert (tmp_path / "data" / "sft" / f"gsm8k-tiny-{set_name}" / sft.SKIPPED).exists()


def test_sft_stage_with_two_processes_runs_under_torchrun(tmp_path, monkeypatch, tiny_model):
    """`sft.num_processes: 2`: the stage launches itself with torchrun (here 2 CPU processes, gloo),
    both ranks train on their share of each batch, rank 0 writes the model and the metrics."""
    import yaml

    from sot.io import read_json
    from sot.stages import sft

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["models"]["tiny"] = tiny_model
    params["style"] = "plain"
    params["sft"].update(budget_value=3, batch_size=1, grad_accum=1, max_length=64, num_processes=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "notebooks").mkdir()
    shutil.copy(root / "notebooks" / "08_sft.ipynb", tmp_path / "notebooks")
    sets = tmp_path / "data" / "sets" / "gsm8k"
    sets.mkdir(parents=True)
    records = [{"id": f"p{i}", "task": "gsm8k", "category": "H", "prompt": f"What is {i} + {i}?",
                "completion": f" {i} + {i} = {2 * i}. The answer is {2 * i}."} for i in range(8)]
    (sets / "H.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    report = sft.run("gsm8k", "tiny", "H", models=params["models"], style="plain", seed=0, options=params["sft"])
    saved = read_json(tmp_path / "metrics" / "sft" / "gsm8k-tiny-H.json")
    assert report["world_size"] == saved["world_size"] == 2 and saved["backend"] == "trl"
    assert saved["steps"] == 3 and saved["plan"]["examples_per_step"] == 2      # 1 per process x 2 processes
    assert (tmp_path / "data" / "sft" / "gsm8k-tiny-H" / "adapter_config.json").exists()
    loss = (tmp_path / "metrics" / "sft" / "loss" / "gsm8k-tiny-H.csv").read_text().splitlines()
    assert loss[0].startswith("step,") and len(loss) == 1 + 3
