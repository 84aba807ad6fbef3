"""Figures render from the fixture metrics (non-empty PNG + PDF); the results table (sot.tables) formatting;
input checks. The fixtures are made by tests/fixtures/metrics/make_accuracy.py."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sot import plots, tables

FIXTURES = Path(__file__).parent / "fixtures" / "metrics"


def load(name: str) -> pd.DataFrame:
    return pd.DataFrame(json.loads((FIXTURES / f"{name}.json").read_text()))


def assert_figure_files(paths, stem: Path):
    assert [Path(p) for p in paths] == [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    png, pdf = (Path(p).read_bytes() for p in paths)
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert pdf.startswith(b"%PDF") and len(pdf) > 5_000
    assert not list(stem.parent.glob(".*.tmp"))  # atomic writes leave no temp files behind


def test_accuracy_by_set_with_and_without_the_difference_panels(tmp_path):
    stem = tmp_path / "figs" / "accuracy_by_set"
    assert_figure_files(plots.plot_accuracy_by_set(load("accuracy"), stem), stem)
    plain = load("accuracy").drop(columns=["delta_vs_H", "p_vs_H_holm"])   # accuracy bars only, no stars
    assert_figure_files(plots.plot_accuracy_by_set(plain, tmp_path / "plain"), tmp_path / "plain")


def test_tolerance_with_and_without_f0(tmp_path):
    acc, trend = load("accuracy"), load("trend")  # gemma-2-2b has no F0 row: its 0 % point comes from G
    assert_figure_files(plots.plot_tolerance(acc, tmp_path / "tol", trend=trend), tmp_path / "tol")
    no_stats = acc.drop(columns=["delta_vs_F0"])
    assert_figure_files(plots.plot_tolerance(no_stats, tmp_path / "tol2"), tmp_path / "tol2")
    with pytest.raises(ValueError, match="no F<pct> rows"):
        plots.plot_tolerance(acc[~acc.set.str.startswith("F")], tmp_path / "none")


def test_stars_follow_the_holm_adjusted_p(monkeypatch, tmp_path):
    drawn = []
    monkeypatch.setattr(plots, "_holm_star", lambda p: drawn.append(p) or plots._present(p) and float(p) < 0.05)
    monkeypatch.setitem(plots.OUTPUT, "formats", ("png",))
    monkeypatch.setitem(plots.OUTPUT, "dpi", 30)
    acc = load("accuracy")
    plots.plot_accuracy_by_set(acc, tmp_path / "a")
    bars = acc[acc.set != "base"]
    assert sorted(map(str, drawn)) == sorted(map(str, bars.p_vs_H_holm))   # never the raw p


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
        tables.results_table(pd.concat([acc, acc.head(1)]))
    with pytest.raises(ValueError, match="no rows"):
        plots.plot_step_validity(pd.DataFrame(columns=["task", "set", "valid_fraction", "n_steps"]), "unused")


def test_set_order():
    names = ["F100", "W", "F0", "G", "H", "base", "X", "P", "F25"]
    assert plots.set_order(names) == ["H", "P", "G", "W", "F0", "F25", "F100", "X"]


def test_results_table_formatting():
    acc, trend = load("accuracy"), load("trend")
    table = tables.results_table(acc, trend)
    lines = table.strip().splitlines()
    assert lines[0].startswith("Accuracy intervals: 95% Wilson score intervals") and "Tango" in lines[0]
    assert "Holm-adjusted over all tests of each task × student panel" in lines[0]
    header = lines.index(next(l for l in lines if l.startswith("| task | student | set |")))
    assert lines[header] == ("| task | student | set | n | strict acc % [95% CI] | authors acc % [95% CI] (n_parsed) "
                             "| Δ vs H, points [95% CI] | p vs H: Holm (raw) | Δ vs F0, points [95% CI] "
                             "| p vs F0: Holm (raw) |")
    trend_at = lines.index(next(l for l in lines if l.startswith("Tolerance trend")))
    rows = [l for l in lines[:trend_at] if l.startswith("| gsm8k") or l.startswith("| math")]
    assert len(rows) == len(acc)
    assert rows[0] == ("| gsm8k | qwen2.5-1.5b | base (no fine-tuning) | 200 | 30.0 [24.1, 36.7] | 32.3 [26.0, 39.3] "
                       "(186) | -5.0 [-9.0, -2.7] | 0.018 (0.002) |  |  |")
    assert rows[1] == ("| gsm8k | qwen2.5-1.5b | H | 200 | 35.0 [28.7, 41.8] | 37.6 [31.0, 44.8] (186) | ref | ref "
                       "|  |  |")
    assert ("| gsm8k | qwen2.5-1.5b | G | 200 | 42.0 [35.4, 48.9] | 45.2 [38.2, 52.3] (186) | +7.0 [+4.2, +11.4] "
            "| 0.002 (<0.001) |  |  |") in rows
    assert ("| gsm8k | qwen2.5-1.5b | F100 | 200 | 30.0 [24.1, 36.7] | 32.3 [26.0, 39.3] (186) | -5.0 [-9.0, -2.7] "
            "| 0.018 (0.002) | -12.0 [-18.1, -6.5] | <0.001 (<0.001) |") in rows
    assert "| gsm8k | qwen2.5-1.5b | F0 |" in rows[5] and rows[5].endswith("| ref | ref |")
    # gemma-2-2b has no F0 run: G is its 0 % set, and a note says so
    g_row = next(l for l in rows if l.startswith("| gsm8k | gemma-2-2b | G |"))
    assert g_row.endswith("| ref (note 1) | ref |")
    assert "Note 1: gsm8k · gemma-2-2b: F0 was not evaluated; the mixtures are made from G" in table
    # the trend table
    assert "| task | student | 0 % set | levels (% flawed) | n | slope, points per 100 % | p: Holm (raw) | z " \
           "| n_perm |" in lines
    assert "| gsm8k | qwen2.5-1.5b | F0 | 0,25,50,75,100 | 200 | -12.0 | 0.005 (<0.001) | -6.55 | 2000 |" in lines
    assert "| gsm8k | gemma-2-2b | G | 0,25,50,75,100 | 200 |" in table
    # rows are built from plain dicts too (what sot.evaluate.accuracy_record returns)
    assert tables.results_table(acc.to_dict("records"), trend.to_dict("records")) == table
    assert "Tolerance trend" not in tables.results_table(acc)


def test_results_table_shows_the_reason_where_a_comparison_is_missing():
    acc = load("accuracy")
    broken = acc.copy()
    w = (broken.set == "W") & (broken.task == "math") & (broken.student == "gemma-2-2b")
    for col in ("delta_vs_H", "delta_H_lo", "delta_H_hi", "p_vs_H", "p_vs_H_holm"):
        broken.loc[w, col] = None
    broken.loc[w, "note_vs_H"] = "W and H were evaluated on different problems: 3 of H's ids missing"
    table = tables.results_table(broken)
    row = next(l for l in table.splitlines() if l.startswith("| math | gemma-2-2b | W |"))
    assert "| — (note 3) | — |" in row       # notes 1 and 2: G stands for F0 in the gemma-2-2b panels
    assert "Note 3: math · gemma-2-2b · W vs H: W and H were evaluated on different problems" in table
    assert "| math | gemma-2-2b | G |" in table and table.count("| ref | ref |") >= 4   # the rest is made


def test_merged_labels_name_coinciding_points_once():
    # the CPU study's MBPP panel: G and F0 are the same set (F0 = G), W sits just above them
    points = [(0.613, 7.5, "G"), (0.621, 8.0, "W"), (0.613, 7.5, "F0"), (1.503, 8.0, "H")]
    assert plots.merged_labels(points) == {"F0": "G = F0", "W": "W", "H": "H"}


def test_figures_are_readable_by_everyone_like_any_new_file(tmp_path):
    """The atomic write's temp file is created 0600; the figure gets the mode open() would give (0644 here)."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        paths = plots.plot_accuracy_by_set(load("accuracy"), tmp_path / "acc")
    finally:
        os.umask(old)
    assert [oct(stat.S_IMODE(Path(p).stat().st_mode)) for p in paths] == [oct(0o644)] * 2


