"""Pipeline overhead: `dvc repro` with nothing to do, and the time from a fresh pipeline start to the first
generated samples (prepare + the generate stage up to its first finished shard), in a scratch clone.

    python bench/bench_pipeline.py            # needs a completed `dvc repro` (make demo) for the no-op row
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
from sot.benchmark import markdown_table, timed  # noqa: E402


def dvc(*args, cwd=ROOT, check=True):
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}
    return subprocess.run(["dvc", *args], cwd=cwd, env=env, capture_output=True, text=True, check=check)


def noop_repro(repeats: int = 5) -> dict:
    status = dvc("status", "--quiet", check=False)
    if status.returncode != 0:
        return {"measure": "dvc repro, nothing to do", "value": "not measured",
                "note": "pipeline not up to date: run `make demo` first"}
    t = timed(lambda: dvc("repro"), repeats=repeats, warmup=1)
    return {"measure": "dvc repro, nothing to do", "value": round(t["median_s"], 2), "unit": "s",
            "target": "< 5 s", "met": t["median_s"] < 5}


def first_samples(timeout: float = 1800) -> dict:
    """Clone to a scratch dir (sharing .venv and the converted model), run prepare + generate of the first task,
    and stop the clock when the first generation shard lands."""
    scratch = Path(tempfile.mkdtemp(prefix="sot-first-token-"))
    try:
        subprocess.run(["git", "clone", "-q", str(ROOT), str(scratch / "p")], check=True)
        repo = scratch / "p"
        (repo / ".venv").symlink_to(ROOT / ".venv")
        data_dir = os.path.relpath(ROOT.parent / "shared" / "data", repo)
        params = (repo / "params.yaml").read_text().replace("data_dir: ../shared/data", f"data_dir: {data_dir}")
        (repo / "params.yaml").write_text(params)
        import yaml
        task = yaml.safe_load(params)["tasks"][0]
        env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}
        start = time.perf_counter()
        proc = subprocess.Popen(["dvc", "repro", f"generate@{task}"], cwd=repo, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shards = repo / "data" / ".cache" / "generate" / task
        while time.perf_counter() - start < timeout:
            if any(shards.glob("*/chunk-*.jsonl")):
                elapsed = time.perf_counter() - start
                break
            if proc.poll() is not None:
                elapsed = None if proc.returncode else time.perf_counter() - start
                break
            time.sleep(0.5)
        else:
            elapsed = None
        proc.kill()
        proc.wait()
        return {"measure": "pipeline start to first generated shard", "value": round(elapsed, 1) if elapsed else "failed",
                "unit": "s", "note": f"dvc repro generate@{task} in a fresh clone (setup already done)"}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv=None) -> list[dict]:
    rows = [noop_repro(), first_samples()]
    print(markdown_table(rows))
    return rows


if __name__ == "__main__":
    main()
