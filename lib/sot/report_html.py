"""The stage reports as web pages: each executed notebook rendered to HTML, and runs/index.html linking them all.

A report is nbconvert's JupyterLab template with the code shown and every image embedded (base64), so one
.html file opens in a browser without Jupyter, without the project and without a network. The index groups
the reports under runs/ by stage (runs/NN_verb.html, or runs/NN_verb/<matrix item>.html), titles each
group with the first markdown heading of notebooks/NN_verb.py and uses the matrix items as link text.
"""
from __future__ import annotations

import html
import os
import re
from pathlib import Path

TEMPLATE = "lab"
INDEX = "index.html"


def to_html(nb, title: str) -> str:
    """The executed notebook `nb` as one self-contained HTML page titled `title`."""
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    exporter = HTMLExporter(template_name=TEMPLATE, embed_images=True)
    exporter.register_preprocessor(CoalesceStreamsPreprocessor(), enabled=True)  # one block per cell and stream
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    return body.replace("</head>", f"<style>{REPORT_STYLE}</style>\n</head>", 1)


# Wide tables (the results table, DataFrames with many columns) scroll inside the page instead of running past
# its right edge; long output lines wrap.
REPORT_STYLE = """
.jp-RenderedHTMLCommon table, .jp-RenderedMarkdown table { display: block; max-width: 100%; overflow-x: auto; }
.jp-OutputArea-output pre { white-space: pre-wrap; overflow-wrap: anywhere; }
"""


def notebook_title(source: str | os.PathLike) -> str | None:
    """The text of the first markdown heading of a notebook source (.py or .ipynb), or None if it has none."""
    from sot.pairing import read_notebook

    for cell in read_notebook(source).cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            m = re.match(r"\s*#{1,6}\s+(.+?)\s*#*\s*$", line)
            if m:
                return m.group(1)
    return None


def _natural(text: str) -> list:
    """Sort key putting F25 before F100 and item-2 before item-10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def find_reports(runs: str | os.PathLike) -> dict[str, list[Path]]:
    """{stage notebook name: its reports under `runs`}, stages and items in natural order; hidden files
    (a failed run's copy, temp files) and the index itself are left out."""
    runs = Path(runs)
    found: dict[str, list[Path]] = {}
    if not runs.is_dir():
        return found
    for entry in sorted(runs.iterdir(), key=lambda p: _natural(p.name)):
        if entry.name.startswith(".") or entry.name == INDEX:
            continue
        if entry.is_file() and entry.suffix == ".html":
            found.setdefault(entry.stem, []).append(entry)
        elif entry.is_dir():
            items = sorted((p for p in entry.glob("*.html") if not p.name.startswith(".")),
                           key=lambda p: _natural(p.stem))
            if items:
                found.setdefault(entry.name, []).extend(items)
    return found


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; color: #1f2328; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
section { border-top: 1px solid #d0d7de; padding: .6rem 0 .8rem; }
h2 { font-size: 1.15rem; margin: .2rem 0; }
.source { color: #59636e; font-size: .85rem; font-family: ui-monospace, monospace; }
ul.items { list-style: none; padding: 0; margin: .4rem 0 0; display: flex; flex-wrap: wrap; gap: .35rem .5rem; }
ul.items a { display: inline-block; padding: .1rem .5rem; border: 1px solid #d0d7de; border-radius: .4rem;
             text-decoration: none; font-family: ui-monospace, monospace; font-size: .9rem; }
ul.items a:hover { background: #f6f8fa; }
.note { color: #59636e; }
"""


def index_html(runs: str | os.PathLike, notebooks: str | os.PathLike) -> str:
    """The index page of every report under `runs` (see the module docstring)."""
    runs, notebooks = Path(runs), Path(notebooks)
    reports = find_reports(runs)
    sections = []
    for stage, paths in reports.items():
        source = notebooks / f"{stage}.py"
        title = notebook_title(source) if source.exists() else None
        heading = html.escape(title or stage)
        where = (f"notebooks/{stage}.py" if source.exists()
                 else f"no notebooks/{stage}.py: a report left from a notebook since renamed or removed")
        links = "\n".join(
            f'<li><a href="{html.escape(p.relative_to(runs).as_posix(), quote=True)}">'
            f'{html.escape(p.stem)}</a></li>' for p in paths)
        sections.append(f'<section>\n<h2>{heading}</h2>\n<div class="source">{html.escape(where)} · '
                        f'{len(paths)} report{"s" if len(paths) != 1 else ""}</div>\n'
                        f'<ul class="items">\n{links}\n</ul>\n</section>')
    body = "\n".join(sections) or '<p class="note">No reports yet: run <code>dvc repro</code>.</p>'
    n = sum(len(v) for v in reports.values())
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Stage reports</title>
<style>{STYLE}</style>
</head>
<body>
<h1>Stage reports</h1>
<p class="note">{n} executed notebooks in {len(reports)} stages, in pipeline order; each page shows a stage's code
and what it printed and drew. Written by <code>python -m sot.nb index</code> (the <code>index</code> stage of
<code>dvc repro</code>).</p>
{body}
</body>
</html>
"""


def write_index(runs: str | os.PathLike = "runs", notebooks: str | os.PathLike = "notebooks") -> Path:
    """Write runs/index.html atomically; return its path."""
    from sot.io import atomic_path

    target = Path(runs) / INDEX
    with atomic_path(target) as tmp:
        tmp.write_text(index_html(runs, notebooks), encoding="utf-8")
        tmp.chmod(0o644)  # temp files are created 0600
    return target
