"""The two files of each notebook: notebooks/NN_verb.py (jupytext percent format) and notebooks/NN_verb.ipynb.

The .py is the source of truth: it is what DVC depends on, what review diffs show, and what the runner
executes. The .ipynb is generated from it, without outputs, for JupyterLab and Colab; its metadata
(`jupytext.formats: ipynb,py:percent`) declares the pairing, so JupyterLab's jupytext extension writes the
.py again on every save. `python -m sot.nb sync` regenerates every .ipynb from its .py; `check_pair` says
whether a pair is out of sync or an .ipynb carries outputs (a fast test runs it on every pair).

Both files are written in one fixed form (cell ids derived from cell contents, the kernelspec ipykernel
installs, nbformat's own JSON layout), so regenerating an unchanged pair rewrites nothing and saving from
JupyterLab does not churn the .py's header, which would make DVC rerun the stage.
"""
from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path

FORMATS = "ipynb,py:percent"
TEXT_FORMAT = "py:percent"
# What ipykernel's own kernelspec says: JupyterLab writes it into the notebook when a kernel starts.
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
# What ipykernel reports as language_info, for the tested environment's Python (environment.yml: 3.11; the
# CPU machine's 3.11.7). JupyterLab writes the kernel's own language_info into the notebook when a kernel
# starts; holding the same value already, a notebook opened there shows no unsaved change. Under another
# Python, JupyterLab writes that version on save, which check_pair ignores (JUPYTER_UI_METADATA).
LANGUAGE_INFO = {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
                 "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
                 "pygments_lexer": "ipython3", "version": "3.11.7"}
# Metadata that JupyterLab or Colab write on opening, running or saving a notebook, which says nothing about
# its content: notebook level (the kernel's language, widget state, Colab's own) and cell level (UI state).
JUPYTER_UI_METADATA = ("language_info", "widgets", "colab", "accelerator", "gpuClass")
JUPYTER_UI_CELL_METADATA = ("collapsed", "scrolled", "jupyter", "execution", "trusted", "editable", "deletable",
                            "colab", "id", "outputId")


def read_notebook(path: str | os.PathLike):
    """A notebook (nbformat NotebookNode) from a .py (percent format) or an .ipynb file."""
    import jupytext
    import nbformat

    path = Path(path)
    if path.suffix == ".py":
        return jupytext.read(path, fmt=TEXT_FORMAT)
    if path.suffix == ".ipynb":
        return nbformat.read(path, as_version=4)
    raise ValueError(f"{path}: expected a notebook source ending .py (jupytext percent format) or .ipynb")


def _metadata(nb) -> dict:
    return {"jupytext": {"formats": FORMATS}, "kernelspec": dict(KERNELSPEC),
            "language_info": copy.deepcopy(LANGUAGE_INFO)}


def for_execution(nb):
    """A copy of `nb` to execute: the python3 kernel, and no pairing metadata, so that an executed copy opened
    in JupyterLab (runs/...) is not paired with a .py of its own."""
    nb = copy.deepcopy(nb)
    nb.metadata = {k: v for k, v in _metadata(nb).items() if k != "jupytext"}
    return nb


def py_text(nb) -> str:
    """The percent-format text of `nb` (inputs only: jupytext writes no outputs)."""
    import jupytext

    nb = copy.deepcopy(nb)
    nb.metadata = _metadata(nb)
    del nb.metadata["language_info"]
    return jupytext.writes(nb, fmt=TEXT_FORMAT)


def _cell_ids(cells) -> list[str]:
    """Ids from each cell's type and source (stable when other cells are added or moved), made unique."""
    ids, seen = [], {}
    for cell in cells:
        base = hashlib.sha1(f"{cell.cell_type}\n{cell.source}".encode()).hexdigest()[:8]
        seen[base] = seen.get(base, 0) + 1
        ids.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return ids


