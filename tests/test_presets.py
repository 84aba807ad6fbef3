"""Presets (sot.presets): checked against params.yaml, passed to `dvc exp run -S` intact, and `make paper`'s plan.

The plan test runs the Makefile's own command line with --dry in a temporary clone of the working tree
(uncommitted files included), so the main checkout's DVC state is never touched.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sot import presets
from sot.nb import load_params

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "presets" / "paper.yaml"
PARAMS = load_params(ROOT / "params.yaml")


def test_paper_preset_names_only_existing_parameters_and_gives_each_role_its_style():
    preset, merged = presets.prepare(str(PAPER), str(ROOT / "params.yaml"))
    assert preset["teacher"] == "gemma-2-27b-it" and len(preset["students"]) == 3
    from sot.styles import check_params
    assert check_params(merged) == {"gemma-2-27b-it": "chat", "qwen2.5-1.5b": "authors", "gemma-2-2b": "authors",
                                    "llama-3.1-8b": "authors"}
    assert merged["evaluate"]["max_new_tokens"] == "authors"   # the authors' limit of each task (sot.authors_style)


def test_preset_with_unknown_key_fails():
    with pytest.raises(KeyError, match="sft.nope"):
        presets.check({"sft.nope": 1}, PARAMS, "p.yaml")
    with pytest.raises(KeyError, match="whole mapping"):
        presets.check({"models.qwen2.5-1.5b.style": "plain"}, PARAMS, "p.yaml")


def test_a_preset_whose_model_has_no_style_is_refused_before_dvc(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"models": {"m": "org/m"}, "teacher": "m", "students": ["m"], "seed": 1}))
    (tmp_path / "p.yaml").write_text("seed: 2\n")
    with pytest.raises(ValueError, match=r"params.yaml \+ .*p.yaml \(used by generate, paraphrase, distance, sft, "
                                         r"evaluate\): models\.m is 'org/m'"):
        presets.prepare(str(tmp_path / "p.yaml"), str(tmp_path / "params.yaml"))


def test_values_are_written_in_hydra_grammar_one_argument_each():
    args = presets.dvc_args({"sft.lr": 1e-6, "tasks": ["gsm8k", "math"], "prepare.n_train": None,
                             "models": {"qwen2.5-1.5b": {"ref": "Qwen/Qwen2.5-1.5B", "style": "plain"}}})
    assert args == ["-S", "sft.lr=1e-06", "-S", 'tasks=["gsm8k", "math"]', "-S", "prepare.n_train=null",
                    "-S", '++models={qwen2.5-1.5b: {ref: "Qwen/Qwen2.5-1.5B", style: "plain"}}']
    assert presets.hydra_value('say "hi" \\') == r'"say \"hi\" \\"'
    with pytest.raises(ValueError, match="interpolation"):
        presets.hydra_value("${x}")
    for key in ("a b", "Inf", "NULL", "true", "9lives"):
        with pytest.raises(ValueError, match=f"key '{key}'"):
            presets.hydra_value({key: 1})


def test_cli_args_print_a_shell_line_that_splits_back_into_the_same_arguments(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert presets.main(["args", "presets/paper.yaml"]) == 0
    printed = shlex.split(capsys.readouterr().out)
    assert printed == ["dvc", "exp", "run", *presets.dvc_args(presets.load(str(PAPER)), "presets/paper.yaml")]


def test_cli_reports_a_bad_preset_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    (tmp_path / "bad.yaml").write_text("sft.nope: 1\n")
    assert presets.main(["run", str(tmp_path / "bad.yaml"), "--dry"]) == 2
    assert capsys.readouterr().err.startswith(f"sot.presets: {tmp_path / 'bad.yaml'}: 'sft.nope' is not a parameter")


def test_dry_run_plans_every_stage():
    cmd = presets.dvc_command({"seed": 1}, dry=True)
    assert cmd[:7] == [sys.executable, "-m", "dvc", "exp", "run", "--dry", "--force"] and cmd[7:] == ["-S", "seed=1"]
    assert "--dry" not in presets.dvc_command({"seed": 1}) and "--force" not in presets.dvc_command({"seed": 1})


def _typed(v):
    """A value with its types spelled out (True == 1 and 1 == 1.0 in Python; not here)."""
    if isinstance(v, dict):
        return {k: _typed(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_typed(x) for x in v]
    return (type(v).__name__, v)


# Control characters aside (DVC's YAML writer folds \x85 and the Unicode line separators into spaces, with or
# without a preset), every character, and first those Hydra's grammar gives a meaning.
_chars = st.sampled_from(list(" \"'\\${}[](),:=#\n\t/.-_+*@?|%ab1")) | st.characters(
    blacklist_categories=("Cs", "Cc", "Zl", "Zp"))
_text = st.text(_chars, max_size=12).filter(lambda s: "${" not in s)
_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text
_keys = st.from_regex(presets.KEY, fullmatch=True).filter(lambda k: k.lower() not in presets.RESERVED_KEYS)
_values = st.recursive(_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(_keys, c, max_size=3),
                       max_leaves=8)


@settings(max_examples=80, deadline=None)
@given(value=_values | _text | st.lists(_text, max_size=3))
@example(value="\\")                      # a trailing backslash
@example(value='a\\"b\\\\')                # backslashes before a quote and at the end
@example(value=["null", "true", "1e-06", "10", "it's", ""])   # strings that read as other types unquoted
@example(value={"qwen2.5-1.5b": {"ref": "Qwen/Qwen2.5-1.5B", "style": "plain"}})
def test_dvc_reads_back_exactly_the_value_it_was_given(tmp_path_factory, value):
    """What `dvc exp run -S` writes into params.yaml (DVC's own Hydra parser and YAML writer) equals the value."""
    from dvc.utils.hydra import apply_overrides
    from dvc.utils.serialize import load_yaml

    path = tmp_path_factory.mktemp("hydra") / "params.yaml"
    path.write_text("x: 0\n")
    (arg,) = presets.dvc_args({"x": value})[1:]
    apply_overrides(str(path), [arg])
    assert _typed(load_yaml(str(path))["x"]) == _typed(value)


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "presets").glob("*.yaml")))
def test_dvc_applies_every_preset_as_presets_apply_does(tmp_path, name):
    """DVC's merge of every -S of each preset into params.yaml equals presets.apply (read as DVC reads); a model
    only the preset names (paper-smoke's tiny students) is added, not refused."""
    from dvc.utils.hydra import apply_overrides
    from dvc.utils.serialize import load_yaml

    preset = presets.load(str(ROOT / "presets" / name))
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    apply_overrides(str(tmp_path / "params.yaml"), presets.dvc_args(preset)[1::2])
    assert load_yaml(str(tmp_path / "params.yaml")) == presets.apply(preset, load_yaml(str(ROOT / "params.yaml")))


