"""DVC's own views of the project, as a reader runs them: `dvc plots show` (no warning, one loss chart with every
set overlaid), `dvc metrics show` (the compared numbers only, narrow enough for a screen) and `dvc metrics diff`
(empty when a rerun only changed timings). A throwaway DVC project: the project's dvc.yaml, templates and
params.yaml (tasks: the fixture's gsm8k) over the fixture run of tests/fixtures/pipeline, with the files the
figures stage and sot.scores write from it."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "pipeline"
SETS = ["H", "G", "W", "P", "F50", "F100"]
GROUP = ("gsm8k", "smollm2-135m")
DVC = [sys.executable, "-m", "dvc"]


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    return subprocess.run([*DVC, *args], cwd=root, capture_output=True, text=True, env=env, timeout=120)


def write_views(root: Path) -> None:
    """What the figures stage (figures/*.csv) and the sft, evaluate and distance stages (metrics/scores) write."""
    from sot import report
    from sot.io import read_json
    from sot.scores import write_scores

    task, student = GROUP
    acc, trend = report.accuracy_tables([task], [student], SETS, n_perm=100, seed=0)
    report.write_table(acc, trend, [])
    report.write_loss(report.loss_table([task], [student], SETS))
    for s in ["base", *SETS]:
        write_scores("evaluate", task, student, s, read_json(root / "metrics" / "evaluate" / f"{task}-{student}" / f"{s}.json"))
    for s in SETS:
        write_scores("sft", task, student, s, read_json(root / "metrics" / "sft" / f"{task}-{student}" / f"{s}.json"))
    for s, d in read_json(root / "metrics" / "distance" / f"{task}-{student}.json")["sets"].items():
        write_scores("distance", task, student, s, d)


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = tmp_path / "p"
    shutil.copytree(FIXTURE, root)
    shutil.copy(ROOT / "dvc.yaml", root)
    (root / "params.yaml").write_text((ROOT / "params.yaml").read_text().replace("tasks: [mbpp]", "tasks: [gsm8k]"))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    assert dvc(root, "init", "-q").returncode == 0
    shutil.copytree(ROOT / ".dvc" / "plots", root / ".dvc" / "plots")
    # what DVC writes beside a cached output: inside metrics/sft/loss/ it broke `dvc plots show` when that folder
    # was a plot target ("DVC failed to load some plots")
    (root / "metrics" / "sft" / "loss" / ".gitignore").write_text("/gsm8k-smollm2-135m\n")
    monkeypatch.chdir(root)
    write_views(root)
    return root


def test_dvc_plots_show_loads_every_plot_and_overlays_the_sets(project):
    done = dvc(project, "plots", "show", "--json")
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
    out = json.loads(done.stdout)
    assert not out.get("errors"), out["errors"]
    plots = out["data"]
    assert set(plots) == {"Training loss by set", "Accuracy by training set", "Tolerance to flawed traces"}
    assert all(len(renderers) == 1 for renderers in plots.values())    # one chart each, not one per file
    loss = plots["Training loss by set"][0]["content"]
    assert loss["encoding" if "encoding" in loss else "spec"]["encoding"]["color"]["field"] == "set"
    rows = loss["data"]["values"]
    trained = {p.stem for p in (project / "metrics" / "sft" / "loss" / "gsm8k-smollm2-135m").glob("*.csv")
               if len(p.read_text().splitlines()) > 1}
    assert {r["set"] for r in rows} == trained and len(trained) >= 4   # every trained set in the one chart
    html = dvc(project, "plots", "show", "-o", "plots_out")
    assert html.returncode == 0 and html.stderr.strip() == "", html.stderr


def test_dvc_metrics_show_lists_the_compared_numbers_on_one_screen(project):
    done = dvc(project, "metrics", "show")
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
    lines = done.stdout.rstrip("\n").splitlines()
    assert max(map(len, lines)) <= 200, max(map(len, lines))
    assert lines[0].split() == ["Path", "final_loss", "mean_train_loss", "n", "nll", "strict", "strict_hi",
                                "strict_lo"]
    assert len(lines) == 1 + 7 + 6 + 5      # evaluate (base + 6 sets), sft (6), distance (5 non-empty sets)


def test_dvc_metrics_diff_is_empty_when_only_timings_changed(project):
    """A rerun with unchanged parameters writes new timings and paths into the full records; the declared
    metrics (metrics/scores) are the same numbers, so `dvc metrics diff` against the commit says nothing."""
    from sot.io import read_json, write_json

    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run"], cwd=project,
                   check=True)
    for path in (project / "metrics" / "evaluate" / "gsm8k-smollm2-135m").glob("*.json"):
        record = read_json(path)
        record["grading_seconds"] = 123.4
        record.setdefault("generation", {})["seconds"] = 99.9
        write_json(path, record)
    write_views(project)
    done = dvc(project, "metrics", "diff")
    assert done.returncode == 0 and done.stdout.strip() == "" and done.stderr.strip() == "", done.stdout + done.stderr
    record = read_json(project / "metrics" / "evaluate" / "gsm8k-smollm2-135m" / "H.json")
    write_json(project / "metrics" / "evaluate" / "gsm8k-smollm2-135m" / "H.json", {**record, "strict": 0.3})
    write_views(project)
    # the accuracy itself is recomputed from the rows by the report, but the declared metric follows the record
    assert "strict" in dvc(project, "metrics", "diff").stdout


def test_scores_keep_only_the_compared_numbers():
    from sot.scores import scores_of

    record = {"n": 10, "strict": 0.1, "strict_lo": 0.02, "strict_hi": 0.4, "grading_seconds": 0.3,
              "backend": {"device": "cpu"}, "model": "x", "authors": 0.1}
    assert scores_of("evaluate", record) == {"n": 10, "strict": 0.1, "strict_lo": 0.02, "strict_hi": 0.4}
    assert scores_of("sft", {"final_loss": 0.5, "mean_train_loss": float("nan"), "train_seconds": 3}) == \
        {"final_loss": 0.5}
    assert scores_of("evaluate", {"skipped": True, "reason": "empty", "n": 0}) == {}


def test_dvc_yaml_declares_only_scores_as_metrics():
    """Every stage's declared metrics live under metrics/scores (sot.scores); the stages' full records are outputs."""
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    declared = [next(iter(m)) if isinstance(m, dict) else m for st in stages.values()
                for m in st.get("do", st).get("metrics", [])]
    assert declared and all(m.startswith("metrics/scores/") for m in declared), declared
