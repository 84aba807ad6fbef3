"""The downstream stages' library parts on fixtures: sot.report (the results table and the data of the figures)
on a copy of one demo run's metrics (GSM8K, SmolLM2-135M), notebooks/10_figures.py executed on it (every figure
drawn and shown), and sot.sft.stage (an empty training set; the torchrun launch)."""
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


def results_md(tasks=("gsm8k",), n_perm=500, seed=0, teacher_student=None) -> str:
    """What notebooks/10_figures.py does for the table: sot.report's tables, written to figures/."""
    from sot import report

    acc, trend = report.accuracy_tables(list(tasks), ["smollm2-135m"], SETS, n_perm=n_perm, seed=seed)
    return report.write_table(acc, trend, report.skipped_runs(list(tasks), ["smollm2-135m"], SETS),
                              teacher_student=teacher_student)


def test_report_writes_the_results_table_and_the_data_of_the_plots(in_run_dir):
    table = results_md()
    out = in_run_dir / "figures"
    results = (out / "results.md").read_text()
    assert results == table or table in results
    assert "95% Wilson score intervals" in results and "Tango score intervals" in results
    assert "Holm-adjusted over all tests of each task × student panel" in results
    assert ("| task | student | set | n | strict acc % [95% CI] | authors acc % [95% CI] (n_parsed) "
            "| Δ vs H, points [95% CI] | p vs H: Holm (raw) | Δ vs F0, points [95% CI] | p vs F0: Holm (raw) |") in results
    rows = {line.split("|")[3].strip(): line for line in results.split("Tolerance trend")[0].splitlines()
            if line.startswith("| gsm8k")}
    assert set(rows) == {"base (no fine-tuning)", "H", "W", "P", "F50", "F100"}
    # the fixture's evaluation (hand-checked against data/evaluate): H solved 1 of 10 problems (gsm8k/test/285),
    # P another one (563), W, F50, F100 and the base student none; every answer parsed for the authors' rule
    assert rows["H"] == ("| gsm8k | smollm2-135m | H | 10 | 10.0 [1.8, 40.4] | 10.0 [1.8, 40.4] (10) | ref | ref "
                         "| ref (note 1) | ref |")
    # W: 0 of 10 is [0, 27.8], never [0, 0]; one discordant problem: Tango [-40.4, +20.5], exact McNemar p = 1
    assert rows["W"] == ("| gsm8k | smollm2-135m | W | 10 | 0.0 [0.0, 27.8] | 0.0 [0.0, 27.8] (10) "
                         "| -10.0 [-40.4, +20.5] | 1.000 (1.000) |  |  |")
    assert "| +0.0 [-34.2, +34.2] | 1.000 (1.000) |" in rows["P"]          # 1 vs 1 discordant
    # no F0 run: the mixtures are made from H (metrics/mix), so F50 vs F0 is F50 vs H, counted once by Holm
    assert rows["F50"].endswith("| -10.0 [-40.4, +20.5] | 1.000 (1.000) | -10.0 [-40.4, +20.5] | 1.000 (1.000) |")
    assert "Note 1: gsm8k · smollm2-135m: F0 was not evaluated; the mixtures are made from H" in results
    # the trend: H solved problem 285 only, so one informative problem whose permutation p is 2/3
    trend = next(l for l in results.splitlines() if l.startswith("| gsm8k | smollm2-135m | H | 0,50,100"))
    assert trend.startswith("| gsm8k | smollm2-135m | H | 0,50,100 | 10 | -10.0 | 1.000 (0.6") and "| 500 |" in trend
    csv = (out / "trend.csv").read_text().splitlines()
    assert csv[0].startswith("task,student,f0,n,slope,z,p_asymptotic,p,p_holm,n_perm,seed") and ",500,0," in csv[1]
    accuracy = (out / "accuracy.csv").read_text().splitlines()[0]
    assert "authors_lo" in accuracy and "p_vs_H_holm" in accuracy and "delta_vs_F0" in accuracy
    assert "gsm8k-smollm2-135m-G: data/sets/gsm8k/G.jsonl is empty" in results   # skipped runs are listed


