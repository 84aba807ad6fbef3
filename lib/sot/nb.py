"""Run the stage notebooks, keep each notebook's two files in sync, and set a notebook up wherever it runs.

    python -m sot.nb run 08_sft -p task gsm8k -p set G -p student smollm2-135m -o runs/08_sft/x.ipynb
    python -m sot.nb sync            # parameters cells from params.yaml, then every .ipynb from its .py
    python -m sot.nb sync --check    # only say which pairs are out of sync (exit 1 if any)
    python -m sot.nb index           # runs/index.html: a link to every stage report under runs/
    python -m sot.nb colab you/shape-of-thought  # point the Colab badges and setup cells at your fork

`run` executes notebooks/NAME.py (jupytext percent format, the source of truth; see sot.pairing) with
papermill in the project root and writes the executed notebook (-o, default runs/NAME.ipynb) and its HTML
report beside it (same name, .html), both only once the whole notebook has run (a failed run leaves
.NAME.failed.ipynb/.html there instead and the previous report untouched).

Every name in a notebook's `parameters` cell is looked up in params.yaml: first in the stage's section
(the notebook name without its number: `08_sft` -> `sft`), then at the top level; a matrix item
(`task`, `student`, `set`, `fraction`) defaults to the first element of its plural list; `-p name value`
(a YAML literal) overrides it, which is how DVC passes matrix items. A name found nowhere is an error.
DVC cannot interpolate lists into a command line, so the values travel this way rather than as `-p`
arguments written out in dvc.yaml; `dvc.yaml` still declares every parameter a stage reads, so
`dvc params diff`, `dvc exp run -S` and the stage cache see them.
"""
from __future__ import annotations

import argparse
import ast
import os
import random
import re
import sys
import time
from pathlib import Path

import yaml

from sot.colab import COLAB_BADGE, COLAB_REPO, set_colab_repo  # noqa: F401  (re-exported: sot.nb.set_colab_repo)
from sot.paths import project_root

NOTEBOOKS = Path("notebooks")
RUNS = Path("runs")
NAME = re.compile(r"\d\d_[a-z]+")
SECTION_ALIASES = {"mix": "corrupt"}  # 06_mix reads the corrupt section (base, fractions)
# A comment `sync` writes after a parameter in the parameters cell, where a run by hand needs to know more.
PARAMETER_NOTES = {"data_dir": "  # None: the hub datasets (Colab); a run by hand reads this line, DVC params.yaml"}


class ParamsLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's float rule: `1e-06` and `5E3` (no decimal point) are floats.

    DVC reads and writes params.yaml as YAML 1.2 (`dvc exp run -S sft.lr=1e-06` writes `lr: 1e-06`);
    PyYAML follows YAML 1.1, where such a scalar is the string '1e-06'. Everything else stays as PyYAML reads it."""


# A copy of the resolver table, so adding to it leaves yaml.SafeLoader alone (PyYAML shares the lists).
ParamsLoader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
ParamsLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
                                   list("-+0123456789"))


def load_params(path: str | os.PathLike = "params.yaml") -> dict:
    """params.yaml as the stages read it (YAML 1.2 floats; see ParamsLoader)."""
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=ParamsLoader) or {}


def section_of(notebook: str | os.PathLike) -> str:
    stem = Path(notebook).stem
    verb = stem.split("_", 1)[1] if stem[:2].isdigit() and "_" in stem else stem
    return SECTION_ALIASES.get(verb, verb)


def _source(cell) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def parameters_cell(nb, where: str = "") -> tuple[int, dict]:
    """Index and literal defaults of the cell tagged `parameters` (flat `name = literal` lines)."""
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            values = {}
            for node in ast.parse(_source(cell)).body:
                if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                        and isinstance(node.targets[0], ast.Name)):
                    raise ValueError(f"{where}: parameters cell line {node.lineno}: only `name = literal` allowed")
                try:
                    values[node.targets[0].id] = ast.literal_eval(node.value)
                except ValueError:
                    raise ValueError(f"{where}: parameters cell line {node.lineno}: "
                                     f"{node.targets[0].id} must be a literal (nothing derived)") from None
            return i, values
    raise ValueError(f"{where}: no code cell tagged 'parameters'; tag the first code cell")


def _plural(name: str, section: dict, params: dict) -> list | None:
    for scope in (section, params):
        value = scope.get(name + "s")
        if isinstance(value, list) and value:
            return value
    return None


def _resolve(nb, where: str, params: dict, overrides: dict | None) -> dict:
    _, defaults = parameters_cell(nb, where)
    section = params.get(section_of(where), {}) or {}
    out, missing = {}, []
    for name in defaults:
        if overrides and name in overrides:
            out[name] = overrides[name]
        elif name in section:
            out[name] = section[name]
        elif name in params:
            out[name] = params[name]
        elif _plural(name, section, params) is not None:
            out[name] = _plural(name, section, params)[0]  # a matrix item (task, student, set, fraction)
        else:
            missing.append(name)
    if missing:
        raise KeyError(f"{where}: parameters {missing} are neither in params.yaml section "
                       f"'{section_of(where)}' nor at its top level, nor passed with -p")
    return out


def resolve_parameters(notebook: str | os.PathLike, params: dict, overrides: dict | None = None) -> dict:
    """The values a run of `notebook` (.py or .ipynb) gets: see the module docstring."""
    from sot.pairing import read_notebook

    return _resolve(read_notebook(notebook), str(notebook), params, overrides)


def sources(notebooks: str | os.PathLike = NOTEBOOKS) -> list[Path]:
    """The stage notebooks' .py sources (NN_verb.py), in order."""
    return sorted(p for p in Path(notebooks).glob("*.py") if NAME.fullmatch(p.stem))


def sync(params_file: str | os.PathLike = "params.yaml", notebooks: str | os.PathLike = NOTEBOOKS,
         check: bool = False) -> list[str]:
    """Set each .py's parameters cell to params.yaml's values (matrix items: the first), then write its .ipynb.
    With check=True write nothing and return what is out of date (empty when all is in sync)."""
    from sot.pairing import check_pair, read_notebook, write_pair

    params, problems = load_params(params_file), []
    for path in sources(notebooks):
        book = read_notebook(path)
        i, defaults = parameters_cell(book, str(path))
        values = _resolve(book, str(path), params, None)
        if check:
            if values != defaults:
                problems.append(f"{path}: parameters cell differs from {params_file}: run `python -m sot.nb sync`")
            problems += check_pair(path)
            continue
        book.cells[i].source = "\n".join(f"{k} = {v!r}{PARAMETER_NOTES.get(k, '')}" for k, v in values.items())
        for written in write_pair(path, book):
            print(written)
    return problems


