"""Benchmark plumbing: medians over repeats after a warm-up, the machine described, results appended to
bench/RESULTS.md (markdown, newest last) so every figure there names the machine it was measured on."""
from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "RESULTS.md"


def timed(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> dict:
    """Run fn warmup times untimed, then `repeats` times; median and all wall times in seconds."""
    for _ in range(warmup):
        fn()
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return {"median_s": statistics.median(times), "times_s": times, "result": result}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> dict:
    import importlib.metadata as md

    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(), "gpu": "none"}
    try:
        import torch
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    for pkg in ("transformers", "trl", "peft", "vllm", "unsloth", "math-verify"):
        try:
            info[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return info


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def append_results(title: str, rows: list[dict], notes: str = "", path: Path = RESULTS) -> str:
    """Append a section (title, date, machine, table, notes) to RESULTS.md and return its text."""
    m = machine()
    when = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    desc = ", ".join(f"{k} {v}" for k, v in m.items())
    text = f"\n## {title} ({when})\n\nMachine: {desc}\n\n{markdown_table(rows)}\n"
    if notes:
        text += f"\n{notes.strip()}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text("# Benchmark results\n\nAppended by `make bench` (bench/run_all.py); each section names "
                        "the machine it was measured on. Medians over repeats after a warm-up.\n")
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
    return text
