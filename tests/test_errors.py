"""What a user sees when something is wrong: where the data comes from and what a missing file means
(docs/data.md), params.yaml values checked before a stage starts, and a failed stage's last line in the terminal."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from sot import paths
from sot.io import DataError, MissingFileError
from sot.params_check import ParamsError, check, problems
from sot.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


# ---- the data folder ----------------------------------------------------------------------------------------

def test_sot_data_dir_wins_over_params_yaml_and_null_means_the_hub(monkeypatch, tmp_path):
    monkeypatch.setenv("SOT_DATA_DIR", str(tmp_path))
    root, source = paths.data_dir("../shared/data")
    assert root == tmp_path and f"$SOT_DATA_DIR={tmp_path}" in source and "over data_dir" in source
    monkeypatch.setenv("SOT_DATA_DIR", "")                     # empty: as if unset
    assert paths.data_dir("../shared/data") == (Path("../shared/data"), "data_dir: ../shared/data in params.yaml")
    monkeypatch.delenv("SOT_DATA_DIR")
    root, source = paths.data_dir(None)
    assert root is None and "Hugging Face hub" in source


def test_the_prepare_notebook_reads_the_folder_the_precedence_names():
    source = (ROOT / "notebooks" / "01_prepare.py").read_text()
    assert "data_folder(data_dir)" in source and 'load_split("train", root' in source


@pytest.mark.parametrize("task, layout", [("gsm8k", "gsm8k/{train,test}.jsonl"), ("mbpp", "mbpp/mbpp.jsonl"),
                                          ("math", "math/MATH/{train,test}/<subject>/<n>.json")])
def test_a_missing_raw_file_names_the_setting_the_layout_and_both_fixes(tmp_path, monkeypatch, task, layout):
    monkeypatch.delenv("SOT_DATA_DIR", raising=False)
    (tmp_path / "gsm8k").mkdir()
    with pytest.raises(MissingFileError) as e:
        get_task(task).load_split("train", tmp_path)
    message = str(e.value)
    assert "\n" not in message and "run the stage that writes it" not in message
    assert f"data_dir: {tmp_path}" in message and layout in message
    assert "point data_dir in params.yaml (or $SOT_DATA_DIR" in message and "set data_dir: null" in message
    monkeypatch.setenv("SOT_DATA_DIR", str(tmp_path))          # the environment chose it: the message says so
    with pytest.raises(MissingFileError, match=rf"comes from \$SOT_DATA_DIR={tmp_path}"):
        get_task(task).load_split("train")


def test_the_hub_failing_offline_says_why_the_hub_was_asked(monkeypatch):
    monkeypatch.delenv("SOT_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-sot-test-cache")   # nothing cached: the download is needed
    with pytest.raises(DataError) as e:
        get_task("gsm8k").load_split("test")
    message = str(e.value)
    assert "openai/gsm8k" in message and "data_dir is null" in message and "HF_HUB_OFFLINE=1" in message
    assert "gsm8k/{train,test}.jsonl" in message


# ---- params.yaml, checked up front ----------------------------------------------------------------------------

def test_the_committed_params_yaml_and_presets_pass():
    from sot import presets

    assert problems(PARAMS) == []
    for preset in sorted((ROOT / "presets").glob("*.yaml")):
        assert problems(presets.apply(presets.load(str(preset)), PARAMS)) == [], preset.name


@pytest.mark.parametrize("edit, expected", [
    (lambda p: p["generate"].update(k=-1), "generate.k in params.yaml: must be >= 1, got -1"),
    (lambda p: p.update(tasks=["gsm8kk"]), "tasks in params.yaml: unknown task 'gsm8kk'; use gsm8k, math, countdown, mbpp"),
    (lambda p: p.update(sets=["H", "F150"]), "sets in params.yaml: unknown set 'F150'"),
    (lambda p: p["sft"].update(method="qlora"), "sft.method in params.yaml: must be one of lora, full, got 'qlora'"),
    (lambda p: p.update(teacher="gpt"), "teacher in params.yaml: 'gpt' is not a key of models"),
    (lambda p: p["generate"].update(top_p=1.5), "generate.top_p in params.yaml: must be between"),
    (lambda p: p["prepare"].update(n_train="12"), "prepare.n_train in params.yaml: must be an integer (or null), got '12'"),
])
def test_a_bad_value_is_named_by_its_params_yaml_key(edit, expected):
    params = yaml.safe_load(yaml.safe_dump(PARAMS))
    edit(params)
    found = problems(params)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_only_the_keys_a_stage_reads_are_checked():
    params = yaml.safe_load(yaml.safe_dump(PARAMS))
    params["sft"]["method"] = "qlora"
    check(params, {"generate", "task", "tasks"})            # generate does not read sft
    with pytest.raises(ParamsError, match=r"^sft\.method in params\.yaml"):
        check(params, {"sft"})


# ---- the terminal -----------------------------------------------------------------------------------------------

def tiny_project(root: Path, params: dict, body: str) -> Path:
    (root / "notebooks").mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "notebooks" / "02_generate.py").write_text(textwrap.dedent('''\
        # %% [markdown]
        # # 2 · Generate (a stand-in)

        # %% tags=["parameters"]
        task = 'gsm8k'
        k = 4

        # %%
        ''') + textwrap.dedent(body))
    return root


def run_stage(root: Path, *args: str, verbose: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SOT_NB_VERBOSE"}
    if verbose:
        env["SOT_NB_VERBOSE"] = "1"
    return subprocess.run([sys.executable, "-m", "sot.nb", "run", "02_generate", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_typo_in_params_yaml_stops_the_stage_with_one_line_naming_the_key(tmp_path):
    params = {"tasks": ["gsm8k"], "generate": {"k": -1}}
    root = tiny_project(tmp_path / "p", params, 'print("started")\n')
    done = run_stage(root)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and "started" not in done.stdout + done.stderr
    assert lines[-1] == "error: 02_generate: generate.k in params.yaml: must be >= 1, got -1"
    assert len(lines) <= 3 and "Traceback" not in done.stderr, done.stderr


def test_a_failing_cell_ends_with_its_error_in_one_line_and_keeps_the_traceback_in_the_report(tmp_path):
    root = tiny_project(tmp_path / "p", {"tasks": ["gsm8k"], "generate": {"k": 2}}, '''\
        print("working on", task)
        raise ValueError(f"generate: nothing to do for {task}; set generate.k in params.yaml\\nsecond line")
        ''')
    done = run_stage(root)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1
    assert lines[-1] == ("error: 02_generate: ValueError: generate: nothing to do for gsm8k; set generate.k in "
                         "params.yaml"), done.stderr
    assert not any(line.startswith(("Executing Cell", "Ending Cell", "Executing notebook")) for line in lines)
    assert "Traceback" not in done.stderr and "PapermillExecutionError" not in done.stderr
    failed = root / "runs" / ".02_generate.failed.html"
    assert str(failed.relative_to(root)) in done.stderr or str(failed) in done.stderr
    assert "Traceback" in failed.read_text() or "ValueError" in failed.read_text()
    chatty = run_stage(root, verbose=True)                  # SOT_NB_VERBOSE=1: papermill's cell log is back
    assert "Executing Cell" in chatty.stderr


def test_known_harmless_library_warnings_are_dropped_and_useful_ones_kept():
    import warnings

    from sot.nb import quiet_known_warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_known_warnings()
        warnings.warn("`gradient_checkpointing` is deprecated and will be removed in v6. Use "
                      "`activation_checkpointing` instead.", FutureWarning)
        warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6. Use "
                      "`is_activation_checkpointing` instead.", FutureWarning)
        warnings.warn("sft G: 2 of 8 examples longer than max_length=512 were truncated (trained without their end "
                      "token)", UserWarning)
        warnings.warn("something else is deprecated", FutureWarning)
    assert [str(w.message)[:20] for w in caught] == ["sft G: 2 of 8 exampl", "something else is de"]
