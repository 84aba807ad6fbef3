"""`make bench`: run every benchmark and append its figures, with the machine described, to bench/RESULTS.md."""
from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lib"))
from sot.benchmark import append_results  # noqa: E402

BENCHES = [  # (script, title, argv)
    ("bench_grading.py", "Grading throughput", []),
    ("bench_sandbox.py", "MBPP sandbox throughput", []),
    ("bench_generation.py", "Generation throughput", []),
    ("bench_sft.py", "Fine-tuning throughput", []),
    ("bench_pipeline.py", "Pipeline overhead", []),
]


def load(script: str):
    spec = importlib.util.spec_from_file_location(script[:-3], HERE / script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # so worker processes can pickle the module's functions
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    only = set(argv if argv is not None else sys.argv[1:])
    failed = 0
    for script, title, args in BENCHES:
        if only and script[:-3] not in only and script not in only:
            continue
        print(f"== {title} ({script})", flush=True)
        try:
            module = load(script)
            rows = module.main(args)
            append_results(title, rows, notes=getattr(module, "NOTES", ""))
        except Exception:
            traceback.print_exc()
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
