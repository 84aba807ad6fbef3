"""sot.checkpoint_sweep: the headline of a set is the checkpoint its rule (sft.checkpoint) picks, never the one with
the best test accuracy; swept checkpoints are reported beside it; without a sweep nothing changes."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sot import checkpoint_sweep as cs

FIXTURE = Path(__file__).parent / "fixtures" / "pipeline"
SETS = ["H", "G", "W", "P", "F50", "F100"]
GROUP = "gsm8k-smollm2-135m"


def test_select_follows_the_rule_whatever_the_test_accuracy():
    own = {"name": "G", "step": 10, "val_loss": 1.20, "swept": False, "strict": 0.10}
    early = {"name": "G@4", "step": 4, "val_loss": 1.50, "swept": True, "strict": 0.90}     # best on the test set
    late = {"name": "G@10", "step": 10, "val_loss": 1.20, "swept": True, "strict": 0.80}    # same point as own
    unscored = {"name": "G@6", "step": 6, "val_loss": None, "swept": True, "strict": 1.00}
    every = [early, unscored, late, own]
    assert cs.select(every, "final")["name"] == "G"                 # last step; the tie goes to the set's own
    assert cs.select(every, "best_val")["name"] == "G"              # lowest validation loss; the tie to its own
    best_inside = {"name": "G", "step": 6, "val_loss": 1.00, "swept": False, "strict": 0.0}
    assert cs.select([early, late, best_inside], "best_val")["name"] == "G"
    assert cs.select([early, late, best_inside], "final")["name"] == "G@10"   # the rule, not what was saved as own
    # swapping the accuracies never changes the pick
    flipped = [{**c, "strict": 1 - c["strict"]} for c in every]
    assert [cs.select(flipped, r)["name"] for r in ("final", "best_val")] == ["G", "G"]
    with pytest.raises(ValueError, match="no checkpoint .* has a validation loss.*eval_fraction"):
        cs.select([unscored], "best_val")
    with pytest.raises(ValueError, match="unknown rule 'test_acc'"):
        cs.select(every, "test_acc")


def test_names():
    assert cs.swept_name("F50", 200) == "F50@200" and cs.parse("F50@200") == ("F50", 200) and cs.parse("H") == ("H", None)
    with pytest.raises(ValueError, match="<set>@<step>"):
        cs.parse("H@last")


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    shutil.copytree(FIXTURE, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _sweep_h(run_dir, rule, own_step, own_val, swept):
    """Give the fixture's H a checkpoint record and swept checkpoints whose outputs all grade correct."""
    metrics, data = run_dir / "metrics" / "evaluate" / GROUP, run_dir / "data" / "evaluate" / GROUP
    h = json.loads((metrics / "H.json").read_text())
    (metrics / "H.json").write_text(json.dumps({**h, "checkpoint": {"rule": rule, "step": own_step,
                                                                      "val_loss": own_val}}))
    rows = [json.loads(line) for line in (data / "H.jsonl").read_text().splitlines()]
    for step, val in swept.items():
        name = f"H@{step}"
        (data / f"{name}.jsonl").write_text("".join(json.dumps({**r, "correct": True, "authors_correct": True,
                                                                "extracted": "x", "authors_extracted": "x"}) + "\n"
                                                    for r in rows))
        (metrics / f"{name}.json").write_text(json.dumps({**h, "set": name, "strict": 1.0, "checkpoint": {
            "rule": "sweep", "step": step, "val_loss": val}}))


def _table(run_dir):
    from sot import report
    acc, trend = report.accuracy_tables(["gsm8k"], ["smollm2-135m"], SETS, n_perm=100, seed=0)
    return acc, report.write_table(acc, trend, [], sweep=cs.markdown(["gsm8k"], ["smollm2-135m"], SETS))


def test_without_a_sweep_the_results_are_unchanged(run_dir):
    from sot import report
    acc, trend = report.accuracy_tables(["gsm8k"], ["smollm2-135m"], SETS, n_perm=100, seed=0)
    before = report.write_table(acc, trend, [])
    assert cs.markdown(["gsm8k"], ["smollm2-135m"], SETS) == ""
    assert all(cs.headline("gsm8k", "smollm2-135m", s) == s for s in ["base", "H", "W", "P", "F50", "F100"])
    assert _table(run_dir)[1] == before


@pytest.mark.parametrize("rule", ["final", "best_val"])
def test_the_headline_is_the_rules_pick_and_the_swept_checkpoints_are_listed(run_dir, rule):
    from sot import report
    acc0, trend0 = report.accuracy_tables(["gsm8k"], ["smollm2-135m"], SETS, n_perm=100, seed=0)
    _sweep_h(run_dir, rule, 8, 1.10, {2: 1.30, 4: None, 8: 1.10})   # every swept one solves all 10 problems
    acc, table = _table(run_dir)
    assert acc.equals(acc0)                                          # H's row is still H's own model: 1 of 10
    h_row = next(l for l in table.splitlines() if l.startswith("| gsm8k | smollm2-135m | H |"))
    assert "| 10.0 [1.8, 40.4] |" in h_row
    assert f"- gsm8k · smollm2-135m · H: {rule} ({cs.RULES[rule]}) picked H (step 8, validation loss 1.1000)" in table
    swept = {l.split("|")[4].strip(): l for l in table.splitlines() if l.startswith("| gsm8k | smollm2-135m | H | H")}
    assert list(swept) == ["H", "H@2", "H@4", "H@8"]
    assert swept["H"].rstrip().endswith(f"| yes: {rule} |") and "| 10.0 [1.8, 40.4] |" in swept["H"]
    assert all("| 100.0 [72.2, 100.0] |" in swept[n] and n != "H" and swept[n].rstrip().endswith("|  |")
               for n in ("H@2", "H@4", "H@8"))
    assert "never by test accuracy" in table