def ipynb_text(nb) -> str:
    """The output-free .ipynb text of `nb`, exactly as `sync` writes it."""
    import nbformat

    cells = []
    for cell, cell_id in zip(nb.cells, _cell_ids(nb.cells)):
        meta = copy.deepcopy(dict(cell.get("metadata", {})))
        if cell.cell_type == "code":
            new = nbformat.v4.new_code_cell(cell.source, metadata=meta, id=cell_id)
        elif cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(cell.source, metadata=meta, id=cell_id)
        else:
            new = nbformat.v4.new_raw_cell(cell.source, metadata=meta, id=cell_id)
        cells.append(new)
    clean = nbformat.v4.new_notebook(cells=cells, metadata=_metadata(nb))
    clean.nbformat_minor = 5
    nbformat.validate(clean)
    return nbformat.writes(clean, version=4) + "\n"


def paired_ipynb(py: str | os.PathLike) -> Path:
    return Path(py).with_suffix(".ipynb")


def _write_if_changed(path: Path, text: str) -> bool:
    from sot.io import atomic_path

    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return True


def write_pair(py: str | os.PathLike, nb) -> list[Path]:
    """Write `nb` as the .py and its output-free .ipynb (each only if it changed); return the files written.

    The .py's modification time is then set no earlier than the .ipynb's: JupyterLab's jupytext extension
    warns about (or refuses) a paired text file older than its .ipynb."""
    py = Path(py)
    ipynb = paired_ipynb(py)
    written = [p for p, text in ((py, py_text(nb)), (ipynb, ipynb_text(nb))) if _write_if_changed(p, text)]
    if py.stat().st_mtime < ipynb.stat().st_mtime:
        os.utime(py, (py.stat().st_atime, ipynb.stat().st_mtime))
    return written


def check_pair(py: str | os.PathLike) -> list[str]:
    """What is wrong with the pair of `py` (empty when nothing is): each message says what to run."""
    import nbformat

    py = Path(py)
    ipynb = paired_ipynb(py)
    if not ipynb.exists():
        return [f"{ipynb}: missing; run `python -m sot.nb sync` to write it from {py.name}"]
    problems = []
    on_disk = ipynb.read_text(encoding="utf-8")
    book = nbformat.reads(on_disk, as_version=4)
    with_outputs = [i for i, c in enumerate(book.cells)
                    if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    if with_outputs:
        problems.append(f"{ipynb}: code cells {with_outputs} hold outputs or execution counts; commit notebooks "
                        "without outputs: run `python -m sot.nb sync` (it rewrites the .ipynb from the .py)")
    source = read_notebook(py)
    if py_text(source) != py.read_text(encoding="utf-8"):
        problems.append(f"{py}: not in the form sync writes (header or cell markers); run `python -m sot.nb sync`")
    if not with_outputs and ipynb_text(source) != on_disk:
        ours = nbformat.reads(ipynb_text(source), as_version=4)
        if _cells(book) != _cells(ours):
            problems.append(f"{ipynb}: out of sync with {py.name} (cells differ); if you edited the .ipynb outside "
                            f"JupyterLab's jupytext pairing, carry the change into {py.name}, then run "
                            "`python -m sot.nb sync`")
        else:
            what = _what_differs(book, ours)
            if what:  # only what Jupyter writes on open or save differs: nothing to report
                problems.append(f"{ipynb}: {what} differ from what `python -m sot.nb sync` writes (the cells are "
                                f"in sync with {py.name}); run `python -m sot.nb sync`")
    return problems


def _content_metadata(meta, ignore) -> dict:
    return {k: v for k, v in dict(meta).items() if k not in ignore}


def _cells(book) -> list[tuple]:
    """Each cell's type, source and metadata, without the UI state Jupyter or Colab keep there."""
    return [(c.cell_type, c.source, _content_metadata(c.get("metadata", {}), JUPYTER_UI_CELL_METADATA))
            for c in book.cells]


def _what_differs(theirs, ours) -> str:
    """Which parts beyond the cells' content differ ('' when only Jupyter's UI metadata does)."""
    keys = sorted(k for k in set(theirs.metadata) | set(ours.metadata) if k not in JUPYTER_UI_METADATA
                  and theirs.metadata.get(k) != ours.metadata.get(k))
    parts = [f"notebook metadata {keys}"] if keys else []
    if [c.get("id") for c in theirs.cells] != [c.get("id") for c in ours.cells]:
        parts.append("cell ids")
    if (theirs.nbformat, theirs.nbformat_minor) != (ours.nbformat, ours.nbformat_minor):
        parts.append("nbformat version")
    return " and ".join(parts)
