"""The benchmark plumbing: the real-architecture configs build at their published sizes, and results are appended
with the machine named."""
from __future__ import annotations

import pytest

from sot.benchmark import ARCH_CONFIGS, append_results, arch_config, markdown_table, random_model, timed

PUBLISHED_PARAMS = {"qwen2.5-1.5b": 1.54e9, "gemma-2-2b": 2.61e9}   # model cards: 1.54B, 2.61B (tied embeddings)


@pytest.mark.parametrize("arch", sorted(ARCH_CONFIGS))
def test_arch_configs_have_the_published_size(arch):
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(arch_config(arch))
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - PUBLISHED_PARAMS[arch]) / PUBLISHED_PARAMS[arch] < 0.01, n


def test_random_model_rejects_unknown_arch(tmp_path):
    with pytest.raises(ValueError, match="unknown architecture 'gpt-9'.*qwen2.5-1.5b"):
        random_model("gpt-9", tmp_path)


def test_timed_takes_the_median_after_warmup():
    calls = []
    out = timed(lambda: calls.append(1) or len(calls), repeats=3, warmup=2)
    assert len(calls) == 5 and out["result"] == 5 and len(out["times_s"]) == 3
    assert out["median_s"] == sorted(out["times_s"])[1]


def test_append_results_names_the_machine(tmp_path):
    path = tmp_path / "RESULTS.md"
    text = append_results("Demo", [{"a": 1.23456, "b": None}], notes="a note", path=path)
    body = path.read_text()
    assert body.startswith("# Benchmark results") and text in body
    assert "Machine: cpu " in text and "cores " in text and "| 1.235 |  |" in text and "a note" in text
    assert markdown_table([]) == "(no rows)"


def _bench(name):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stage_times_reads_papermill_durations_and_the_study_estimate_scales_only_evaluation(tmp_path):
    import json

    stage_times, estimate_study = _bench("stage_times"), _bench("estimate_study")
    runs = tmp_path / "runs"
    (runs / "09_evaluate").mkdir(parents=True)
    (runs / "02_generate").mkdir()

    def report(path, seconds):
        path.write_text(json.dumps({"metadata": {"papermill": {"duration": seconds, "start_time": "t"}}}))

    report(runs / "01_prepare.ipynb", 4.0)
    report(runs / "02_generate" / "mbpp.ipynb", 600.0)
    report(runs / "09_evaluate" / "mbpp-s-H.ipynb", 100.0)
    (runs / "09_evaluate" / "notes.ipynb").write_text(json.dumps({"metadata": {}}))   # no papermill: left out
    rows = stage_times.stage_times(runs)
    assert [(r["stage"], r["item"], r["seconds"]) for r in rows] == [
        ("01_prepare", "", 4.0), ("02_generate", "mbpp", 600.0), ("09_evaluate", "mbpp-s-H", 100.0)]
    assert "| **all** | 3 | **704** | |" in stage_times.markdown(rows)

    evals = {"mbpp-s-H": [{"n": 200, "generation": {"tokens": 20000, "seconds": 80.0}}]}
    small, big = estimate_study.estimate(rows, evals, [200, 1000])
    assert small["cpu_s"] == 704.0 and big["cpu_s"] == 604.0 + 500.0      # 0.5 s a problem, x 1000
    # GPU: the 20 s a run spends outside decoding stays; decoding becomes 100 tokens a problem at 515 tok/s
    assert abs(big["gpu_eval_s"] - 1000 * (0.1 + 100 / 515.0)) < 1e-6
    # one report per (task, student) group: its runs (here base and H, 40 s of decoding each) scale together
    group = [{**r, "item": "mbpp-s"} if r["stage"] == "09_evaluate" else r for r in rows]
    (tmp_path / "metrics" / "evaluate" / "mbpp-s").mkdir(parents=True)
    for name in ("base", "H"):
        (tmp_path / "metrics" / "evaluate" / "mbpp-s" / f"{name}.json").write_text(
            json.dumps({"n": 200, "generation": {"tokens": 10000, "seconds": 40.0}}))
    (tmp_path / "metrics" / "evaluate" / "mbpp-s" / "P.json").write_text(json.dumps({"skipped": True}))
    (tmp_path / "stage_times.json").write_text(json.dumps(group))
    times, grouped = estimate_study.load(tmp_path)
    assert sorted(grouped) == ["mbpp-s"] and len(grouped["mbpp-s"]) == 2        # the skipped run is left out
    assert estimate_study.estimate(times, grouped, [1000]) == [{**big, "evaluate_runs": 2}]
    with pytest.raises(SystemExit, match="without metrics"):
        estimate_study.estimate(rows, {}, [200])


def test_grader_gap_counts_disagreements_and_finds_prose_the_authors_sanitiser_keeps(tmp_path, capsys):
    grader_gap = _bench("grader_gap")
    code = "def f(x):\n    return x + 1\n"
    rows = [
        # prose around a fenced block: strict runs the block (correct), their sanitiser keeps the prose (no compile)
        {"id": "mbpp/1", "completion": f"Here is the function:\n```python\n{code}```\nIt adds one.",
         "correct": True, "authors_correct": False},
        {"id": "mbpp/2", "completion": code, "correct": True, "authors_correct": True},         # bare code: both
        {"id": "mbpp/3", "completion": f"```python\n{code}```", "correct": False, "authors_correct": True},
        {"id": "mbpp/4", "completion": "no idea", "correct": False, "authors_correct": False},
    ]
    assert grader_gap.has_prose(rows[0]["completion"]) and not grader_gap.has_prose(rows[2]["completion"])
    assert not grader_gap.has_prose(code)
    assert grader_gap.gap(rows, "mbpp") == {"n": 4, "both": 1, "strict only": 1, "authors only": 1,
                                            "strict only, not compiling for them": 1,
                                            "outputs with prose beside the code": 1}
    assert "strict only, not compiling" not in str(grader_gap.gap(rows, "gsm8k"))
    (tmp_path / "data" / "evaluate").mkdir(parents=True)
    from sot.io import write_jsonl
    write_jsonl(tmp_path / "data" / "evaluate" / "mbpp-s-H.jsonl", rows)
    assert grader_gap.main([str(tmp_path)]) == 0
    assert "| mbpp-s-H | 4 | 1 | 1 | 1 | 1 | 1 |" in capsys.readouterr().out
    write_jsonl(tmp_path / "data" / "evaluate" / "mbpp-t" / "G.jsonl", rows)          # a group's folder
    assert grader_gap.main([str(tmp_path)]) == 0
    assert "| mbpp-t-G | 4 | 1 | 1 | 1 | 1 | 1 |" in capsys.readouterr().out
    assert grader_gap.main([str(tmp_path / "nothing")]) == 1
