"""Wall time of every stage run, read from the executed reports under runs/ (papermill records each notebook's
start and duration in its metadata), as a markdown table per stage and a JSON file.

    python bench/stage_times.py                          # the table for runs/
    python bench/stage_times.py --json study/cpu/stage_times.json --only mbpp   # one task's runs

Notebook time only: DVC's own hashing and the Python start-up of each `sot.nb run` (a few seconds per stage) are
not in it; the wall clock of the whole `dvc repro` / `dvc exp run` is the honest total (record it beside).
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def stage_times(runs: Path) -> list[dict]:
    """One row per executed report: stage (its notebook), item (the matrix values), start, seconds."""
    rows = []
    for path in sorted(runs.rglob("*.ipynb")):
        meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {}).get("papermill", {})
        if meta.get("duration") is None:
            continue
        rel = path.relative_to(runs)
        stage = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        rows.append({"stage": stage, "item": rel.stem if len(rel.parts) > 1 else "",
                     "start": meta.get("start_time"), "seconds": round(float(meta["duration"]), 1)})
    return rows


def markdown(rows: list[dict]) -> str:
    by_stage = defaultdict(list)
    for r in rows:
        by_stage[r["stage"]].append(r["seconds"])
    lines = ["| stage | runs | wall s (total) | per run s (min-max) |", "|---|---:|---:|---|"]
    for stage in sorted(by_stage):
        s = by_stage[stage]
        lines.append(f"| {stage} | {len(s)} | {sum(s):.0f} | {min(s):.0f}-{max(s):.0f} |")
    total = sum(r["seconds"] for r in rows)
    lines.append(f"| **all** | {len(rows)} | **{total:.0f}** | |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=ROOT / "runs")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--only", help="keep the matrix runs whose item contains this (e.g. a task); unmatrixed stages stay")
    args = ap.parse_args(argv)
    rows = [r for r in stage_times(args.runs) if not args.only or not r["item"] or args.only in r["item"]]
    if not rows:
        raise SystemExit(f"{args.runs}: no executed report with papermill metadata; run the pipeline first")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(markdown(rows))


if __name__ == "__main__":
    main()
