"""The notebooks' machinery: .py/.ipynb pairing, parameters, the runner (papermill -> .ipynb + .html), the index
page, the pipeline wiring, project-root resolution, params.yaml's YAML 1.2 floats and the progress bars.

Two tests start a Jupyter kernel on a throwaway notebook (a few seconds each); everything else is static.
"""
from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path

import nbformat
import pytest
import yaml

from sot import nb, pairing, paths, progress, report_html

ROOT = Path(__file__).resolve().parents[1]
SOURCES = nb.sources(ROOT / "notebooks")
PARAMS = nb.load_params(ROOT / "params.yaml")
STAGE_NAMES = ["01_prepare", "02_generate", "03_classify", "04_paraphrase", "05_corrupt", "06_mix", "07_distance",
               "08_sft", "09_evaluate", "10_figures"]


def code_cells(book):
    return [c for c in book.cells if c.cell_type == "code"]


def test_there_is_one_notebook_pair_per_stage():
    assert [p.stem for p in SOURCES] == STAGE_NAMES
    assert sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb")) == STAGE_NAMES


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_pair_is_in_sync_and_committed_without_outputs(py):
    assert pairing.check_pair(py) == []
    book = nbformat.read(pairing.paired_ipynb(py), as_version=4)
    nbformat.validate(book)
    assert book.metadata["jupytext"]["formats"] == "ipynb,py:percent"   # JupyterLab's jupytext pairs the two
    assert all(c.outputs == [] and c.execution_count is None for c in code_cells(book))


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_parameters_cell_is_the_first_code_cell_and_equals_params_yaml(py):
    book = pairing.read_notebook(py)
    index, defaults = nb.parameters_cell(book, str(py))
    assert book.cells[index] is code_cells(book)[0], "the parameters cell must be the first code cell"
    assert defaults == nb.resolve_parameters(py, PARAMS), f"{py.name}: run `python -m sot.nb sync`"


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_second_code_cell_installs_on_colab_then_calls_setup(py):
    book = pairing.read_notebook(py)
    cell = code_cells(book)[1].source
    assert 'if "google.colab" in sys.modules:' in cell and nb.COLAB_REPO.search(cell)
    assert f'install("{py.stem}", CLONE)' in cell and "!pip" not in cell    # sot.colab.install: tests/test_colab.py
    assert cell.rstrip().endswith("from sot.nb import setup\n\nsetup(seed)")
    assert nb.COLAB_BADGE.search(book.cells[0].source), "the first (markdown) cell carries the Colab badge"
    assert sum("google.colab" in c.source for c in code_cells(book)) == 1


def copy_pair(name: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for suffix in (".py", ".ipynb"):
        shutil.copy(ROOT / "notebooks" / f"{name}{suffix}", dest / f"{name}{suffix}")
    return dest / f"{name}.py"


def test_check_pair_names_outputs_and_drift_and_sync_repairs_both(tmp_path):
    py = copy_pair("03_classify", tmp_path / "notebooks")
    ipynb = pairing.paired_ipynb(py)
    book = nbformat.read(ipynb, as_version=4)
    code_cells(book)[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="x\n")]
    code_cells(book)[2].execution_count = 3
    nbformat.write(book, ipynb)
    (problem,) = pairing.check_pair(py)
    index = book.cells.index(code_cells(book)[2])
    assert "hold outputs" in problem and f"[{index}]" in problem and "sot.nb sync" in problem

    assert "view.head(24)\n" in py.read_text()
    py.write_text(py.read_text().replace("view.head(24)\n", "view.head(12)\n"))   # a later edit to the .py only
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    nb.sync(tmp_path / "params.yaml", tmp_path / "notebooks")
    assert pairing.check_pair(py) == []
    assert "view.head(12)" in "".join(c.source for c in nbformat.read(ipynb, as_version=4).cells)
    assert py.stat().st_mtime >= ipynb.stat().st_mtime        # jupytext in Lab wants the text file no older

    py.write_text(py.read_text().replace("view.head(12)", "view.head(6)"))
    (problem,) = pairing.check_pair(py)
    assert "out of sync" in problem and "cells differ" in problem


