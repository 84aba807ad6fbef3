"""What the stage notebooks use to show their results: traces side by side, short record tables.

Every function returns an object Jupyter renders (IPython HTML or a pandas DataFrame), so it shows the same in
JupyterLab, in the executed report under runs/ and in its HTML copy. Text is HTML-escaped and kept verbatim
(whitespace and line breaks preserved): what is shown is exactly what the model read or wrote.
"""
from __future__ import annotations

import html
from typing import Mapping, Sequence

import pandas as pd

_CELL = ("vertical-align:top; text-align:left; white-space:pre-wrap; font-family:monospace; font-size:12px; "
         "padding:6px; border:1px solid #ccc; max-width:{width}px")


def _html(text: str):
    from IPython.display import HTML
    return HTML(text)


def side_by_side(columns: Mapping[str, str], title: str | None = None, notes: Mapping[str, str] | None = None,
                 width: int = 520):
    """Texts in columns under their headers (e.g. {"H (human)": ..., "G (correct)": ...}); `notes` adds a line
    under each header (the extracted answer, the verdict, the token count ...)."""
    notes = notes or {}
    cell = _CELL.format(width=width)
    head = "".join(f"<th style='text-align:left; padding:6px'>{html.escape(k)}"
                   + (f"<br><span style='font-weight:normal'>{html.escape(notes[k])}</span>" if notes.get(k) else "")
                   + "</th>" for k in columns)
    body = "".join(f"<td style='{cell}'>{html.escape(v or '')}</td>" for v in columns.values())
    caption = f"<caption style='text-align:left; font-weight:bold'>{html.escape(title)}</caption>" if title else ""
    return _html(f"<table style='border-collapse:collapse'>{caption}<tr>{head}</tr><tr>{body}</tr></table>")


def shorten(text, limit: int = 160) -> str:
    """One line of at most `limit` characters (line breaks shown as ⏎), for table cells."""
    text = "" if text is None else str(text)
    flat = text.replace("\n", " ⏎ ")
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def records_table(records: Sequence[dict], fields: Sequence[str], limit: int = 160) -> pd.DataFrame:
    """A DataFrame of the given fields of each record (dotted names reach into `source`, e.g. "source.extracted");
    text fields are shortened to one line."""
    rows = []
    for r in records:
        row = {}
        for f in fields:
            value = r
            for part in f.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            row[f] = shorten(value, limit) if isinstance(value, str) else value
        rows.append(row)
    return pd.DataFrame(rows, columns=list(fields))
