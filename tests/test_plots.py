"""Figures render from the fixture metrics (non-empty PNG + PDF); results_table formatting; input checks."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sot import plots

FIXTURES = Path(__file__).parent / "fixtures" / "metrics"


def load(name: str) -> pd.DataFrame:
    return pd.DataFrame(json.loads((FIXTURES / f"{name}.json").read_text()))


def assert_figure_files(paths, stem: Path):
    assert [Path(p) for p in paths] == [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    png, pdf = (Path(p).read_bytes() for p in paths)
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert pdf.startswith(b"%PDF") and len(pdf) > 5_000
    assert not list(stem.parent.glob(".*.tmp"))  # atomic writes leave no temp files behind


def test_accuracy_by_set(tmp_path):
    stem = tmp_path / "figs" / "accuracy_by_set"
    assert_figure_files(plots.plot_accuracy_by_set(load("accuracy"), stem), stem)


def test_tolerance_with_and_without_f0(tmp_path):
    acc = load("accuracy")  # gemma-2-2b has no F0 row: its 0 % point comes from G
    assert_figure_files(plots.plot_tolerance(acc, tmp_path / "tol"), tmp_path / "tol")
    with pytest.raises(ValueError, match="no F<pct> rows"):
        plots.plot_tolerance(acc[~acc.set.str.startswith("F")], tmp_path / "none")


def test_loss_curves_by_step_and_tokens(tmp_path):
    loss = load("loss")
    assert_figure_files(plots.plot_loss_curves(loss, tmp_path / "loss"), tmp_path / "loss")
    two_students = pd.concat([loss.assign(student="a"), loss.assign(student="b", loss=loss.loss + 0.1)])
    assert_figure_files(plots.plot_loss_curves(two_students, tmp_path / "tok", x="tokens"), tmp_path / "tok")
    with pytest.raises(ValueError, match="x must be"):
        plots.plot_loss_curves(loss, tmp_path / "bad", x="epoch")


def test_distance_vs_accuracy(tmp_path):
    self_nll = json.loads((FIXTURES / "self_nll.json").read_text())
    stem = tmp_path / "distance"
    assert_figure_files(plots.plot_distance_vs_accuracy(load("distance"), load("accuracy"), stem, self_nll), stem)
    with pytest.raises(ValueError, match="share no"):
        plots.plot_distance_vs_accuracy(load("distance").assign(task="other"), load("accuracy"), stem)


def test_step_validity(tmp_path):
    assert_figure_files(plots.plot_step_validity(load("steps"), tmp_path / "steps"), tmp_path / "steps")


def test_inputs_are_checked():
    acc = load("accuracy")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['strict_lo'\]"):
        plots.plot_accuracy_by_set(acc.drop(columns="strict_lo"), "unused")
    with pytest.raises(ValueError, match="duplicate"):
        plots.results_table(pd.concat([acc, acc.head(1)]))
    with pytest.raises(ValueError, match="no rows"):
        plots.plot_step_validity(pd.DataFrame(columns=["task", "set", "valid_fraction", "n_steps"]), "unused")


def test_set_order():
    names = ["F100", "W", "F0", "G", "H", "base", "X", "P", "F25"]
    assert plots.set_order(names) == ["H", "P", "G", "W", "F0", "F25", "F100", "X"]


def test_results_table_formatting():
    acc = load("accuracy")
    table = plots.results_table(acc)
    lines = table.strip().splitlines()
    assert lines[0] == ("| task | student | set | n | strict acc % [95% CI] | authors acc % | Δ vs H (points) "
                        "| McNemar p |")
    assert len(lines) == 2 + len(acc)
    assert lines[2] == "| gsm8k | qwen2.5-1.5b | base (no fine-tuning) | 200 | 30.0 [23.6, 36.4] | 32.4 | — | — |"
    assert lines[3] == "| gsm8k | qwen2.5-1.5b | H | 200 | 35.0 [28.4, 41.6] | 37.8 | ref | ref |"
    assert "| gsm8k | qwen2.5-1.5b | G | 200 | 42.0 [35.2, 48.8] | 45.4 | +7.0 | 0.030 |" in lines
    assert "| gsm8k | qwen2.5-1.5b | F100 | 200 | 30.0 [23.6, 36.4] | 32.4 | -5.0 | 0.068 |" in lines
    tiny_p = acc.assign(p_vs_H=acc.p_vs_H.where(acc.set != "G", 0.0002), authors=None)
    row = next(l for l in plots.results_table(tiny_p).splitlines() if "| G |" in l)
    assert row.endswith("| — | +7.0 | <0.001 |")
    # rows are built from plain dicts too (what sot.evaluate.accuracy_record returns)
    assert plots.results_table(acc.to_dict("records")) == table
