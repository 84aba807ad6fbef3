"""Where the project is: its root is the nearest folder, from here upwards, that holds params.yaml and dvc.yaml.

Every stage reads and writes paths relative to that root (data/..., metrics/..., runs/...). DVC and
`python -m sot.nb run` start there; a Jupyter kernel starts in the notebook's own folder (notebooks/), so a
notebook calls `sot.nb.setup()`, which moves to the root found here before anything reads a file.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT_MARKERS = ("params.yaml", "dvc.yaml")


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The nearest folder at or above `start` (default: the working directory) holding every ROOT_MARKERS file.

    Raises FileNotFoundError naming the folder searched from, rather than guessing a root: relative paths
    resolved against a wrong folder would read or write the wrong files."""
    here = Path(start if start is not None else os.getcwd()).resolve()
    if here.is_file():
        here = here.parent
    for folder in (here, *here.parents):
        if all((folder / name).is_file() for name in ROOT_MARKERS):
            return folder
    raise FileNotFoundError(
        f"no folder at or above {here} holds {' and '.join(ROOT_MARKERS)}: start Python (or open the notebook) "
        "inside a checkout of this project; on Colab, run the notebook's setup cell, which clones it")