def test_report_passes_seed_and_n_perm_to_the_trend_test(in_run_dir):
    from sot import report

    _, t1 = report.accuracy_tables(["gsm8k"], ["smollm2-135m"], SETS, n_perm=300, seed=1)
    _, t2 = report.accuracy_tables(["gsm8k"], ["smollm2-135m"], SETS, n_perm=300, seed=2)
    assert (t1.n_perm.iloc[0], t1.seed.iloc[0], t2.seed.iloc[0]) == (300, 1, 2)
    assert t1.p.iloc[0] != t2.p.iloc[0] and abs(t1.p.iloc[0] - 2 / 3) < 0.1   # Monte Carlo, seeded


def _rewrite(path, edit):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(r) + "\n" for r in edit(rows)))


def test_report_explains_a_set_on_other_problems_and_makes_the_rest(in_run_dir):
    from sot import plots, report

    _rewrite(in_run_dir / "data" / "evaluate" / "gsm8k-smollm2-135m" / "F50.jsonl", lambda rows: rows[:-1])
    table = results_md(n_perm=100)
    f50 = next(l for l in table.splitlines() if l.startswith("| gsm8k | smollm2-135m | F50 |"))
    assert f50.startswith("| gsm8k | smollm2-135m | F50 | 9 | 0.0 [0.0, 29.9] |")
    assert "| — (note 2) | — | — (note 2) | — |" in f50
    assert ("Note 2: gsm8k · smollm2-135m · F50 vs H: F50 and H were evaluated on different problems: 1 of H's ids "
            "missing (e.g. ['gsm8k/test/1309'])") in table
    assert "| -10.0 [-40.4, +20.5] | 1.000 (1.000) | -10.0 [-40.4, +20.5] |" in table   # F100 still compared
    assert "| gsm8k | smollm2-135m | H | 0,100 |" in table and "Left out of the trend for gsm8k · smollm2-135m: " \
        "F50: evaluated on other problems than H" in table
    acc, trend = report.accuracy_tables(["gsm8k"], ["smollm2-135m"], SETS, n_perm=100, seed=0)
    plots.set_output(["png"], 40)
    plots.plot_accuracy_by_set(acc, in_run_dir / "figures" / "accuracy_by_set")
    plots.plot_tolerance(acc, in_run_dir / "figures" / "tolerance", trend=trend, f0_set=report.mixture_base(["gsm8k"]))
    for name in ("accuracy_by_set", "tolerance"):
        assert (in_run_dir / "figures" / f"{name}.png").stat().st_size > 1000


def test_report_rejects_non_boolean_and_old_rows(in_run_dir):
    from sot.io import DataError

    path = in_run_dir / "data" / "evaluate" / "gsm8k-smollm2-135m" / "W.jsonl"
    original = path.read_text()
    _rewrite(path, lambda rows: rows[:3] + [dict(rows[3], correct="False")] + rows[4:])
    with pytest.raises(DataError, match=r"gsm8k-smollm2-135m/W.jsonl:4: field 'correct' is 'False' \(str\)"):
        results_md()
    path.write_text(original)
    _rewrite(path, lambda rows: [{k: v for k, v in r.items() if not k.startswith("authors_")} for r in rows])
    with pytest.raises(DataError, match=r"W.jsonl:1: no field 'authors_correct'.*rerun `dvc repro evaluate`"):
        results_md()
    path.write_text(original)
    (in_run_dir / "data" / "evaluate" / "gsm8k-smollm2-135m" / "P.jsonl").unlink()
    with pytest.raises(DataError, match="P.jsonl: no per-problem rows"):
        results_md()


