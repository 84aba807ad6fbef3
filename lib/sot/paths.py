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


DATA_DIR_ENV = "SOT_DATA_DIR"


def data_dir(setting: str | os.PathLike | None) -> tuple[Path | None, str]:
    """The folder the prepare stage reads the datasets from, and where that choice came from (docs/data.md).

    One precedence: $SOT_DATA_DIR when set and not empty, else `setting` (params.yaml's `data_dir`, relative to
    the project root), else None: the Hugging Face hub datasets. An environment variable overrides the project's
    file, as the shell's settings do for most tools; `SOT_DATA_DIR=` (empty) or unset leaves params.yaml in charge.
    DVC does not see environment variables: after pointing SOT_DATA_DIR elsewhere, `dvc repro -f prepare`."""
    env = os.environ.get(DATA_DIR_ENV, "")
    if env:
        note = f" (over data_dir: {setting} in params.yaml)" if setting is not None else ""
        return Path(env), f"${DATA_DIR_ENV}={env}{note}"
    if setting is not None and str(setting) != "":
        return Path(setting), f"data_dir: {setting} in params.yaml"
    return None, f"the Hugging Face hub (data_dir: null in params.yaml, ${DATA_DIR_ENV} unset)"
