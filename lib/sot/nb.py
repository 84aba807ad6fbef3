"""Run the stage notebooks: strip outputs, inject parameters from params.yaml, execute with papermill.

    python -m sot.nb strip                       # notebooks/*.ipynb -> build/notebooks/*.ipynb (no outputs)
    python -m sot.nb run 08_sft -p task gsm8k -p set G -p student smollm2-135m
    python -m sot.nb sync                        # rewrite each notebook's parameters cell from params.yaml
    python -m sot.nb colab you/shape-of-thought  # point the Colab badges and install cells at your fork

Every name in a notebook's `parameters` cell is looked up in params.yaml: first in the stage's section
(the notebook name without its number: `08_sft` -> `sft`), then at the top level; a matrix item
(`task`, `student`, `set`, `fraction`) defaults to the first element of its plural list; `-p name value`
(a YAML literal) overrides it, which is how DVC passes matrix items. A name found nowhere is an error.
DVC cannot interpolate lists into a command line, so the values travel this way rather than as `-p`
arguments written out in dvc.yaml; `dvc.yaml` still declares every parameter a stage reads, so
`dvc params diff`, `dvc exp run -S` and the stage cache see them.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import random
import re
import sys
import time
from pathlib import Path

import yaml

NOTEBOOKS = Path("notebooks")
CLEAN = Path("build/notebooks")
RUNS = Path("runs")


SECTION_ALIASES = {"mix": "corrupt"}  # 06_mix reads the corrupt section (base, fractions)


def section_of(notebook: str) -> str:
    stem = Path(notebook).stem
    verb = stem.split("_", 1)[1] if stem[:2].isdigit() and "_" in stem else stem
    return SECTION_ALIASES.get(verb, verb)


def load_params(path: str | os.PathLike = "params.yaml") -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def parameters_cell(nb: dict, where: str = "") -> tuple[int, dict]:
    """Index and literal defaults of the cell tagged `parameters` (flat `name = literal` lines)."""
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            src = "".join(cell["source"])
            values = {}
            for node in ast.parse(src).body:
                if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                        and isinstance(node.targets[0], ast.Name)):
                    raise ValueError(f"{where}: parameters cell line {node.lineno}: only `name = literal` allowed")
                try:
                    values[node.targets[0].id] = ast.literal_eval(node.value)
                except ValueError:
                    raise ValueError(f"{where}: parameters cell line {node.lineno}: "
                                     f"{node.targets[0].id} must be a literal (nothing derived)") from None
            return i, values
    raise ValueError(f"{where}: no code cell tagged 'parameters'; tag the first code cell")


def _plural(name: str, section: dict, params: dict) -> list | None:
    for scope in (section, params):
        value = scope.get(name + "s")
        if isinstance(value, list) and value:
            return value
    return None


def resolve_parameters(notebook: str, params: dict, overrides: dict | None = None) -> dict:
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    _, defaults = parameters_cell(nb, notebook)
    section = params.get(section_of(notebook), {}) or {}
    out, missing = {}, []
    for name in defaults:
        if overrides and name in overrides:
            out[name] = overrides[name]
        elif name in section:
            out[name] = section[name]
        elif name in params:
            out[name] = params[name]
        elif _plural(name, section, params) is not None:
            out[name] = _plural(name, section, params)[0]  # a matrix item (task, student, set, fraction)
        else:
            missing.append(name)
    if missing:
        raise KeyError(f"{notebook}: parameters {missing} are neither in params.yaml section "
                       f"'{section_of(notebook)}' nor at its top level, nor passed with -p")
    return out


def strip(nb: dict) -> dict:
    """Only what defines the computation: cell types, sources and tags; no outputs or run metadata."""
    cells = []
    for i, cell in enumerate(nb["cells"]):
        clean = {"cell_type": cell["cell_type"], "id": cell.get("id", f"cell-{i}"), "metadata": {},
                 "source": cell["source"]}
        tags = cell.get("metadata", {}).get("tags")
        if tags:
            clean["metadata"]["tags"] = tags
        if cell["cell_type"] == "code":
            clean.update(execution_count=None, outputs=[])
        cells.append(clean)
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"}}
    return {"cells": cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}


def strip_all(src: Path = NOTEBOOKS, dest: Path = CLEAN) -> list[Path]:
    from sot.io import atomic_path

    written = []
    for path in sorted(src.glob("*.ipynb")):
        text = json.dumps(strip(json.loads(path.read_text(encoding="utf-8"))), indent=1, ensure_ascii=False)
        target = dest / path.name
        if not target.exists() or target.read_text(encoding="utf-8") != text + "\n":
            with atomic_path(target) as tmp:
                tmp.write_text(text + "\n", encoding="utf-8")
        written.append(target)
    return written


def run(name: str, overrides: dict, output: str | None = None, params_file: str = "params.yaml") -> Path:
    import papermill

    notebook = CLEAN / f"{name}.ipynb"
    if not notebook.exists():
        raise FileNotFoundError(f"{notebook} missing: run `python -m sot.nb strip` (dvc stage `notebooks`)")
    values = resolve_parameters(str(notebook), load_params(params_file), overrides)
    out = Path(output) if output else RUNS / f"{name}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.running.ipynb")
    start = time.time()
    papermill.execute_notebook(str(notebook), str(tmp), parameters=values, progress_bar=False,
                               log_output=True, kernel_name="python3", cwd=os.getcwd())
    tmp.replace(out)
    print(f"[sot.nb] {name} done in {time.time() - start:.1f}s -> {out}", file=sys.stderr)
    return out


def sync(params_file: str = "params.yaml") -> None:
    """Rewrite each notebook's parameters cell so its defaults equal params.yaml (matrix items keep theirs)."""
    params = load_params(params_file)
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        i, defaults = parameters_cell(nb, str(path))
        section = params.get(section_of(path.name), {}) or {}
        lines = []
        for k, v in defaults.items():
            plural = _plural(k, section, params)
            v = section.get(k, params.get(k, plural[0] if plural else v))
            lines.append(f"{k} = {v!r}")
        nb["cells"][i]["source"] = "\n".join(lines)
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def banner(seed: int | None = None) -> None:
    """Print versions and the device, and seed every RNG; the second cell of every notebook."""
    import importlib.metadata as md
    import platform
    import subprocess

    versions = {}
    for pkg in ("sot", "torch", "transformers", "trl", "peft", "datasets", "math-verify", "vllm", "unsloth"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    device = "cpu"
    if "torch" in sys.modules:  # only report the device where the stage uses torch (light stages stay light)
        import torch
        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    print(f"python {platform.python_version()} | git {commit} | device {device}")
    print(" | ".join(f"{k} {v}" for k, v in versions.items()))
    if seed is not None:
        random.seed(seed)
        try:
            import numpy as np
            np.random.seed(seed)
        except ImportError:
            pass
        if "torch" in sys.modules:
            sys.modules["torch"].manual_seed(seed)
        print(f"seed {seed}")


COLAB_BADGE = re.compile(r"colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+/blob/[^/\s)]+/")
COLAB_REPO = re.compile(r'REPO = "[^"]*"')


def set_colab_repo(repo: str, branch: str = "main", notebooks: Path = NOTEBOOKS,
                   readme: Path | None = Path("README.md")) -> list[Path]:
    """Point every Colab badge (notebooks and README) and install cell at github.com/<repo> (`owner/name`).
    Idempotent; returns the files it changed. Run once after publishing the repository, then commit."""
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise ValueError(f"repo must look like owner/name (github.com/owner/name), got {repo!r}")
    badge = f"colab.research.google.com/github/{repo}/blob/{branch}/"
    changed = []
    for path in sorted(notebooks.glob("*.ipynb")):
        book = json.loads(path.read_text(encoding="utf-8"))
        for cell in book["cells"]:
            text = "".join(cell["source"])
            new = COLAB_REPO.sub(f'REPO = "https://github.com/{repo}"', COLAB_BADGE.sub(badge, text))
            if new != text:
                cell["source"] = new
        dumped = json.dumps(book, indent=1, ensure_ascii=False) + "\n"
        if dumped != path.read_text(encoding="utf-8"):
            path.write_text(dumped, encoding="utf-8")
            changed.append(path)
    if readme and readme.exists():
        text = readme.read_text(encoding="utf-8")
        new = COLAB_BADGE.sub(badge, text)
        if new != text:
            readme.write_text(new, encoding="utf-8")
            changed.append(readme)
    return changed


def _parse_overrides(pairs: list[list[str]]) -> dict:
    return {k: yaml.safe_load(v) for k, v in pairs or []}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m sot.nb", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("strip")
    r = sub.add_parser("run")
    r.add_argument("name")
    r.add_argument("-p", nargs=2, action="append", metavar=("NAME", "VALUE"))
    r.add_argument("-o", "--output")
    sub.add_parser("sync")
    c = sub.add_parser("colab", help="point the Colab badges and install cells at github.com/OWNER/NAME")
    c.add_argument("repo", help="owner/name")
    c.add_argument("--branch", default="main")
    a = ap.parse_args(argv)
    if a.cmd == "strip":
        for p in strip_all():
            print(p)
    elif a.cmd == "run":
        run(a.name, _parse_overrides(a.p), a.output)
    elif a.cmd == "colab":
        for p in set_colab_repo(a.repo, a.branch):
            print(p)
    else:
        sync()


if __name__ == "__main__":
    main()
