"""One module per pipeline stage: reads the previous stage's files, calls the logic, writes outputs and metrics.

Paths (DVC outs unless said otherwise):
    data/prepare/<task>/{train,test,H}.jsonl     problems (sot.tasks.Problem records) and the human traces
    data/generate/<task>.jsonl                    teacher samples, one record per (id, sample)
    data/sets/<task>/<SET>.jsonl                  training sets H, G, W (classify), P (paraphrase), F<pct> (mix)
    data/corrupt/<task>.jsonl                     one completely flawed trace per base-set trace
    data/sft/<task>-<student>-<set>/              adapter or model, loss history
    data/evaluate/<task>-<student>-<set>.jsonl    per-problem outputs and grades
    metrics/<stage>/...json                       small metrics, in git (cache: false)
"""
from pathlib import Path

DATA = Path("data")
METRICS = Path("metrics")


def sets_dir(task: str) -> Path:
    return DATA / "sets" / task


def set_path(task: str, name: str) -> Path:
    return sets_dir(task) / f"{name}.jsonl"


def run_name(task: str, student: str, set_name: str) -> str:
    return f"{task}-{student}-{set_name}"
