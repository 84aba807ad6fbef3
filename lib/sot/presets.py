"""Presets on top of params.yaml, run as DVC experiments (`make paper`, `make preset P=presets/NAME.yaml`).

A preset is a YAML mapping of `section.key: value` overrides, one `dvc exp run -S section.key=value` each. A
mapping value (e.g. `models: {name: {ref: ..., style: ...}}`) is merged into params.yaml's mapping key by key,
as DVC merges it; any other value replaces the old one. Set a whole mapping where a key holds a dot
(`models.qwen2.5-1.5b.style` cannot be addressed: DVC splits the path at every dot).

    python -m sot.presets check presets/paper.yaml        # every key is a parameter; the models in use are valid
    python -m sot.presets args presets/paper.yaml         # the dvc command, shell-quoted (to read or copy)
    python -m sot.presets run presets/paper.yaml [--dry] [-- DVC_ARGS...]

`run` calls `dvc exp run` with an argument list (no shell: a list value stays one argument). Before that it
checks that every chat-style model in use has a chat template (loading only tokenizers). `--dry` plans the
whole grid without running anything or touching the hub: `dvc exp run --dry --force` prints every stage with
its command. DVC's dry run needs `--force`: without it, DVC 3.67 hashes the dependencies of every stage it
plans and stops at the first one whose input an earlier stage has not written yet (`data/prepare/...`).
Values are written in Hydra's override grammar (DVC parses `-S` with Hydra): strings double-quoted and escaped.
"""
from __future__ import annotations

import argparse
import copy
import math
import re
import shlex
import subprocess
import sys

import yaml

from sot import styles

KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.+/-]*")   # a dict key Hydra reads unquoted, as the same string
RESERVED_KEYS = ("null", "true", "false", "inf", "nan")   # Hydra reads these (any case) as None, bool, float


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        preset = yaml.safe_load(f) or {}
    if not isinstance(preset, dict) or not all(isinstance(k, str) for k in preset):
        raise ValueError(f"{path}: a preset is a mapping of `section.key: value` lines, got {type(preset).__name__}")
    return preset


def check(preset: dict, params: dict, where: str) -> None:
    """Every preset key must name an existing parameter (a typo would otherwise add a parameter no stage reads)."""
    for key in preset:
        scope = params
        for part in key.split("."):
            if not isinstance(scope, dict) or part not in scope:
                raise KeyError(f"{where}: {key!r} is not a parameter in params.yaml; fix the name "
                               "(a key holding a dot, such as a model name, is set through its whole mapping)")
            scope = scope[part]


def _merge(old, new):
    if isinstance(old, dict) and isinstance(new, dict):
        out = dict(old)
        for k, v in new.items():
            out[k] = _merge(old.get(k), v)
        return out
    return copy.deepcopy(new)


def apply(preset: dict, params: dict) -> dict:
    """params.yaml with the preset applied, as `dvc exp run -S` leaves it (mappings merged, the rest replaced)."""
    out = copy.deepcopy(params)
    for key, value in preset.items():
        *parents, last = key.split(".")
        scope = out
        for part in parents:
            scope = scope[part]
        scope[last] = _merge(scope.get(last), value)
    return out


def _quote(text: str, where: str) -> str:
    """`text` as a double-quoted Hydra string: a quote escaped, a run of backslashes before it (or the end) doubled."""
    if "${" in text:
        raise ValueError(f"{where}: {text!r} holds '${{', which DVC would resolve as an interpolation; "
                         "write the value in params.yaml instead of the preset")
    body = re.sub(r'(\\*)"', lambda m: m.group(1) * 2 + '\\"', text)
    body = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, body)
    return f'"{body}"'