def test_stale_swept_files_are_found(run_dir):
    _sweep_h(run_dir, "final", 8, None, {2: None, 4: None})
    stale = cs.stale("gsm8k", "smollm2-135m", "H", keep=["H@2"])
    assert sorted(p.as_posix() for p in stale) == [
        f"data/evaluate/{GROUP}/H@4.jsonl", f"metrics/evaluate/{GROUP}/H@4.json"]
    assert cs.stale("gsm8k", "smollm2-135m", "H", keep=["H@2", "H@4"]) == []


def test_swept_folders_come_from_the_train_summary(tmp_path):
    model = tmp_path / "G"
    (model / "steps" / "2").mkdir(parents=True)
    (model / "train_summary.json").write_text(json.dumps({"sweep": {"steps": [2, 4], "folder": "steps"}}))
    (model / "steps" / "2" / "train_summary.json").write_text(json.dumps({"checkpoint": {"rule": "sweep", "step": 2}}))
    with pytest.raises(FileNotFoundError, match="step 4 .*missing.*dvc repro sft"):
        cs.swept_folders(model)
    (model / "steps" / "4").mkdir()
    (model / "steps" / "4" / "train_summary.json").write_text("{}")
    assert cs.swept_folders(model) == {"G@2": model / "steps" / "2", "G@4": model / "steps" / "4"}
    assert cs.checkpoint_of(model / "steps" / "2") == {"rule": "sweep", "step": 2}
    (model / "train_summary.json").write_text(json.dumps({"checkpoint": {"rule": "final", "step": 4}}))
    assert cs.swept_folders(model) == {}


def test_evaluate_and_figures_notebooks_report_every_swept_checkpoint(tmp_path, tiny_model):
    """09_evaluate on a set trained with a sweep: the set's own files as without one, plus <set>@<step>; 10_figures'
    results table keeps the set's own model as the headline and lists the swept checkpoints under it."""
    import yaml

    from sot import nb
    from sot.io import write_jsonl
    from sot.prompts import render
    from sot.sft import SFTConfig, train
    from sot.tasks import get_task

    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / "notebooks", tmp_path / "notebooks", ignore=shutil.ignore_patterns("*.ipynb"))
    shutil.copy(root / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copytree(FIXTURE / "metrics" / "classify", tmp_path / "metrics" / "classify")   # for the figures' other tables
    params = nb.load_params(root / "params.yaml")
    params.update(tasks=["gsm8k"], students=["tiny"], sets=["H"], models={"tiny": {"ref": tiny_model, "style": "chat"}})
    params["evaluate"].update(max_new_tokens=8, backend="transformers")
    params["figures"].update(formats=["png"], dpi=30, n_perm=50)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    task = get_task("gsm8k")
    problems = [task.from_record({"question": f"What is {i} + 1?", "answer": f"{i}+1={i + 1}\n#### {i + 1}"})
                for i in range(2)]
    problems = [type(p)(**{**p.to_dict(), "id": f"gsm8k/test/{i}"}) for i, p in enumerate(problems)]
    write_jsonl(tmp_path / "data" / "prepare" / "gsm8k" / "test.jsonl", [p.to_dict() for p in problems])
    records = [{"id": f"p{i}", "prompt": f"What is {i} + 1?", "completion": f" The answer is {i + 1}."} for i in range(4)]
    cfg = SFTConfig(model=tiny_model, style="chat", lr=1e-3, budget="steps", budget_value=3, per_device_batch_size=2,
                    sweep=[1, 2])
    train(records, cfg, tmp_path / "data" / "sft" / "gsm8k-tiny" / "H", render=render)
    stale = tmp_path / "metrics" / "evaluate" / "gsm8k-tiny" / "H@7.json"     # from an earlier sweep
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")

    nb.run("09_evaluate", {"task": "gsm8k", "student": "tiny"}, output=tmp_path / "runs" / "e.ipynb", root=tmp_path)
    names = sorted(p.stem for p in (tmp_path / "data" / "evaluate" / "gsm8k-tiny").iterdir())
    assert names == ["H", "H@1", "H@2", "base"] and not stale.exists()
    swept = json.loads((tmp_path / "metrics" / "evaluate" / "gsm8k-tiny" / "H@1.json").read_text())
    assert swept["checkpoint"]["rule"] == "sweep" and swept["adapter"].endswith("H/steps/1")
    own = json.loads((tmp_path / "metrics" / "evaluate" / "gsm8k-tiny" / "H.json").read_text())
    assert own["checkpoint"]["rule"] == "final" and own["checkpoint"]["step"] == 3
    report = (tmp_path / "runs" / "e.html").read_text()
    assert "Swept checkpoints and the headline" in report and "yes (final)" in report

    nb.run("10_figures", {}, output=tmp_path / "runs" / "f.ipynb", root=tmp_path)
    results = (tmp_path / "figures" / "results.md").read_text()
    assert "- gsm8k · tiny · H: final (the last step) picked H (step 3)" in results
    assert [l.split("|")[4].strip() for l in results.splitlines() if l.startswith("| gsm8k | tiny | H | H")] == [
        "H", "H@1", "H@2"]
