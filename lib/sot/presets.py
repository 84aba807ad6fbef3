"""Presets on top of params.yaml: a flat YAML of `section.key: value` overrides.

    python -m sot.presets args presets/paper.yaml    # -> `-S key=value ...` for `dvc exp run`
    python -m sot.presets check presets/paper.yaml   # every key must exist in params.yaml
"""
from __future__ import annotations

import json
import shlex
import sys

import yaml


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def check(preset: dict, params: dict, where: str) -> None:
    for key in preset:
        scope = params
        for part in key.split("."):
            if not isinstance(scope, dict) or part not in scope:
                raise KeyError(f"{where}: {key!r} is not a parameter in params.yaml; fix the name")
            scope = scope[part]


def dvc_args(preset: dict) -> list[str]:
    args = []
    for key, value in preset.items():
        literal = json.dumps(value) if not isinstance(value, str) else value
        args += ["-S", f"{key}={literal}"]
    return args


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ("args", "check"):
        raise SystemExit(__doc__)
    preset = load(argv[1])
    with open("params.yaml", encoding="utf-8") as f:
        check(preset, yaml.safe_load(f), argv[1])
    if argv[0] == "args":
        print(" ".join(shlex.quote(a) for a in dvc_args(preset)))


if __name__ == "__main__":
    main()