def test_the_stages_read_the_preset_values_dvc_wrote(tmp_path):
    from dvc.utils.hydra import apply_overrides

    preset = presets.load(str(PAPER))
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    apply_overrides(str(tmp_path / "params.yaml"), presets.dvc_args(preset)[1::2])
    assert load_params(tmp_path / "params.yaml") == presets.apply(preset, PARAMS)


def _make_line(*args: str) -> list[str]:
    """The command `make -n ARGS` prints for sot.presets, with this interpreter for the venv's python."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    (line,) = [ln for ln in out.splitlines() if "-m sot.presets" in ln]
    argv = shlex.split(line)
    assert argv[0].endswith("python"), line
    return [sys.executable, *argv[1:]]


def test_make_targets_run_sot_presets():
    assert _make_line("paper")[1:] == ["-m", "sot.presets", "run", "presets/paper.yaml"]
    assert _make_line("paper", "DRY=1")[1:] == ["-m", "sot.presets", "run", "presets/paper.yaml", "--dry"]
    assert _make_line("preset", "P=presets/x.yaml", "DRY=1")[1:] == ["-m", "sot.presets", "run", "presets/x.yaml",
                                                                     "--dry"]


def clone_worktree(dest: Path) -> Path:
    """A git clone of ROOT whose one commit holds ROOT's working tree (tracked and untracked, not ignored)."""
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, listed):
        src, dst = ROOT / rel, dest / rel
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        elif not src.exists():
            dst.unlink(missing_ok=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "working tree"], cwd=dest, check=True)
    return dest