def test_tolerance_trend_note_stays_clear_of_the_axes(tmp_path, monkeypatch):
    """The trend test's line sits under the panel title, not over the curves or the y tick labels; the lower
    panels' axis says what it shows in words (not the raw `F<pct> − F0`)."""
    drawn = {}
    real_save = plots._save

    def keep(fig, *a, **k):
        drawn["fig"] = fig
        return real_save(fig, *a, **k)

    monkeypatch.setattr(plots, "_save", keep)
    plots.plot_tolerance(load("accuracy"), tmp_path / "tol", trend=load("trend"))
    fig = drawn["fig"]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    top = fig.axes[0]
    assert "trend" in top.get_title() and not any("trend" in t.get_text() for t in top.texts)
    title = top.title.get_window_extent(renderer)
    low, high = top.get_ylim()
    for label in top.get_yticklabels():   # the drawn ones (matplotlib also lists ticks beyond the limits)
        if label.get_text() and low <= label.get_position()[1] <= high:
            assert not title.overlaps(label.get_window_extent(renderer)), label.get_text()
    assert title.y0 >= top.get_window_extent(renderer).y1 - 1      # above the plotting area
    lower = [ax.get_ylabel() for ax in fig.axes if "F0" in ax.get_ylabel()]
    assert lower and all("<pct>" not in label and "percentage points" in label for label in lower)