def test_report_fails_loudly_without_metrics(tmp_path, monkeypatch):
    from sot import report

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no evaluation metrics under metrics/evaluate .*run `dvc repro"):
        report.accuracy_tables(["gsm8k"], ["smollm2-135m"], SETS)


def test_teacher_and_student_accuracy_on_the_training_problems_go_beside_the_table(in_run_dir):
    from sot import report

    path = in_run_dir / "metrics" / "distance" / "gsm8k-smollm2-135m.json"
    distance = json.loads(path.read_text())
    distance["self_accuracy"] = {"n": 12, "n_correct": 3, "accuracy": 0.25, "lo": 0.089, "hi": 0.532}
    path.write_text(json.dumps(distance))
    both = report.teacher_student_table(["gsm8k", "math"], ["smollm2-135m"])
    assert list(both.task) == ["gsm8k", "math"]          # math: no metrics on either side
    gsm8k = both.iloc[0]
    classify = json.loads((in_run_dir / "metrics" / "classify" / "gsm8k.json").read_text())
    assert (gsm8k.teacher_samples, gsm8k.teacher_correct_samples) == (classify["n_samples"],
                                                                      classify["n_correct_samples"])
    assert (gsm8k.student_correct, gsm8k.student_problems, gsm8k.student_accuracy) == (3, 12, 0.25)
    table = results_md(teacher_student=both)
    assert "Teacher and base student on the same training problems" in table
    assert (f"| gsm8k | smollm2-135m | {100 * classify['n_correct_samples'] / classify['n_samples']:.1f} "
            f"({classify['n_correct_samples']}/{classify['n_samples']}) |") in table
    assert "| 25.0 [8.9, 53.2] (3/12) |" in table and "| math | smollm2-135m | — | — | — |" in table
    assert table in (in_run_dir / "figures" / "results.md").read_text()


def test_step_validity_takes_each_set_once_from_the_stage_that_made_it(in_run_dir):
    from sot import report

    path = in_run_dir / "metrics" / "paraphrase" / "gsm8k.json"
    paraphrase = json.loads(path.read_text())
    paraphrase.setdefault("step_validity", {})["H"] = {"frac_valid": 0.5, "n_steps": 2}   # paraphrase reports H too
    path.write_text(json.dumps(paraphrase))
    steps = report.steps_table(["gsm8k"])
    assert not steps.duplicated(["task", "set"]).any()
    classify = json.loads((in_run_dir / "metrics" / "classify" / "gsm8k.json").read_text())["step_validity"]["H"]
    assert steps.set_index("set").loc["H", "n_steps"] == classify["n_steps"]


def test_figures_notebook_draws_and_shows_every_figure_and_the_table(in_run_dir):
    """notebooks/10_figures.py executed (papermill) on the fixture: each figure is written in the chosen format
    only and shown in its own cell, and the results table is shown."""
    import nbformat

    from sot import nb

    root = Path(__file__).resolve().parents[1]
    (in_run_dir / "notebooks").mkdir()
    shutil.copy(root / "notebooks" / "10_figures.py", in_run_dir / "notebooks")
    shutil.copy(root / "params.yaml", in_run_dir)
    (in_run_dir / "dvc.yaml").write_text("stages: {}\n")
    out = nb.run("10_figures", {"tasks": ["gsm8k"], "formats": ["png"], "dpi": 40, "n_perm": 200, "seed": 0},
                 root=in_run_dir)
    figures = in_run_dir / "figures"
    for name in ("accuracy_by_set", "tolerance", "loss_curves", "distance_vs_accuracy", "step_validity"):
        assert (figures / f"{name}.png").stat().st_size > 1000, name
    assert not list(figures.glob("*.pdf"))                          # formats is honoured
    book = nbformat.read(out, as_version=4)
    images = [c for c in book.cells if c.cell_type == "code"
              and any("image/png" in o.get("data", {}) for o in c.get("outputs", []))]
    assert len(images) == 5 and all(c.source.count("show(plots.plot_") == 1 for c in images)
    shown = "".join(o["data"].get("text/markdown", "") for c in book.cells if c.cell_type == "code"
                    for o in c.get("outputs", []) if "data" in o)
    assert "| gsm8k | smollm2-135m | H | 10 |" in shown and "Teacher and base student" in shown
    assert shown.strip() == (figures / "results.md").read_text().strip()


@pytest.mark.parametrize("set_name, hint", [("G", "answered no training problem correctly"),
                                            ("W", "w_policy 'any'"), ("P", "paraphrase was dropped"),
                                            ("F50", "corrupt.base")])
def test_sft_stage_skips_an_empty_set_and_says_why(tmp_path, monkeypatch, set_name, hint):
    from sot.sft import stage as sft

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "sets" / "gsm8k").mkdir(parents=True)
    (tmp_path / "data" / "sets" / "gsm8k" / f"{set_name}.jsonl").write_text("")
    report = sft.run("gsm8k", "tiny", set_name, models={"tiny": {"ref": "unused", "style": "plain"}}, seed=0,
                     options={})
    assert report["skipped"] and hint in report["reason"] and "is empty (0 records)" in report["reason"]
    saved = json.loads((tmp_path / "metrics" / "sft" / "gsm8k-tiny" / f"{set_name}.json").read_text())
    assert saved == report
    assert (tmp_path / "data" / "sft" / "gsm8k-tiny" / set_name / sft.SKIPPED).exists()


def test_an_empty_balanced_set_says_no_problem_had_both_and_how_many_were_cut(tmp_path, monkeypatch):
    """paper-smoke's GSM8K: the teacher was right on 1 problem, but 21 of 24 samples hit the length limit, so no
    problem had both a G and a W and balanced classification emptied every set; "answered nothing" would mislead."""
    from sot.io import write_json
    from sot.sft import stage as sft

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "sets" / "gsm8k").mkdir(parents=True)
    (tmp_path / "data" / "sets" / "gsm8k" / "G.jsonl").write_text("")
    write_json(tmp_path / "metrics" / "classify" / "gsm8k.json",
               {"balanced": True, "n_problems": 6, "n_problems_with_both": 0, "n_problems_with_G": 1,
                "n_problems_with_W": 2, "n_correct_samples": 3, "n_samples": 24, "truncated": {"n_samples": 21}})
    reason = sft.run("gsm8k", "tiny", "G", models={"tiny": {"ref": "unused", "style": "plain"}}, seed=0,
                     options={})["reason"]
    assert "0 of 6 (1 with a G, 2 with a W; 3 of 24 samples correct, 21 cut by generate.max_new_tokens" in reason
    assert "answered no training problem" not in reason and "classify.balanced: false" in reason


def test_sft_stage_with_two_processes_runs_under_torchrun(tmp_path, monkeypatch, tiny_model):
    """`sft.num_processes: 2`: the stage launches itself with torchrun (here 2 CPU processes, gloo),
    both ranks train on their share of each batch, rank 0 writes the model and the metrics."""
    import yaml

    from sot.io import read_json
    from sot.sft import stage as sft

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["models"]["tiny"] = {"ref": tiny_model, "style": "plain"}
    params["sft"].update(budget_value=3, batch_size=1, grad_accum=1, max_length=64, num_processes=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "notebooks").mkdir()
    shutil.copy(root / "notebooks" / "08_sft.py", tmp_path / "notebooks")   # the launched processes read its parameters
    sets = tmp_path / "data" / "sets" / "gsm8k"
    sets.mkdir(parents=True)
    records = [{"id": f"p{i}", "task": "gsm8k", "category": "H", "prompt": f"What is {i} + {i}?",
                "completion": f" {i} + {i} = {2 * i}. The answer is {2 * i}."} for i in range(8)]
    (sets / "H.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    report = sft.run("gsm8k", "tiny", "H", models=params["models"], seed=0, options=params["sft"])
    saved = read_json(tmp_path / "metrics" / "sft" / "gsm8k-tiny" / "H.json")
    assert report["world_size"] == saved["world_size"] == 2 and saved["backend"] == "trl"
    assert saved["steps"] == 3 and saved["plan"]["examples_per_step"] == 2      # 1 per process x 2 processes
    assert (tmp_path / "data" / "sft" / "gsm8k-tiny" / "H" / "adapter_config.json").exists()
    loss = (tmp_path / "metrics" / "sft" / "loss" / "gsm8k-tiny" / "H.csv").read_text().splitlines()
    assert loss[0].startswith("step,") and len(loss) == 1 + 3


def test_an_f_set_short_of_flawed_traces_is_named_under_the_table(in_run_dir):
    """paper-smoke's MBPP F100: lm_rewrite failed on 2 of 3 G traces, so F100 held 1 flawed trace of 3."""
    from sot import report
    from sot.io import read_json, write_json

    path = in_run_dir / "metrics" / "mix" / "gsm8k-F100.json"
    write_json(path, {**read_json(path), "size": 3, "n_flawed": 1, "target_flawed": 3, "shortfall": 2})
    assert report.mixture_shortfalls(["gsm8k"], SETS) == [
        "gsm8k F100: 1 of 3 traces flawed (the fraction asks for 3; 2 base traces have no flawed version: "
        "metrics/corrupt/gsm8k.json)"]
    acc, trend = report.accuracy_tables(["gsm8k"], ["smollm2-135m"], SETS, n_perm=100)
    table = report.write_table(acc, trend, [], shortfalls=report.mixture_shortfalls(["gsm8k"], SETS))
    assert "F sets with fewer flawed traces than their name says:\n- gsm8k F100: 1 of 3" in table
    assert report.mixture_shortfalls(["gsm8k"], ["F50"]) == []