def hydra_value(value, where: str = "preset") -> str:
    """A YAML value written in Hydra's override grammar, so that DVC reads back exactly `value`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value)   # 1e-06, 0.1, inf, -inf: all Hydra floats
    if isinstance(value, str):
        return _quote(value, where)
    if isinstance(value, list):
        return "[" + ", ".join(hydra_value(v, f"{where}[{i}]") for i, v in enumerate(value)) + "]"
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            if not (isinstance(k, str) and KEY.fullmatch(k)) or k.lower() in RESERVED_KEYS:
                raise ValueError(f"{where}: key {k!r} cannot be passed to dvc -S (Hydra reads keys unquoted); "
                                 f"use letters, digits and _ . + / -, starting with a letter, and not "
                                 f"{', '.join(RESERVED_KEYS)}")
            items.append(f"{k}: {hydra_value(v, f'{where}.{k}')}")
        return "{" + ", ".join(items) + "}"
    raise ValueError(f"{where}: {type(value).__name__} values cannot be passed to dvc -S; "
                     "use null, booleans, numbers, strings, lists and mappings")


def dvc_args(preset: dict, where: str = "preset") -> list[str]:
    """`-S key=value` for every preset line, each value one argument. A mapping goes as `++key=value`, Hydra's
    add-or-override: a plain `key=value` may not add a key the mapping in params.yaml lacks (a model only the
    preset names: "Key 'tiny-qwen2' is not in struct"); `++` merges key by key and adds the new ones."""
    args = []
    for key, value in preset.items():
        prefix = "++" if isinstance(value, dict) else ""
        args += ["-S", f"{prefix}{key}={hydra_value(value, f'{where}: {key}')}"]
    return args


def overridden_keys(extra: list[str] | tuple) -> set[str]:
    """The parameters that extra `dvc exp run` arguments set (`-S key=value`, `--set-param key=value`)."""
    keys = set()
    for flag, value in zip(extra, list(extra[1:]) + [""]):
        if flag in ("-S", "--set-param") and "=" in value:
            keys.add(value.split("=", 1)[0].lstrip("+~"))
    return keys


def dvc_command(preset: dict, dry: bool = False, extra: list[str] | tuple = (), where: str = "preset") -> list[str]:
    """The `dvc exp run` argument list (dvc from this Python environment). A parameter set in `extra` (e.g.
    `make paper-smoke ARGS="-S generate.max_new_tokens=384"`) replaces the preset's own line for it: given both,
    DVC kept the preset's value and dropped the user's without a word."""
    plan = ["--dry", "--force"] if dry else []
    mine = overridden_keys(extra)
    kept = {k: v for k, v in preset.items() if k not in mine}
    return [sys.executable, "-m", "dvc", "exp", "run", *plan, *dvc_args(kept, where), *extra]


def prepare(path: str, params_file: str = "params.yaml") -> tuple[dict, dict]:
    """(preset, params with the preset applied), both checked without I/O beyond reading the two files."""
    from sot.nb import load_params   # the stages' own reader: what they will see is what is checked

    preset = load(path)
    params = load_params(params_file)
    check(preset, params, path)
    merged = apply(preset, params)
    styles.check_params(merged, f"{params_file} + {path}")
    return preset, merged


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sot.presets", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("check", "args", "run"):
        p = sub.add_parser(name)
        p.add_argument("preset", help="a preset file, e.g. presets/paper.yaml")
        if name == "run":
            p.add_argument("--dry", action="store_true", help="plan every stage; run nothing")
            p.add_argument("dvc_args", nargs="*", help="more `dvc exp run` arguments, after --")
    a = ap.parse_args(argv)
    try:
        return _main(a)
    except (KeyError, ValueError, RuntimeError, FileNotFoundError) as e:   # our checks: the message says it all
        print(f"sot.presets: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 2


def sft_plan(params: dict) -> list[str]:
    """One line per student: how its fine-tuning runs are launched (method, processes, ddp or fsdp), after its
    `sft.per_student` settings; ARGS given to make override these (the memory check runs before training)."""
    from sot.sft.stage import student_options

    lines = []
    for student in params.get("students") or []:
        o = student_options(params.get("sft") or {}, student)
        n = int(o.get("num_processes", 1) or 1)
        how = "one process" if n == 1 else f"{n} processes, {o.get('distributed', 'ddp')}"
        lines.append(f"sft {student}: {o.get('method', 'lora')} fine-tuning, {how}")
    return lines


def _main(a: argparse.Namespace) -> int:
    preset, merged = prepare(a.preset)
    if a.cmd == "check":
        print(f"{a.preset}: {len(preset)} parameters; model styles {styles.check_params(merged)}")
        return 0
    if a.cmd == "args":
        print(shlex.join(["dvc", "exp", "run", *dvc_args(preset, a.preset)]))
        return 0
    if a.dry:
        print("[sot.presets] dry run: chat templates not checked, nothing run", file=sys.stderr)
        for line in sft_plan(merged):
            print(f"[sot.presets] {line}", file=sys.stderr)
    else:
        styles.check_chat_templates(merged, f"params.yaml + {a.preset}")
    command = dvc_command(preset, a.dry, a.dvc_args, a.preset)
    print("[sot.presets] " + shlex.join(command), file=sys.stderr, flush=True)
    return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
