"""Every stage notebook executed by papermill (sot.nb.run, as DVC runs it) on a small project: GSM8K, four
training and three test problems, the tiny random model as teacher and student, two training steps. Each
report is checked for what a reader should see there: real example records, a table, a figure.

The tiny model writes no correct answer, so after the real generate run the teacher's samples are replaced
by scripted ones (per problem: the human trace with an answer statement = correct, the same with a wrong
answer, one cut by the length limit), which gives classify a G, a W and a truncated sample to show. The tiny
model's paraphrases keep nothing, so P is empty and its fine-tuning is skipped: that path is checked too.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest
import yaml

from sot import nb
from sot.io import read_jsonl, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
SETS = ["H", "G", "W", "P", "F50", "F100"]


def overrides(tiny: str, data_dir: Path) -> dict:
    params = nb.load_params(ROOT / "params.yaml")
    params.update(tasks=["gsm8k"], data_dir=str(data_dir), teacher="tiny", students=["tiny"], sets=SETS,
                  models={"tiny": {"ref": tiny, "style": "chat"}})
    params["prepare"].update(n_train=4, n_test=3)
    params["generate"].update(k=2, max_new_tokens=12, dtype="float32", batch_size=8, shard_size=2)
    params["paraphrase"].update(k=1, max_new_tokens=12, dtype="float32")
    params["corrupt"].update(fractions=[0, 50, 100])
    params["distance"].update(max_new_tokens="auto")          # the longest training completion (sot.instrument)
    params["sft"].update(budget_value=2, save_every=1, max_length=256)
    params["evaluate"].update(max_new_tokens="auto")
    params["figures"].update(formats=["png"], dpi=40, n_perm=200)
    return params


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model, data_dir):
    root = tmp_path_factory.mktemp("project")
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns("*.ipynb"))
    shutil.copy(ROOT / "dvc.yaml", root / "dvc.yaml")
    (root / "params.yaml").write_text(yaml.safe_dump(overrides(tiny_model, data_dir), sort_keys=False))
    return root


def run(project: Path, name: str, **items) -> str:
    """Execute one notebook (items: the matrix values, as DVC passes them); return its HTML report."""
    stem = "-".join(str(v) for v in items.values()) or name
    out = nb.run(name, items, output=project / "runs" / name / f"{stem}.ipynb", root=project)
    book = nbformat.read(out, as_version=4)
    assert not [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])
                if o.get("output_type") == "error"]
    return out.with_suffix(".html").read_text(encoding="utf-8")


def shows(report: str, *texts: str, figures: int = 1, tables: int = 1) -> None:
    """The report holds every text (HTML-escaped as rendered), at least `figures` images and `tables` tables."""
    import html

    for text in texts:
        assert html.escape(text) in report or text in report, f"report does not show {text!r}"
    assert report.count("<img") >= figures, "report has no figure"
    assert len(re.findall(r"<table", report)) >= tables, "report has no table"


def script_teacher(project: Path) -> None:
    """Replace the tiny teacher's samples: per problem a correct, a wrong and a truncated one."""
    path = project / "data" / "generate" / "gsm8k.jsonl"
    samples = read_jsonl(path)
    problems = {p["id"]: p for p in read_jsonl(project / "data" / "prepare" / "gsm8k" / "train.jsonl")}
    out = []
    for s in samples:
        p = problems[s["id"]]
        steps = p["reference"].rsplit("####", 1)[0].strip()
        answer = int(p["answer"].replace(",", ""))
        text = [f"{steps}\nThe answer is {answer}.", f"{steps}\nThe answer is {answer + 1}."][s["sample"]]
        out.append({**s, "completion": text, "finish_reason": "stop", "n_tokens": len(text.split())})
    cut = out[-1]["completion"].replace("The answer is", "The answer is 7") + " and then"   # a wrong answer, cut off
    out.append({**out[-1], "sample": 2, "completion": cut, "finish_reason": "length", "n_tokens": 12})
    write_jsonl(path, out)


def test_every_notebook_runs_and_shows_its_stage(project):
    prepare = run(project, "01_prepare")
    first = read_jsonl(project / "data" / "prepare" / "gsm8k" / "train.jsonl")[0]
    shows(prepare, first["reference"].splitlines()[0])

    generate = run(project, "02_generate", task="gsm8k")
    shows(generate, "finish_reason", "sample 0")
    script_teacher(project)

    classify = run(project, "03_classify", task="gsm8k")
    g = read_jsonl(project / "data" / "sets" / "gsm8k" / "G.jsonl")
    w = read_jsonl(project / "data" / "sets" / "gsm8k" / "W.jsonl")
    assert len(g) == 4 and len(w) == 4
    metrics = json.loads((project / "metrics" / "classify" / "gsm8k.json").read_text())
    assert metrics["truncated"]["n_samples"] == 1 and metrics["truncated"]["excluded"]["W"] == 1
    shows(classify, g[0]["completion"].splitlines()[-1], w[0]["completion"].splitlines()[-1])

    paraphrase = run(project, "04_paraphrase", task="gsm8k")
    assert read_jsonl(project / "data" / "sets" / "gsm8k" / "P.jsonl") == []    # the tiny model keeps nothing
    shows(paraphrase, "unclosed")

    shows(run(project, "05_corrupt", task="gsm8k"), "⟦")
    for fraction in (0, 50, 100):
        shows(run(project, "06_mix", task="gsm8k", fraction=fraction), f"F{fraction}", figures=1)

    shows(run(project, "07_distance", task="gsm8k", student="tiny"), "self")
    sft = run(project, "08_sft", task="gsm8k", student="tiny")            # one group: every set of SETS
    shows(sft, first["reference"].splitlines()[0][:40], "training loss by set", tables=3)
    assert "is empty (0 records)" in sft                                 # P: not trained, and said so
    trained = sorted(p.name for p in (project / "data" / "sft" / "gsm8k-tiny").iterdir())
    assert trained == sorted(SETS) and (project / "data" / "sft" / "gsm8k-tiny" / "P" / "SKIPPED.json").exists()
    adapter = (project / "data" / "sft" / "gsm8k-tiny" / "H" / "adapter_model.safetensors").read_bytes()
    shutil.rmtree(project / "data" / "sft" / "gsm8k-tiny")               # what DVC does before a rerun
    again = run(project, "08_sft", task="gsm8k", student="tiny")
    assert [s for s in SETS if f"{s}: reused the finished run" in again] == [s for s in SETS if s != "P"]
    assert (project / "data" / "sft" / "gsm8k-tiny" / "H" / "adapter_model.safetensors").read_bytes() == adapter

    evaluate = run(project, "09_evaluate", task="gsm8k", student="tiny")  # base, then every set
    shows(evaluate, "strict", "not trained: empty set", tables=2)
    assert sorted(p.stem for p in (project / "data" / "evaluate" / "gsm8k-tiny").iterdir()) == sorted(["base", *SETS])

    figures = run(project, "10_figures")
    shows(figures, "Δ vs H", figures=3)
    results = (project / "figures" / "results.md").read_text()
    assert "gsm8k-tiny-P" in results                       # the skipped run is listed with its reason
