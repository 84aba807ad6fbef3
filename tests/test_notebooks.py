"""Static checks of every notebook and of the pipeline wiring (no execution)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from sot import nb, presets

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def test_there_is_one_notebook_per_stage():
    names = [p.stem for p in NOTEBOOKS]
    assert names == sorted(names) and len(names) == 10
    assert all(re.fullmatch(r"\d\d_[a-z]+", n) for n in names), names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_valid_and_output_free(path):
    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: committed outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_defaults_equal_params_yaml(path):
    book = json.loads(path.read_text())
    index, defaults = nb.parameters_cell(book, str(path))
    first_code = next(i for i, c in enumerate(book["cells"]) if c["cell_type"] == "code")
    assert index == first_code, "the parameters cell must be the first code cell"
    resolved = nb.resolve_parameters(str(path), PARAMS)
    assert defaults == resolved, f"{path.name}: defaults differ from params.yaml; run `python -m sot.nb sync`"


def test_strip_removes_outputs_and_keeps_sources(tmp_path):
    book = json.loads(NOTEBOOKS[0].read_text())
    book["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "x"}]
    book["cells"][1]["execution_count"] = 3
    book["metadata"]["widgets"] = {"state": {}}
    clean = nb.strip(book)
    assert clean["cells"][1]["outputs"] == [] and clean["cells"][1]["execution_count"] is None
    assert "widgets" not in clean["metadata"]
    assert [c["source"] for c in clean["cells"]] == [c["source"] for c in book["cells"]]
    assert clean == nb.strip(json.loads(NOTEBOOKS[0].read_text())), "outputs must not change the clean copy"


def test_unknown_parameter_is_an_error(tmp_path):
    book = json.loads(NOTEBOOKS[0].read_text())
    book["cells"][1]["source"] = "no_such_param = 1"
    path = tmp_path / "01_prepare.ipynb"
    path.write_text(json.dumps(book))
    with pytest.raises(KeyError, match="no_such_param"):
        nb.resolve_parameters(str(path), PARAMS)


def test_derived_value_in_parameters_cell_is_rejected():
    book = {"cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "a = 1\nb = a + 1"}]}
    with pytest.raises(ValueError, match="literal"):
        nb.parameters_cell(book, "x.ipynb")


def test_matrix_items_default_to_first_element():
    resolved = nb.resolve_parameters(str(ROOT / "notebooks" / "08_sft.ipynb"), PARAMS, {"set": "W"})
    assert resolved["task"] == PARAMS["tasks"][0] and resolved["set"] == "W"
    assert resolved["lr"] == PARAMS["sft"]["lr"]


def test_dvc_stages_cover_every_notebook():
    dvc = (ROOT / "dvc.yaml").read_text()
    for path in NOTEBOOKS:
        assert f"run {path.stem}" in dvc, f"{path.stem} is not run by any stage"


def test_paper_preset_names_only_existing_parameters():
    presets.check(presets.load(str(ROOT / "presets" / "paper.yaml")), PARAMS, "presets/paper.yaml")
    args = presets.dvc_args({"sft.lr": 1e-6, "tasks": ["gsm8k", "math"]})
    assert args == ["-S", "sft.lr=1e-06", "-S", 'tasks=["gsm8k", "math"]']


def test_preset_with_unknown_key_fails():
    with pytest.raises(KeyError, match="sft.nope"):
        presets.check({"sft.nope": 1}, PARAMS, "p.yaml")


def test_set_colab_repo_rewrites_badges_and_install_cells(tmp_path):
    import shutil
    books = tmp_path / "notebooks"
    books.mkdir()
    for p in NOTEBOOKS[:2]:
        shutil.copy(p, books / p.name)
    readme = tmp_path / "README.md"
    readme.write_text("[![Open In Colab](x)](https://colab.research.google.com/github/OWNER/shape-of-thought/blob/"
                      "main/notebooks/01_prepare.ipynb)\n")
    changed = nb.set_colab_repo("alice/sot-repro", branch="dev", notebooks=books, readme=readme)
    assert len(changed) == 3
    text = (books / NOTEBOOKS[0].name).read_text()
    assert "colab.research.google.com/github/alice/sot-repro/blob/dev/notebooks/" in text
    assert 'REPO = \\"https://github.com/alice/sot-repro\\"' in text and "OWNER" not in text
    assert "github/alice/sot-repro/blob/dev/notebooks/01_prepare" in readme.read_text()
    assert nb.set_colab_repo("alice/sot-repro", branch="dev", notebooks=books, readme=readme) == []  # idempotent
    with pytest.raises(ValueError, match="owner/name"):
        nb.set_colab_repo("not a repo", notebooks=books, readme=readme)


def test_every_notebook_has_a_colab_badge_and_a_colab_only_install_cell():
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        assert nb.COLAB_BADGE.search(book.cells[0].source), path.name
        install = [c for c in book.cells if c.cell_type == "code" and "google.colab" in c.source]
        assert len(install) == 1 and 'if "google.colab" in sys.modules:' in install[0].source, path.name
        assert nb.COLAB_REPO.search(install[0].source), path.name