def run(name: str, overrides: dict | None = None, output: str | os.PathLike | None = None,
        params_file: str = "params.yaml", root: str | os.PathLike | None = None) -> Path:
    """Execute notebooks/NAME.py with papermill in the project root; write NAME.ipynb and NAME.html (see
    the module docstring). Returns the executed notebook's path."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from sot.io import atomic_path
    from sot.pairing import for_execution, read_notebook
    from sot.report_html import to_html

    root = Path(root) if root is not None else project_root()
    source = root / NOTEBOOKS / f"{name}.py"
    if not source.exists():
        known = ", ".join(p.stem for p in sources(root / NOTEBOOKS)) or "none"
        raise FileNotFoundError(f"{source}: no such notebook source (notebooks: {known})")
    nb = read_notebook(source)
    params = load_params(root / params_file)
    values = _resolve(nb, str(source), params, overrides)
    # params.yaml's values this stage reads, checked before any model loads: one line naming the key as written
    from sot.params_check import check
    check(params, {section_of(source), *values, *(f"{k}s" for k in values)})
    nb = for_execution(nb)
    out = Path(output) if output else root / RUNS / f"{name}.ipynb"
    if out.suffix != ".ipynb":
        raise ValueError(f"-o {out}: the executed notebook's name must end .ipynb (its report gets .html)")
    out.parent.mkdir(parents=True, exist_ok=True)
    running, failed = out.with_name(f".{out.stem}.running.ipynb"), out.with_name(f".{out.stem}.failed.ipynb")
    title = name if out.stem == name else f"{name} · {out.stem}"
    previous = os.environ.get("SOT_PROGRESS")
    os.environ.setdefault("SOT_PROGRESS", "text")  # the kernel inherits it: plain progress lines (sot.progress)
    start = time.time()
    try:
        quiet = [] if os.environ.get("SOT_NB_VERBOSE", "") not in ("", "0") else \
            ["--IPKernelApp.log_level=ERROR"]   # the kernel's own notices (e.g. "running over TCP without encryption")
        executed = papermill.execute_notebook(nb, str(running), parameters=values, progress_bar=False,
                                              log_output=True, kernel_name="python3", cwd=str(root),
                                              extra_arguments=quiet)
        report = to_html(executed, title)
    except PapermillExecutionError as e:
        _keep_failed(running, failed, title)
        print(f"[sot.nb] {name} failed after {time.time() - start:.1f}s; the executed copy up to the error, with "
              f"the traceback: {failed.with_suffix('.html')}; {out} was left as it was", file=sys.stderr)
        raise StageFailed(f"{title}: {e.ename}: {_first_line(e.evalue)}", failed.with_suffix(".html")) from e
    except BaseException:  # interrupted, or the report could not be rendered: keep what ran, for a look
        if running.exists():
            running.replace(failed)
        raise
    finally:
        if previous is None:
            os.environ.pop("SOT_PROGRESS", None)
    try:
        with atomic_path(out.with_suffix(".html")) as tmp_html:
            tmp_html.write_text(report, encoding="utf-8")
            tmp_html.chmod(0o644)  # a web page for anyone who can read runs/ (temp files are created 0600)
            running.replace(out)  # the two renames follow each other only once both files are complete
    finally:
        running.unlink(missing_ok=True)
    failed.unlink(missing_ok=True)
    failed.with_suffix(".html").unlink(missing_ok=True)
    print(f"[sot.nb] {name} done in {time.time() - start:.1f}s -> {out} and {out.with_suffix('.html')}",
          file=sys.stderr)
    return out


class StageFailed(RuntimeError):
    """A stage notebook raised: the message is its error in one line; `report` the failed run's HTML copy."""

    def __init__(self, message: str, report: Path):
        super().__init__(message)
        self.report = report


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else "(no message)"


class _QuietPapermill:
    """logging filter: papermill's per-cell lines and kernel notices, unless SOT_NB_VERBOSE=1 asks for them."""
    CHATTER = ("Executing Cell", "Ending Cell", "Executing notebook with kernel", "Input Notebook:",
               "Output Notebook:", "Working directory:")

    def filter(self, record) -> bool:
        message = record.getMessage()
        if record.name.startswith("papermill") and message.startswith(self.CHATTER):
            return False
        # jupyter_client/ipykernel notices about the kernel connection (e.g. no connection encryption): not the stage's
        return not record.name.startswith(("traitlets", "jupyter_client", "ipykernel", "nbclient"))


def _keep_failed(running: Path, failed: Path, title: str) -> None:
    """Move a failed run's executed copy to `failed` (hidden: the index and DVC ignore it) and render it too."""
    from sot.pairing import read_notebook
    from sot.report_html import to_html

    running.replace(failed)
    failed.with_suffix(".html").write_text(to_html(read_notebook(failed), f"{title} (failed)"), encoding="utf-8")


def setup(seed: int | None = None) -> None:
    """The second code cell of every notebook: work from the project root wherever the kernel started
    (JupyterLab starts it in notebooks/), make progress bars suit the run (sot.progress), print the banner
    and seed every RNG. Relative paths (data/..., metrics/...) then mean what they mean under DVC."""
    from sot import progress

    root, here = project_root(), Path.cwd().resolve()
    if here != root:
        os.chdir(root)
        print(f"working directory: {root} (the project root; the kernel started in {here})")
    else:
        print(f"working directory: {root} (the project root)")
    progress.use_text_bars_everywhere()
    print(f"progress bars: {progress.mode()}")
    quiet_known_warnings()
    banner(seed)


