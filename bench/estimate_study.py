"""What the CPU study (presets/cpu-study.yaml) would cost with more test problems, from what its run measured.

Inputs, all written by one `make study` run and committed under study/cpu/: `stage_times.json` (each stage
run's wall time, from its executed report: bench/stage_times.py) and `metrics/evaluate/*.json` (tokens decoded
and problems per evaluation). Only evaluation grows with the test set (the training side is unchanged), so

    time(n) = sum of the non-evaluate stages  +  sum over evaluate runs of  seconds_per_problem x n

with each run's own measured seconds per problem (its decode, grading and model load spread over its problems:
the load is counted once per problem too, which slightly over-states large n). The GPU column replaces the
CPU decode time by the measured tokens at a GPU decode rate: the only GPU generation rate we measured is batched
transformers on an H200, 515 tok/s for the 1.5B Qwen2.5 architecture with 32 sequences (bench/RESULTS.md); the
135M student decodes faster than that, and vLLM (not measured) much faster again, so the GPU column is an
upper bound on evaluation time, and the other stages are carried at their CPU times (also an upper bound).

    python bench/estimate_study.py                        # reads study/cpu/
    python bench/estimate_study.py --study study/cpu --n 200 1000 5000
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GPU_DECODE_TOK_S = 515.0   # H200, transformers, batch 32, Qwen2.5-1.5B architecture (bench/RESULTS.md, 2026-11-29)
MBPP_TEST = 500            # test problems MBPP has (task ids 11-510); more needs another task's test split


def load(study: Path) -> tuple[list[dict], dict[str, dict]]:
    times_path = study / "stage_times.json"
    if not times_path.exists():
        raise SystemExit(f"{times_path}: missing; run `make study`, then bench/stage_times.py --json {times_path}")
    times = json.loads(times_path.read_text())
    # evaluate metrics by executed report: metrics/evaluate/<task>-<student>/<set>.json (one report per group), or
    # the flat <task>-<student>-<set>.json of runs made before sft and evaluate were grouped (study/cpu)
    evals: dict[str, list[dict]] = {}
    for path in sorted((study / "metrics" / "evaluate").rglob("*.json")):
        item = path.parent.name if path.parent.name != "evaluate" else path.stem
        metrics = json.loads(path.read_text())
        if "generation" in metrics:          # an evaluated run (not one skipped for an empty training set)
            evals.setdefault(item, []).append(metrics)
    if not evals:
        raise SystemExit(f"{study}/metrics/evaluate: no evaluation metrics to scale")
    return times, evals


def estimate(times: list[dict], evals: dict[str, dict], ns: list[int]) -> list[dict]:
    fixed = sum(t["seconds"] for t in times if t["stage"] != "09_evaluate")
    runs = {t["item"]: t["seconds"] for t in times if t["stage"] == "09_evaluate"}
    missing = sorted(set(runs) - set(evals))
    if missing:
        raise SystemExit(f"evaluate runs without metrics: {missing}")
    rows = []
    for n in ns:
        cpu = gpu = 0.0
        for item, seconds in runs.items():     # one report: one run, or a group of runs on the same problems
            ms = evals[item]
            n0 = ms[0]["n"]
            tokens = sum(m["generation"]["tokens"] for m in ms)
            decode = sum(m["generation"]["seconds"] for m in ms)
            cpu += seconds / n0 * n
            gpu += (seconds - decode + tokens / GPU_DECODE_TOK_S) / n0 * n
        n_runs = sum(len(evals[item]) for item in runs)
        rows.append({"n_test": n, "evaluate_runs": n_runs, "fixed_s": fixed, "cpu_s": fixed + cpu,
                     "gpu_eval_s": gpu, "gpu_s": fixed + gpu})
    return rows


def markdown(rows: list[dict]) -> str:
    out = ["| test problems | evaluate runs | CPU, 2 cores (h) | of which training side (h) | one GPU, upper bound (h) |",
           "|---:|---:|---:|---:|---:|"]
    for r in rows:
        note = "" if r["n_test"] <= MBPP_TEST else " (more than MBPP's 500)"
        out.append(f"| {r['n_test']:,}{note} | {r['evaluate_runs']} | {r['cpu_s'] / 3600:.1f} | {r['fixed_s'] / 3600:.1f} "
                   f"| {r['gpu_s'] / 3600:.1f} |")
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", type=Path, default=ROOT / "study" / "cpu")
    ap.add_argument("--n", type=int, nargs="+", default=[200, 1000, 5000])
    args = ap.parse_args(argv)
    print(markdown(estimate(*load(args.study), args.n)))


if __name__ == "__main__":
    main()
