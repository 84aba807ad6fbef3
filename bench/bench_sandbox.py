"""Throughput of the MBPP sandbox (programs/s on all cores) on the MBPP reference programs, both isolation modes.

    python bench/bench_sandbox.py                 # fixed subset of 200 references, median of 3 after a warm-up
    python bench/bench_sandbox.py --all           # all 974 (also lists the references that fail)

``main()`` returns one dict per row and prints a markdown table. Startup rows time one trivial program at a
time (workers=1) to show the fixed cost per program: interpreter start, bubblewrap, cgroup, fork, nonce. Two
grading paths per mode: "asserts in-process" (the program holds the asserts: ``build_program``) and "calls
checked by the grader" (what ``MBPP.verdicts`` runs: the calls' values come back and are compared here).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from sot import sandbox

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MBPP = Path(os.environ.get("SOT_DATA_DIR", ROOT.parent / "shared" / "data")) / "mbpp" / "mbpp.jsonl"


def reference_programs(path: Path) -> list[tuple[int, str]]:
    """(task_id, program) for every MBPP record, built exactly as the grader builds it (sot.tasks.mbpp:
    the code, then test_setup_code, then the test_list asserts)."""
    from sot.tasks.mbpp import build_program

    programs = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            try:
                record = json.loads(line)
                programs.append((record["task_id"], build_program(record, record["code"].replace("\r\n", "\n"))))
            except (json.JSONDecodeError, KeyError) as err:
                raise ValueError(f"{path}:{line_no}: not an MBPP record ({err})") from err
    return programs


def checked_programs(path: Path) -> dict[int, tuple[str, list, list]]:
    """task_id -> (setup, steps, checks): the reference as MBPP.verdicts runs it."""
    from sot.sandbox_checks import parse_tests
    from sot.tasks.mbpp import build_setup

    found = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            checks = parse_tests(record["test_list"])
            found[record["task_id"]] = (build_setup(record, record["code"].replace("\r\n", "\n")),
                                        [c.step() for c in checks], checks)
    return found


def cpu_seconds() -> float:
    """CPU time of this process and every finished descendant (the sandboxes), user + system."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def throughput(sources: list[str], mode: str, workers: int, repeats: int, timeout: float,
               steps: list | None = None) -> dict:
    """Median programs/s (wall clock) and CPU ms per program over ``repeats`` runs of all ``sources``,
    after one warm-up pass over 20 of them. CPU time does not depend on what else the machine is running."""
    sandbox.run_many(sources[:20], workers=workers, mode=mode, timeout=timeout,
                     steps=steps[:20] if steps else None)
    rates, cpu_ms, results = [], [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), cpu_seconds()
        results = sandbox.run_many(sources, workers=workers, mode=mode, timeout=timeout, steps=steps)
        rates.append(len(sources) / (time.perf_counter() - start))
        cpu_ms.append(1000 * (cpu_seconds() - cpu) / len(sources))
    return {"rate": statistics.median(rates), "cpu_ms": statistics.median(cpu_ms), "results": results}


def startup_ms(mode: str, n: int = 30) -> float:
    """Median wall time of one trivial program, run alone (the fixed cost per program)."""
    times = [sandbox.run_program("assert True\n", mode=mode).seconds for _ in range(n)]
    return 1000 * statistics.median(times)


def bare_startup_ms(command: list[str], n: int = 30) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mbpp", type=Path, default=DEFAULT_MBPP)
    parser.add_argument("--all", action="store_true", help="all 974 references instead of a fixed 200")
    parser.add_argument("--subset", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--modes", nargs="+", default=["bubblewrap", "rlimits"])
    parser.add_argument("--paths", nargs="+", default=["checked", "in-process"], choices=["checked", "in-process"])
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    checked = checked_programs(args.mbpp) if "checked" in args.paths else {}

    programs = reference_programs(args.mbpp)
    if not args.all:
        programs = sorted(random.Random(0).sample(programs, min(args.subset, len(programs))))
    sources = [source for _, source in programs]
    python = sandbox.launcher(sandbox.isolation()).python
    rows = [{"what": "python -S -c pass (bare)", "mode": "-", "workers": 1, "programs": 1,
             "programs/s": None, "ms/program": round(bare_startup_ms([python, "-S", "-s", "-c", "pass"]), 1),
             "cpu ms/program": None, "idle-core bound": None, "failed refs": None}]
    for mode in args.modes:
        try:
            sandbox.launcher(mode)
        except sandbox.SandboxUnavailable as err:
            print(f"skipping {mode}: {err}", file=sys.stderr)
            continue
        rows.append({"what": "trivial program, one at a time", "mode": mode, "workers": 1, "programs": 1,
                     "programs/s": None, "ms/program": round(startup_ms(mode), 1), "cpu ms/program": None,
                     "idle-core bound": None, "failed refs": None})
        for path in args.paths:
            if path == "in-process":
                measured = throughput(sources, mode, args.workers, args.repeats, args.timeout)
                failed = [(task_id, r.status) for (task_id, _), r in zip(programs, measured["results"])
                          if not r.passed]
            else:
                from sot.sandbox_checks import judge

                plans = [checked[task_id] for task_id, _ in programs]
                measured = throughput([p[0] for p in plans], mode, args.workers, args.repeats, args.timeout,
                                      steps=[p[1] for p in plans])
                verdicts = [judge(p[2], r) for p, r in zip(plans, measured["results"])]
                failed = [(task_id, v[1]["failed"]) for (task_id, _), v in zip(programs, verdicts) if not v[0]]
            label = "asserts in-process" if path == "in-process" else "calls checked by the grader"
            rows.append({"what": f"MBPP references ({'all' if args.all else 'subset'}), {label}", "mode": mode,
                         "workers": args.workers, "programs": len(sources),
                         "programs/s": round(measured["rate"], 1),
                         "ms/program": round(1000 * args.workers / measured["rate"], 1),
                         "cpu ms/program": round(measured["cpu_ms"], 1),
                         "idle-core bound": round(1000 * args.workers / measured["cpu_ms"], 1),
                         "failed refs": failed})
    from sot import sandbox_cgroup

    print(f"\nmachine: {platform.node()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
          f"python {python}; memory limit: {sandbox_cgroup.support() or 'rlimits'}\n")
    print("| what | mode | workers | programs | programs/s | wall ms/program/core | CPU ms/program | "
          "programs/s if the cores were idle | failed references |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        failed = "" if row["failed refs"] is None else (
            ", ".join(f"{t} ({s})" for t, s in row["failed refs"]) or "none")
        print(f"| {row['what']} | {row['mode']} | {row['workers']} | {row['programs']} | "
              f"{row['programs/s'] or ''} | {row['ms/program']} | {row['cpu ms/program'] or ''} | "
              f"{row['idle-core bound'] or ''} | {failed} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
