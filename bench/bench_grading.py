"""Grading throughput: math-verify answers/s (GSM8K test, MATH-500 golds) and Countdown checks/s.

Each workload runs in one process and on all cores (a multiprocessing pool made once), one warm-up,
then the median of `repeats` timed runs. math-verify's caches are cleared before every run, so each
run parses every answer afresh. Usage: python bench/bench_grading.py [--data-dir D] [--repeats 5]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time

from sot.tasks import get_task

# Workloads: (name, task, split, what each item does)
WORKLOADS = [
    ("math-verify parse+verify, gold vs gold", "gsm8k", "test", "mv_gold"),
    ("math-verify parse+verify, gold vs gold", "math", "test", "mv_gold"),
    ("grade() neighbour's trace (wrong answer)", "gsm8k", "test", "grade_moved"),
    ("grade() neighbour's trace (wrong answer)", "math", "test", "grade_moved"),
    ("grade() own trace (gold)", "math", "test", "grade_gold"),
    ("countdown check of reference trace", "countdown", "test", "grade_gold"),
]


def _clear_caches() -> None:
    from math_verify import parser

    from sot.tasks import answers

    answers.parse_gold.cache_clear()
    for name in ("parse_latex_cached", "parse_expr_cached"):
        fn = getattr(parser, name, None)
        if hasattr(fn, "cache_clear"):
            fn.cache_clear()


def _mv_gold(gold: str) -> bool:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    a = parse("\\boxed{" + gold + "}", extraction_config=config, parsing_timeout=3)
    b = parse("\\boxed{" + gold + "}", extraction_config=config, parsing_timeout=3)
    return bool(verify(a, b, timeout_seconds=3))


def run_items(args) -> int:
    """Work through one chunk of (kind, task name, problem, completion); returns how many were correct."""
    kind, items = args
    _clear_caches()
    n_ok = 0
    for task_name, problem, completion in items:
        if kind == "mv_gold":
            n_ok += _mv_gold(problem.answer)
        else:
            n_ok += get_task(task_name).grade(problem, completion).correct
    return n_ok


def build_items(task_name: str, split: str, kind: str, data_dir, limit):
    task = get_task(task_name)
    problems = task.load_split(split, data_dir, limit=limit)
    if kind == "grade_moved":
        return [(task_name, p, q.reference) for p, q in zip(problems, problems[1:] + problems[:1])]
    return [(task_name, p, p.reference) for p in problems]


def time_runs(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("SOT_DATA_DIR"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--limit", type=int, default=None, help="items per workload (default: whole split)")
    args = ap.parse_args(argv)
    rows = []
    with mp.get_context("fork").Pool(args.workers) as pool:
        for label, task_name, split, kind in WORKLOADS:
            items = build_items(task_name, split, kind, args.data_dir, args.limit)
            chunk = -(-len(items) // (args.workers * 4))
            chunks = [(kind, items[i:i + chunk]) for i in range(0, len(items), chunk)]
            for mode, fn in (("1 process", lambda: run_items((kind, items))),
                             (f"{args.workers} processes", lambda: sum(pool.map(run_items, chunks)))):
                seconds = time_runs(fn, args.repeats)
                rows.append({"workload": label, "data": f"{task_name}/{split}", "n": len(items), "mode": mode,
                             "seconds": round(seconds, 3), "items_per_s": round(len(items) / seconds, 1),
                             "repeats": args.repeats, "cpus": os.cpu_count()})
    print(markdown_table(rows))
    return rows


def markdown_table(rows: list[dict]) -> str:
    cols = ["workload", "data", "n", "mode", "seconds", "items_per_s"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