def expected_stages(dvc_yaml: dict, params: dict) -> set[str]:
    """Every stage name dvc.yaml expands to under `params` (foreach: name@item; matrix: name@a-b-c)."""
    def resolve(v):
        m = re.fullmatch(r"\$\{([\w.]+)\}", v) if isinstance(v, str) else None
        if not m:
            return v
        scope = params
        for part in m.group(1).split("."):
            scope = scope[part]
        return scope

    names = set()
    for name, stage in dvc_yaml["stages"].items():
        if "foreach" in stage:
            names |= {f"{name}@{item}" for item in resolve(stage["foreach"])}
        elif "matrix" in stage:
            axes = [resolve(v) for v in stage["matrix"].values()]
            names |= {f"{name}@" + "-".join(map(str, combo)) for combo in itertools.product(*axes)}
        else:
            names.add(name)
    return names


@pytest.mark.parametrize("target", ["paper", "paper-smoke"])
def test_make_paper_dry_plans_the_full_grid(tmp_path, target):
    """`make paper DRY=1`'s command in a fresh clone: DVC takes every -S and plans one sft and one evaluate stage per
    (task, student) of 4 x 3, each over the preset's 9 sets (params `sets`, which both stages declare).

    The stages depend on the committed notebooks/NN_verb.py; their data dependencies are missing in a clone,
    and `--dry --force` plans without hashing dependencies."""
    repo = clone_worktree(tmp_path / "repo")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1",
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    done = subprocess.run(_make_line(target, "DRY=1"), cwd=repo, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    planned = re.findall(r"^Running stage '([^']+)':$", done.stdout, re.M)
    assert len(planned) == len(set(planned))

    preset = presets.load(str(repo / "presets" / f"{target}.yaml"))
    grid = list(itertools.product(preset["tasks"], preset["students"]))
    assert len(preset["tasks"]) == 4 and len(preset["students"]) == 3 and len(preset["sets"]) == 9
    for stage in ("sft", "evaluate"):
        assert {p for p in planned if p.startswith(stage + "@")} == {f"{stage}@{t}-{s}" for t, s in grid}
        assert "sets" in yaml.safe_load((repo / "dvc.yaml").read_text())["stages"][stage]["params"]
    merged = presets.apply(preset, load_params(repo / "params.yaml"))
    assert merged["sets"] == ["H", "G", "W", "P", "F0", "F25", "F50", "F75", "F100"]
    assert set(planned) == expected_stages(yaml.safe_load((repo / "dvc.yaml").read_text()), merged)
    assert f"sot.nb run 08_sft -p task mbpp -p student {preset['students'][-1]}" in done.stdout
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout
    assert status == "", f"the dry run changed the clone: {status}"
    print(json.dumps({"planned": len(planned)}))


@pytest.mark.slow
def test_paper_smoke_runs_the_paper_grid_to_the_figures(tmp_path):
    """`make paper-smoke`'s command in a fresh clone (this interpreter's environment, the data beside the clone):
    the paper grid's whole structure (4 tasks x 3 students x 9 sets, balanced classification, authors-style students,
    the chat teacher, lm_rewrite) reaches the figures. Every (task, student, set) is evaluated on the test problems or
    listed as not trained because its training set is empty: never dropped, never filled from another set.
    About 20 minutes on 2 CPU cores (README, "make paper-smoke")."""
    shared = ROOT.parent / "shared" / "data"
    if not shared.is_dir():
        pytest.skip(f"{shared}: the offline data is not beside the project")
    repo = clone_worktree(tmp_path / "p")
    (tmp_path / "shared").symlink_to(shared.parent)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    env.pop("SOT_DATA_DIR", None)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "sot.presets", "run", "presets/paper-smoke.yaml"], cwd=repo,
                          env=env, capture_output=True, text=True, timeout=3600)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    preset = presets.load(str(repo / "presets" / "paper-smoke.yaml"))
    ran = re.findall(r"^Running stage '([^']+)':$", done.stdout, re.M)
    expected = expected_stages(yaml.safe_load((repo / "dvc.yaml").read_text()),
                               presets.apply(preset, load_params(repo / "params.yaml")))
    assert set(ran) == expected and len(expected) == 75
    results = (repo / "figures" / "results.md").read_text()
    for task, student, set_name in itertools.product(preset["tasks"], preset["students"], ["base", *preset["sets"]]):
        metrics = json.loads((repo / "metrics" / "evaluate" / f"{task}-{student}" / f"{set_name}.json").read_text())
        size = (0 if set_name == "base" else
                len((repo / "data" / "sets" / task / f"{set_name}.jsonl").read_text().splitlines()))
        if set_name != "base" and size == 0:
            assert metrics.get("skipped") and f"{task}-{student}-{set_name}: " in results
        else:
            assert metrics["n"] == preset["prepare.n_test"] and metrics["student"] == student
    for figure in ("accuracy_by_set", "tolerance", "loss_curves", "distance_vs_accuracy"):
        assert (repo / "figures" / f"{figure}.png").exists(), figure
    assert (repo / "runs" / "index.html").exists()
    print(json.dumps({"seconds": round(seconds), "stages": len(ran)}))


