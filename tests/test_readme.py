"""The README is a short entry point that links every docs/ page; links resolve; no development history; the
grading examples in docs/grading.md run as written and print what their comments say."""
import contextlib
import io
import re
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# a commit hash as written in prose: 7-40 hex digits holding at least one digit and one letter, alone as a word
COMMIT_LIKE = re.compile(r"(?<![\w/.-])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}(?![\w-]|\.\w)")
REQUIRED_DOCS = ("pipeline-and-notebooks", "paper-on-gpus", "grading", "statistics", "resuming", "sandbox",
                 "backends-and-models", "colab", "measurements", "cpu-study", "dvc", "data")


def test_readme_is_short():
    words = len(README.read_text(encoding="utf-8").split())
    assert words <= 2600, f"README.md has {words} words; move detail into docs/ (the README is the entry point)"


def test_every_docs_page_exists_and_the_readme_links_it():
    text = README.read_text(encoding="utf-8")
    for name in REQUIRED_DOCS:
        assert (ROOT / "docs" / f"{name}.md").is_file(), f"docs/{name}.md is missing"
    linked = {unquote(target.split("#")[0]) for target in LINK.findall(text)}
    unlinked = [p.name for p in DOCS if f"docs/{p.name}" not in linked]
    unlinked += [f"{name}.md" for name in REQUIRED_DOCS if f"docs/{name}.md" not in linked]
    assert not unlinked, f"README.md links no docs page named {sorted(set(unlinked))}"


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = unquote(target.split("#")[0])
            if path and not (page.parent / path).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, f"links to files that do not exist: {broken}"


def test_no_commit_hashes_in_readme_or_docs():
    found = [f"{page.relative_to(ROOT)}: {m.group(0)}" for page in PAGES
             for m in COMMIT_LIKE.finditer(page.read_text(encoding="utf-8"))]
    assert not found, f"commit-hash-like tokens (development history belongs in git, not the docs): {found}"


def test_commit_pattern_finds_hashes_and_spares_checksums_and_words():
    assert COMMIT_LIKE.findall("the bug fixed in 20f4828 (commit a082489c)") == ["20f4828", "a082489c"]
    sha256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert COMMIT_LIKE.findall(f"sha256 {sha256}, decade 2026-12-02, 1000000 rows, file ab12cd3.py") == []


def test_grading_examples_run_as_written():
    text = (ROOT / "docs" / "grading.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "get_task" in b or "cd.grade" in b]
    assert len(blocks) >= 2
    out = io.StringIO()
    namespace: dict = {}
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block, "docs/grading.md", "exec"), namespace)
    printed = out.getvalue().split("\n")
    assert printed[:4] == ["True 7", "None", "True", "False"], printed
