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
