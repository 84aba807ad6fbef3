"""Colab: every notebook's badge (first markdown cell) and its setup cell's REPO point at one GitHub repository.

`python -m sot.nb colab OWNER/NAME` rewrites them in the notebooks' .py sources (and the README's badges),
then regenerates each .ipynb, which is the file Colab opens from GitHub. Run it once after publishing the
repository, then commit.
"""
from __future__ import annotations

import re
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