def test_metadata_jupyter_writes_on_open_or_save_keeps_the_pair_in_sync(tmp_path):
    py = copy_pair("03_classify", tmp_path / "notebooks")
    ipynb = pairing.paired_ipynb(py)
    book = nbformat.read(ipynb, as_version=4)
    assert book.metadata.language_info == pairing.LANGUAGE_INFO    # what a kernel of the tested Python reports
    book.metadata.language_info = dict(pairing.LANGUAGE_INFO, version="3.12.9")   # saved under another Python
    book.metadata.widgets = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    book.cells[1].metadata["jupyter"] = {"source_hidden": True}
    book.cells[1].metadata["scrolled"] = True
    nbformat.write(book, ipynb)
    assert pairing.check_pair(py) == []

    book.metadata.kernelspec = {"display_name": "other", "language": "python", "name": "other"}
    nbformat.write(book, ipynb)
    (problem,) = pairing.check_pair(py)
    assert "notebook metadata ['kernelspec']" in problem and "cells are in sync" in problem
    assert "outside" not in problem        # nothing to carry into the .py: do not blame an edit


def test_make_lab_shows_the_project_root_and_a_save_through_jupyterlab_keeps_sync_green(tmp_path):
    """`make lab`'s own command, headless, on a copy of the project: the file browser lists the project root, and
    a notebook fetched and saved back unchanged through the contents API (what JupyterLab's save does), with the
    language_info its kernel reports, leaves every pair in sync."""
    import json
    import os
    import shlex
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    project = tmp_path / "project"
    shutil.copytree(ROOT / "notebooks", project / "notebooks", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(ROOT / name, project / name)
    for folder in ("runs", "figures"):
        (project / folder).mkdir()
    nb.sync(project / "params.yaml", project / "notebooks")     # the committed state: every pair in sync
    before = {name: (project / "notebooks" / f"{name}.py").read_text() for name in ("02_generate", "09_evaluate")}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "sot-test"
    dry = subprocess.run(["make", "-n", "-s", "lab", f"LAB_ARGS=--no-browser --ip=127.0.0.1 --port={port} "
                          f"--IdentityProvider.token={token}"], cwd=ROOT, capture_output=True, text=True, check=True)
    command = shlex.split([line for line in dry.stdout.splitlines() if " lab " in line][-1])
    assert command[0].endswith("bin/jupyter") and "--ServerApp.root_dir=." in command
    command[0] = str(Path(sys.executable).parent / "jupyter")
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"))
    server = subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def api(method, path, body=None):
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api{path}", method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    try:
        for _ in range(240):
            try:
                api("GET", "/status")
                break
            except OSError:
                assert server.poll() is None, "jupyter lab exited"
                time.sleep(0.25)
        listing = {item["name"] for item in api("GET", "/contents")["content"]}
        assert {"notebooks", "runs", "figures", "params.yaml", "dvc.yaml"} <= listing
        from ipykernel.ipkernel import IPythonKernel
        for name in ("02_generate", "09_evaluate"):
            model = api("GET", f"/contents/notebooks/{name}.ipynb?type=notebook&content=1")["content"]
            model["metadata"]["language_info"] = dict(IPythonKernel.language_info)   # the running kernel's own
            api("PUT", f"/contents/notebooks/{name}.ipynb", {"type": "notebook", "format": "json", "content": model})
    finally:
        server.terminate()
        server.wait(timeout=30)
    for name in ("02_generate", "09_evaluate"):
        assert pairing.check_pair(project / "notebooks" / f"{name}.py") == []
        # jupytext wrote the .py again, byte for byte the same (DVC depends on it: no stage reruns)
        assert (project / "notebooks" / f"{name}.py").read_text() == before[name]


def test_sync_sets_the_parameters_cell_from_params_yaml_and_is_idempotent(tmp_path, capsys):
    py = copy_pair("08_sft", tmp_path / "notebooks")
    py.write_text(py.read_text().replace("\nlr = ", "\nlr = 123.0  # stale\nold_lr = "))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["sft"]["old_lr"] = 1
    text = yaml.safe_dump(params).replace(f"lr: {params['sft']['lr']}", "lr: 1e-06")  # as DVC writes it
    (tmp_path / "params.yaml").write_text(text)
    assert any("parameters cell differs" in p for p in nb.sync(tmp_path / "params.yaml", py.parent, check=True))
    nb.sync(tmp_path / "params.yaml", py.parent)
    assert sorted(capsys.readouterr().out.split()) == sorted([str(py), str(pairing.paired_ipynb(py))])
    _, defaults = nb.parameters_cell(pairing.read_notebook(py), str(py))
    assert defaults["lr"] == 1e-06 and isinstance(defaults["lr"], float) and defaults["task"] == PARAMS["tasks"][0]
    assert nb.sync(tmp_path / "params.yaml", py.parent, check=True) == []
    nb.sync(tmp_path / "params.yaml", py.parent)
    assert capsys.readouterr().out == ""                      # nothing changed, nothing written


def test_unknown_parameter_is_an_error(tmp_path):
    py = copy_pair("01_prepare", tmp_path)
    py.write_text(py.read_text().replace("n_test = ", "no_such_param = 1\nn_test = "))
    with pytest.raises(KeyError, match="no_such_param"):
        nb.resolve_parameters(py, PARAMS)


def test_derived_value_in_parameters_cell_is_rejected():
    book = {"cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "a = 1\nb = a + 1"}]}
    with pytest.raises(ValueError, match="literal"):
        nb.parameters_cell(book, "x.py")


def test_matrix_items_default_to_first_element_and_the_ipynb_reads_the_same():
    for source in (ROOT / "notebooks" / "08_sft.py", ROOT / "notebooks" / "08_sft.ipynb"):
        resolved = nb.resolve_parameters(source, PARAMS, {"student": "other"})
        assert resolved["task"] == PARAMS["tasks"][0] and resolved["student"] == "other"
        assert resolved["sets"] == PARAMS["sets"] and resolved["lr"] == PARAMS["sft"]["lr"]


def test_params_yaml_floats_follow_yaml_1_2(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("lr: 1e-06\nbig: 5E3\nneg: -2e+3\nplain: 1.5\ndot: .5\nn: 10\nsep: 1_000\nquoted: '1e-06'\n"
                    "inf: .inf\nflag: true\nname: e5\n")
    got = nb.load_params(path)
    assert got == {"lr": 1e-06, "big": 5000.0, "neg": -2000.0, "plain": 1.5, "dot": 0.5, "n": 10, "sep": 1000,
                   "quoted": "1e-06", "inf": float("inf"), "flag": True, "name": "e5"}
    assert [type(got[k]) for k in ("lr", "big", "neg", "n", "sep")] == [float, float, float, int, int]
    assert yaml.safe_load("lr: 1e-06") == {"lr": "1e-06"}    # PyYAML's own loader is left as it was


def test_dvc_runs_every_notebook_from_its_py_and_declares_both_reports():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    stages = dvc["stages"]
    assert "notebooks" not in stages and "build/notebooks" not in (ROOT / "dvc.yaml").read_text()
    run_by = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        m = re.search(r"sot\.nb run (\d\d_[a-z]+)", body["cmd"])
        if not m:
            continue
        run_by.setdefault(m.group(1), []).append(name)
        assert f"notebooks/{m.group(1)}.py" in body["deps"], name
        outs = [o if isinstance(o, str) else next(iter(o)) for o in body["outs"]]
        ipynb = [o for o in outs if o.startswith("runs/") and o.endswith(".ipynb")]
        assert len(ipynb) == 1 and ipynb[0][:-len(".ipynb")] + ".html" in outs, name
        out_arg = re.search(r"-o (\S+)", body["cmd"])
        assert (out_arg.group(1) if out_arg else f"runs/{m.group(1)}.ipynb") == ipynb[0], name
    assert sorted(run_by) == STAGE_NAMES
    index = stages["index"]
    assert index["cmd"] == "python -m sot.nb index" and "runs/10_figures.html" in index["deps"]
    assert {f"notebooks/{n}.py" for n in STAGE_NAMES} <= set(index["deps"])


def test_dvc_plots_name_existing_data_and_templates():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    plots = {next(iter(p)): next(iter(p.values())) for p in dvc["plots"]}
    from sot.report import LOSS_COLUMNS

    loss = plots["Training loss by set"]      # figures/loss.csv (sot.report.write_loss): one chart, a line per set
    assert loss["x"] == "step" and loss["y"] == {"figures/loss.csv": "loss"}
    assert {"task", "student", "set", "step", "loss"} <= set(LOSS_COLUMNS)
    assert '"field": "set"' in (ROOT / ".dvc" / "plots" / f"{loss['template']}.json").read_text()
    for title in ("Accuracy by training set", "Tolerance to flawed traces"):
        spec = plots[title]
        assert spec["y"] == {"figures/accuracy.csv": "strict"} and spec["x"] == "set"
        template = json.loads((ROOT / ".dvc" / "plots" / f"{spec['template']}.json").read_text())
        text = json.dumps(template)
        assert "<DVC_METRIC_DATA>" in text and "<DVC_METRIC_Y>_lo" in text and "<DVC_METRIC_Y>_hi" in text
    header = (ROOT / "figures" / "accuracy.csv").read_text().splitlines()[0].split(",")
    assert {"task", "student", "set", "strict", "strict_lo", "strict_hi"} <= set(header)


def make_project(root: Path) -> Path:
    """A throwaway project: params.yaml, dvc.yaml and one notebook that shows a table, a figure and progress."""
    (root / "notebooks" / "deep" / "er").mkdir(parents=True)
    (root / "params.yaml").write_text("seed: 3\ntiny:\n  n: 4\n  fail: false\n")
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "notebooks" / "01_tiny.py").write_text(textwrap.dedent('''\
        # %% [markdown]
        # # 1 · Tiny: a throwaway stage

        # %% tags=["parameters"]
        n = 1
        fail = True
        seed = 0

        # %%
        from sot.nb import setup

        setup(seed)

        # %%
        import os
        import time
        from tqdm.auto import tqdm as library_tqdm  # what transformers, datasets and TRL use
        from sot.progress import tqdm
        for _ in tqdm(range(n), desc="ours", unit="item"):
            time.sleep(0.01)
        for _ in library_tqdm(range(3), desc="a library's"):
            pass
        print("cwd", os.getcwd())
        assert not fail, "failing on purpose"

        # %%
        import pandas as pd
        pd.DataFrame({"set": ["H", "G"], "accuracy": [0.25, 0.5]})

        # %%
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot(range(n))
        plt.show()
        '''))
    return root


def test_runner_writes_the_executed_notebook_and_its_html_report_atomically(tmp_path):
    root = make_project(tmp_path)
    out = nb.run("01_tiny", {"n": 5}, root=root)
    html_path = out.with_suffix(".html")
    assert out == root / "runs" / "01_tiny.ipynb" and html_path.exists()
    assert sorted(p.name for p in (root / "runs").iterdir()) == ["01_tiny.html", "01_tiny.ipynb"]   # no temp files
    book = nbformat.read(out, as_version=4)
    injected = next(c for c in book.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "n = 5" in injected.source and "fail = False" in injected.source and "seed = 3" in injected.source
    streams = "".join(o.get("text", "") for c in code_cells(book) for o in c.outputs if o.output_type == "stream")
    assert f"cwd {root}" in streams and "working directory:" in streams and "progress bars: text" in streams
    assert re.search(r"ours: 100%\|#+\| 5/5 .*item/s\]", streams), streams
    assert re.search(r"a library's: 100%\|#+\| 3/3", streams), streams
    assert "\r" not in streams and "TqdmWarning" not in streams and "IProgress" not in streams
    kinds = {k for c in code_cells(book) for o in c.outputs for k in o.get("data", {})}
    assert {"image/png", "text/html"} <= kinds and not any("widget" in k for k in kinds)
    assert "widgets" not in book.metadata
    page = html_path.read_text()
    assert "<title>01_tiny</title>" in page and "1 · Tiny: a throwaway stage" in page
    assert "data:image/png;base64," in page and "<table" in page and "accuracy" in page
    assert "setup" in page and "ours: 100%" in page   # code and progress shown

    before = {p.name: p.read_bytes() for p in (root / "runs").iterdir()}
    with pytest.raises(Exception, match="failing on purpose"):
        nb.run("01_tiny", {"fail": True}, root=root)
    after = {p.name: p.read_bytes() for p in (root / "runs").iterdir() if not p.name.startswith(".")}
    assert after == before, "a failed run must leave the previous report as it was"
    assert sorted(p.name for p in (root / "runs").glob(".*")) == [".01_tiny.failed.html", ".01_tiny.failed.ipynb"]
    assert "failing on purpose" in (root / "runs" / ".01_tiny.failed.html").read_text()
    report_html.write_index(root / "runs", root / "notebooks")
    assert ".01_tiny.failed" not in (root / "runs" / "index.html").read_text()


def test_index_links_every_report_grouped_by_stage(tmp_path):
    runs, books = tmp_path / "runs", tmp_path / "notebooks"
    for rel in ("01_prepare.html", "06_mix/gsm8k-F100.html", "06_mix/gsm8k-F25.html", "06_mix/countdown-F0.html",
                "06_mix/.gsm8k-F50.failed.html", "06_mix/gsm8k-F25.ipynb", "99_gone.html", ".x.running.html"):
        (runs / rel).parent.mkdir(parents=True, exist_ok=True)
        (runs / rel).write_text("<html></html>")
    for name in ("01_prepare", "06_mix"):
        copy_pair(name, books)
    mix_py = books / "06_mix.py"     # a title with characters HTML must escape
    mix_py.write_text(re.sub(r"(?m)^# # 6 · Mix: .*$", "# # 6 · Mix: the F<pct> sets", mix_py.read_text(), count=1))
    page = report_html.write_index(runs, books).read_text()
    titles = re.findall(r"<h2>(.*?)</h2>", page)
    assert titles == ["1 · Prepare: problems and human traces (H)", "6 · Mix: the F&lt;pct&gt; sets", "99_gone"]
    links = re.findall(r'<a href="([^"]+)">([^<]+)</a>', page)
    assert links == [("01_prepare.html", "01_prepare"), ("06_mix/countdown-F0.html", "countdown-F0"),
                     ("06_mix/gsm8k-F25.html", "gsm8k-F25"), ("06_mix/gsm8k-F100.html", "gsm8k-F100"),
                     ("99_gone.html", "99_gone")]
    assert "no notebooks/99_gone.py" in page and "5 executed notebooks in 3 stages" in page
    for href, _ in links:
        assert (runs / href).exists()


def test_project_root_is_found_from_a_subfolder_and_setup_moves_there(tmp_path, monkeypatch, capsys):
    root = make_project(tmp_path)
    deep = root / "notebooks" / "deep" / "er"
    assert paths.project_root(deep) == root and paths.project_root(root / "notebooks" / "01_tiny.py") == root
    monkeypatch.chdir(deep)
    nb.setup(7)
    assert Path.cwd() == root
    out = capsys.readouterr().out
    assert f"working directory: {root} (the project root; the kernel started in {deep})" in out and "seed 7" in out
    (root / "dvc.yaml").unlink()
    with pytest.raises(FileNotFoundError, match="params.yaml and dvc.yaml"):
        paths.project_root(deep)


def test_text_progress_prints_whole_lines_with_the_rate(monkeypatch):
    import io

    monkeypatch.setenv("SOT_PROGRESS", "text")
    monkeypatch.setenv("SOT_PROGRESS_INTERVAL", "0")
    stream = io.StringIO()
    for _ in progress.tqdm(range(3), desc="gen", unit="sample", file=stream, leave=False):
        pass
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("gen:   0%") and re.match(r"gen: 100%\|#+\| 3/3 .*sample/s\]", lines[-1]), lines
    assert len(lines) == len(set(lines)) and "\r" not in stream.getvalue()
    writer = progress.LineWriter(stream := io.StringIO())
    for chunk in ("\r a 1/2   ", "\r a 1/2", "\n", "\x1b[A\r b\r", ""):
        writer.write(chunk)
    assert stream.getvalue() == "a 1/2\nb\n"


def test_progress_mode_follows_the_environment(monkeypatch):
    monkeypatch.setenv("SOT_PROGRESS", "terminal")
    assert progress.mode() == "terminal" and progress.bar_class() is progress.std_tqdm
    monkeypatch.setenv("SOT_PROGRESS", "text")
    assert progress.bar_class() is progress.TextTqdm
    monkeypatch.setenv("SOT_PROGRESS", "fancy")
    with pytest.raises(ValueError, match="SOT_PROGRESS='fancy'"):
        progress.mode()
    monkeypatch.delenv("SOT_PROGRESS")
    assert progress.mode() in {"text", "terminal"}          # no kernel here: never a widget


def test_set_colab_repo_rewrites_badges_and_setup_cells(tmp_path):
    books = tmp_path / "notebooks"
    for name in STAGE_NAMES[:2]:
        copy_pair(name, books)
    readme = tmp_path / "README.md"
    readme.write_text("[![Open In Colab](x)](https://colab.research.google.com/github/OWNER/shape-of-thought/blob/"
                      "main/notebooks/01_prepare.ipynb)\n")
    changed = nb.set_colab_repo("alice/sot-repro", branch="dev", notebooks=books, readme=readme)
    assert len(changed) == 5                                  # two pairs and the README
    for suffix in (".py", ".ipynb"):
        text = (books / f"01_prepare{suffix}").read_text()
        assert "colab.research.google.com/github/alice/sot-repro/blob/dev/notebooks/01_prepare.ipynb" in text
        assert "https://github.com/alice/sot-repro" in text and "github.com/OWNER" not in text
        assert "github/OWNER" not in text
    assert pairing.check_pair(books / "01_prepare.py") == []
    assert "github/alice/sot-repro/blob/dev/notebooks/01_prepare" in readme.read_text()
    assert nb.set_colab_repo("alice/sot-repro", branch="dev", notebooks=books, readme=readme) == []  # idempotent
    with pytest.raises(ValueError, match="owner/name"):
        nb.set_colab_repo("not a repo", notebooks=books, readme=readme)


# Stages whose outputs DVC's run cache may never restore, and why: their outputs belong in git (the figures and
# the results table the README shows; the index of reports). Every other stage must be restorable.
GIT_TRACKED_OUTS = {"figures": {"figures"}, "index": {"runs/index.html"}}


def test_every_expensive_stage_can_be_restored_from_the_run_cache():
    """DVC 3.67 saves no run-cache entry for a stage with a `cache: false` out (metrics are fine): such a stage
    reruns on every experiment that returns to earlier parameters. Only the cheap git-tracked stages may have one."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        body = stage.get("do", stage)
        uncached = {next(iter(o)) for o in body.get("outs", []) if isinstance(o, dict)
                    and next(iter(o.values())).get("cache") is False}
        assert uncached == GIT_TRACKED_OUTS.get(name, set()), f"dvc.yaml stage {name}: uncached outs {uncached}"


def test_every_committed_metric_is_an_output_of_the_committed_lock():
    """The committed dvc.lock holds the stages of dvc.yaml and nothing else, and the metrics in git are what it
    says the stages wrote: a file left over from an older layout
    (e.g. metrics/evaluate/<task>-<student>-<set>.json after sft and evaluate were grouped) is read by nothing and
    misleads whoever opens it."""
    import subprocess

    from test_presets import expected_stages

    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())
    # DVC keeps the entries of stages dvc.yaml no longer has (an older layout, a task the demo dropped): none here
    assert set(lock["stages"]) == expected_stages(yaml.safe_load((ROOT / "dvc.yaml").read_text()), PARAMS)
    outs = {o["path"] for stage in lock["stages"].values() for o in stage.get("outs", [])}
    tracked = subprocess.run(["git", "ls-files", "metrics"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    stray = [f for f in tracked if not f.endswith(".gitignore")
             and not any(f == o or f.startswith(o.rstrip("/") + "/") for o in outs)]
    assert stray == [], f"in git under metrics/ but no output of dvc.lock: {stray}"