# Library warnings a reader cannot act on, left out of the reports and logs: transformers' own deprecations that TRL
# triggers inside the Trainer (the 08_sft report showed them six times). Warnings about the run itself stay, e.g.
# sot.sft.data's "examples longer than max_length ... without their end token".
KNOWN_HARMLESS = (
    (FutureWarning, r"`(is_)?gradient_checkpointing` is deprecated and will be removed in v6"),
)


def quiet_known_warnings() -> None:
    """Ignore the KNOWN_HARMLESS warnings in this process (notebooks call it through `setup`)."""
    import warnings

    for category, message in KNOWN_HARMLESS:
        warnings.filterwarnings("ignore", message=message, category=category)


def banner(seed: int | None = None) -> None:
    """Print versions and the device, and seed every RNG."""
    import importlib.metadata as md
    import platform
    import subprocess

    versions = {}
    for pkg in ("sot", "torch", "transformers", "trl", "peft", "datasets", "math-verify", "vllm", "unsloth"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    device = "cpu"
    if "torch" in sys.modules:  # only report the device where the stage uses torch (light stages stay light)
        import torch
        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    print(f"python {platform.python_version()} | git {commit} | device {device}")
    print(" | ".join(f"{k} {v}" for k, v in versions.items()))
    if seed is not None:
        random.seed(seed)
        try:
            import numpy as np
            np.random.seed(seed)
        except ImportError:
            pass
        if "torch" in sys.modules:
            sys.modules["torch"].manual_seed(seed)
        print(f"seed {seed}")


def _parse_overrides(pairs: list[list[str]] | None) -> dict:
    return {k: yaml.load(v, Loader=ParamsLoader) for k, v in pairs or []}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m sot.nb", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute notebooks/NAME.py; write its .ipynb and .html report")
    r.add_argument("name")
    r.add_argument("-p", nargs=2, action="append", metavar=("NAME", "VALUE"))
    r.add_argument("-o", "--output")
    s = sub.add_parser("sync", help="parameters cells from params.yaml; each .ipynb from its .py")
    s.add_argument("--check", action="store_true", help="write nothing; exit 1 if anything is out of sync")
    sub.add_parser("index", help="write runs/index.html linking every report under runs/")
    c = sub.add_parser("colab", help="point the Colab badges and setup cells at github.com/OWNER/NAME")
    c.add_argument("repo", help="owner/name")
    c.add_argument("--branch", default="main")
    a = ap.parse_args(argv)
    if a.cmd != "run":  # sync, index and colab work on the project's own files, from any folder inside it
        os.chdir(project_root())
    if a.cmd == "run":
        import logging  # papermill logs each cell's output (log_output=True): print it, as plain lines
        from sot.params_check import ParamsError

        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
        if os.environ.get("SOT_NB_VERBOSE", "") in ("", "0"):
            for handler in logging.getLogger().handlers:
                handler.addFilter(_QuietPapermill())
        try:
            run(a.name, _parse_overrides(a.p), a.output)
        except StageFailed as e:   # the cause, last and in one line (the traceback is in the failed report)
            print(f"[sot.nb] the traceback: {e.report}", file=sys.stderr)
            sys.exit(f"error: {e}")
        except (ParamsError, KeyError, FileNotFoundError) as e:
            message = e.args[0] if isinstance(e, KeyError) and e.args else e
            sys.exit(f"error: {a.name}: {message}")
    elif a.cmd == "sync":
        problems = sync(check=a.check)
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            sys.exit(1)
    elif a.cmd == "index":
        from sot.report_html import write_index
        print(write_index(RUNS, NOTEBOOKS))
    else:
        for p in set_colab_repo(a.repo, a.branch):
            print(p)


if __name__ == "__main__":
    main()
