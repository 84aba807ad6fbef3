"""Where our strict grader and the authors' scripts disagree, per evaluation run, and why (MBPP: is the prose
around the code what their sanitiser keeps and `ast.parse` then rejects?).

    python bench/grader_gap.py [PROJECT]          # reads PROJECT/data/evaluate/**/*.jsonl (default: .)

Prints a markdown table: for each run, the problems both graders call correct, only ours (strict), only theirs,
and, for MBPP, how many of the strict-only ones fail the authors' compile check (`sot.tasks.authors.mbpp_code`
then `mbpp_compiles`: their script strips the fences but keeps any prose, so an answer written as prose plus a
code block never compiles there) and how many outputs hold prose outside a fenced code block at all.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sot.io import read_jsonl
from sot.tasks.authors import mbpp_code, mbpp_compiles
from sot.tasks.mbpp import _FENCE as FENCE   # the fenced blocks exactly as our MBPP grader reads them


def has_prose(completion: str) -> bool:
    """Text outside the fenced code blocks (an output with no fence counts as prose-free: it is all code or all
    prose, and the compile check tells which)."""
    if "```" not in (completion or ""):
        return False
    outside = FENCE.sub("", completion)
    return bool(outside.strip())


def gap(rows: list[dict], task: str) -> dict:
    ours = [bool(r.get("correct")) for r in rows]
    theirs = [bool(r.get("authors_correct")) for r in rows]
    only_ours = [r for r, a, b in zip(rows, ours, theirs) if a and not b]
    out = {"n": len(rows), "both": sum(a and b for a, b in zip(ours, theirs)), "strict only": len(only_ours),
           "authors only": sum(b and not a for a, b in zip(ours, theirs))}
    if task == "mbpp":
        out["strict only, not compiling for them"] = sum(not mbpp_compiles(mbpp_code(r["completion"])) for r in only_ours)
        out["outputs with prose beside the code"] = sum(has_prose(r["completion"]) for r in rows)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("project", nargs="?", default=".")
    args = ap.parse_args(argv)
    files = sorted(Path(args.project, "data", "evaluate").rglob("*.jsonl"))   # <task>-<student>/<set>.jsonl
    if not files:
        print(f"{Path(args.project, 'data', 'evaluate')}: no evaluation outputs (run the evaluate stages first)",
              file=sys.stderr)
        return 1
    table = []
    for path in files:
        rows = read_jsonl(path)
        if rows:
            run = path.stem if path.parent.name == "evaluate" else f"{path.parent.name}-{path.stem}"  # flat: older runs
            table.append({"run": run, **gap(rows, run.split("-")[0])})   # <task>-<student>-<set>
    cols = list(dict.fromkeys(k for row in table for k in row))
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("---" if c == "run" else "---:" for c in cols) + "|")
    for row in table:
        print("| " + " | ".join(str(row.get(c, "")) for c in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