def test_an_extra_setting_replaces_the_presets_own_line_and_dvc_applies_it(tmp_path):
    """`make paper-smoke ARGS="-S generate.max_new_tokens=384"`: with both lines DVC kept the preset's 192."""
    from dvc.utils.hydra import apply_overrides
    from dvc.utils.serialize import load_yaml

    preset = {"generate.max_new_tokens": 192, "generate.k": 4}
    command = presets.dvc_command(preset, extra=["-S", "generate.max_new_tokens=384"])
    assert command.count("-S") == 2 and "generate.max_new_tokens=192" not in command
    assert command[-2:] == ["-S", "generate.max_new_tokens=384"] and "generate.k=4" in command
    (tmp_path / "params.yaml").write_text("generate:\n  max_new_tokens: 256\n  k: 2\n")
    apply_overrides(str(tmp_path / "params.yaml"), [a for a in command[command.index("run") + 1:] if a != "-S"])
    assert load_yaml(str(tmp_path / "params.yaml"))["generate"] == {"max_new_tokens": 384, "k": 4}
    assert presets.overridden_keys(["--set-param", "++models={}", "--temp"]) == {"models"}


def test_paper_preset_shards_the_8b_student_and_every_student_fits():
    """presets/paper.yaml: Llama-3.1-8B (128 GB of full fine-tuning state) on fsdp over 8 GPUs of 80 GB, the two
    small students on ddp; the authors' batch of 64 on any of 1, 2, 4, 8 GPUs; on 1 GPU the 8B is refused."""
    from pathlib import Path

    from sot.presets import prepare
    from sot.sft import distributed
    from sot.sft.stage import config, student_options

    root = Path(__file__).resolve().parents[1]
    _, merged = prepare(str(root / "presets" / "paper.yaml"), str(root / "params.yaml"))
    size = {"qwen2.5-1.5b": 1.54e9, "gemma-2-2b": 2.61e9, "llama-3.1-8b": 8.03e9}
    for student, mode in (("qwen2.5-1.5b", "ddp"), ("gemma-2-2b", "ddp"), ("llama-3.1-8b", "fsdp")):
        options = student_options(merged["sft"], student)
        cfg = config(merged["models"], student, merged["seed"], merged["sft"])
        assert cfg.distributed == mode and cfg.method == "full" and cfg.effective_batch_size == 64
        plan = distributed.memory_plan(size[student], size[student], "full", "float32", cfg.optimizer,
                                       options["num_processes"], cfg.distributed, 80e9)
        assert plan["fits"], distributed.explain(plan)
        alone = distributed.memory_plan(size[student], size[student], "full", "float32", cfg.optimizer, 1,
                                        cfg.distributed, 80e9)
        assert alone["fits"] is (student != "llama-3.1-8b")


def test_dry_run_says_how_each_student_is_fine_tuned():
    from sot.presets import prepare, sft_plan

    _, merged = prepare(str(ROOT / "presets" / "paper.yaml"), str(ROOT / "params.yaml"))
    plan = sft_plan(merged)
    assert "sft llama-3.1-8b: full fine-tuning, 8 processes, fsdp" in plan
    assert any(line.startswith("sft qwen2.5-1.5b:") and line.endswith("ddp") for line in plan)
