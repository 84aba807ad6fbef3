"""Training throughput of the SFT backends: tokens/s, peak memory and model FLOPs utilisation (MFU).

CPU: TRL (+PEFT LoRA, and full fine-tuning) on the offline SmolLM2-135M. CUDA: Unsloth vs TRL+PEFT, LoRA and
full, on Qwen2.5-1.5B and gemma-2-2b architectures built from their configs with random weights (no hub here;
speed does not depend on the weights). Every row runs in its own process (importing Unsloth patches TRL and
transformers for the whole process, which would taint the TRL rows) on fixed-length random-token examples
(no padding; the first quarter of each sequence is a masked "prompt"). Tokens/s = tokens per optimizer step /
median step time over the steps after warm-up. MFU = 6 * N * tokens/s / peak, N = parameters in matmuls
(all parameters, less the input embedding when it is not tied to the LM head), peak = dense bf16 TFLOP/s of
the GPU found by name; LoRA rows use the same 6N convention (their real cost is nearer 4N).

    python bench/bench_sft.py                    # all rows; rows that cannot run say why
    python bench/bench_sft.py --only cpu --steps 3 --warmup 1 --threads 1 --out bench/sft_cpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from sot.benchmark import ARCH_CONFIGS, random_model  # noqa: E402

PEAK_BF16_TFLOPS = [("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0)]   # dense, no sparsity


def default_rows(steps: int, warmup: int) -> list[dict]:
    rows = [{"device": "cpu", "backend": "trl", "method": m, "arch": "smollm2-135m", "seq": 128, "batch": 4,
             "steps": steps, "warmup": warmup} for m in ("lora", "full")]
    for arch in ARCH_CONFIGS:
        for method in ("lora", "full"):
            for backend in ("unsloth", "trl"):
                rows.append({"device": "cuda", "backend": backend, "method": method, "arch": arch, "seq": 1024,
                             "batch": 8, "steps": steps, "warmup": warmup, "gc": method == "lora"})
    return rows


def peak_tflops(name: str) -> float | None:
    return next((tf for key, tf in PEAK_BF16_TFLOPS if key in name), None)


def _model_folder(arch: str, work: Path) -> str:
    """The offline SmolLM2-135M, or a random-weight model of `arch` (built on the GPU) with the SmolLM2 tokenizer."""
    from sot.models import OFFLINE_DEFAULT, resolve

    if arch == "smollm2-135m":
        return resolve(OFFLINE_DEFAULT)
    return str(random_model(arch, work / arch, device="cuda"))


def _synthetic_set(n: int, seq: int, vocab: int, seed: int = 0):
    import random

    from sot.sft.data import IGNORE, TokenizedSet
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        ids = [rng.randrange(100, vocab) for _ in range(seq)]
        examples.append({"input_ids": ids, "attention_mask": [1] * seq,
                         "labels": [IGNORE] * (seq // 4) + ids[seq // 4:]})
    return TokenizedSet(examples=examples, ids=[str(i) for i in range(n)])


def _matmul_params(model) -> int:
    total = sum(p.numel() for p in model.parameters())
    embed = model.get_input_embeddings().weight
    out = model.get_output_embeddings()
    tied = out is not None and out.weight is embed
    return total if tied else total - embed.numel()


def run_row(row: dict) -> dict:
    """One benchmark row, in this process."""
    import torch

    if row["backend"] == "unsloth":
        import unsloth  # noqa: F401  (before TRL, which it patches)
    if row.get("threads"):
        torch.set_num_threads(row["threads"])
    from transformers import AutoTokenizer, TrainerCallback

    from sot.sft.config import SFTConfig, plan_steps, resolve_bf16, resolve_model_dtype
    from sot.sft.trl_backend import run_trainer

    if row["backend"] == "unsloth":
        from sot.sft.unsloth_backend import make_trainer
    else:
        from sot.sft.trl_backend import make_trainer
    cuda = row["device"] == "cuda"

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.ends = [time.perf_counter()]

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            self.ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_path = _model_folder(row["arch"], work)
        tok = AutoTokenizer.from_pretrained(model_path)
        total_steps = row["warmup"] + row["steps"]
        tset = _synthetic_set(row["batch"] * total_steps, row["seq"], min(len(tok), 49152))
        cfg = SFTConfig(model=model_path, method=row["method"], lr=1e-5, budget="steps", budget_value=total_steps,
                        per_device_batch_size=row["batch"], max_length=row["seq"], logging_steps=1000,
                        gradient_checkpointing=row.get("gc", False), backend=row["backend"])
        plan = plan_steps(tset.token_counts, cfg)
        bf16 = resolve_bf16(cfg)
        timer = StepTimer()
        trainer = make_trainer(cfg, model_path, tok, tset, None, plan, work / "out", bf16,
                               resolve_model_dtype(cfg, bf16), callbacks=[timer])
        result = run_trainer(trainer, cfg)
        n_params = _matmul_params(trainer.model)
    steps = [b - a for a, b in zip(timer.ends, timer.ends[1:])][row["warmup"]:]
    median = statistics.median(steps)
    tokens_per_s = row["batch"] * row["seq"] / median
    out = {**row, "tokens_per_s": round(tokens_per_s, 1), "step_s_median": round(median, 4),
           "step_s_all": [round(s, 4) for s in steps], "peak_memory_gb": result["peak_memory_gb"],
           "params": n_params, "bf16": bf16, "final_loss": result["final_loss"], "mfu": None, "note": ""}
    if cuda:
        name = torch.cuda.get_device_name(0)
        peak = peak_tflops(name)
        out["gpu"] = name
        if peak:
            out["mfu"] = round(6 * n_params * tokens_per_s / (peak * 1e12), 4)
    return out


def _spawn(row: dict, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--row", json.dumps(row)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        return {**row, "note": f"not measured (over {timeout:.0f} s)"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("ROW "):
            return json.loads(line[4:])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return {**row, "note": f"failed: {tail[0][:160]}"}


def _cannot_run(row: dict, cuda: bool) -> str | None:
    if row["device"] == "cuda" and not cuda:
        return "not measured (no CUDA)"
    if row["backend"] == "unsloth":
        import importlib.util
        if importlib.util.find_spec("unsloth") is None:
            return "not measured (unsloth not installed)"
    return None


def markdown(rows: list[dict]) -> str:
    head = ("| device | backend | method | model | seq x batch | grad. ckpt | tokens/s | step s (median) | peak GB "
            "| MFU | note |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else ""
        gc = "yes" if r.get("gc") else "no"
        lines.append(f"| {r['device']} | {r['backend']} | {r['method']} | {r['arch']} | {r['seq']} x {r['batch']} | {gc} | "
                     f"{r.get('tokens_per_s', '')} | {r.get('step_s_median', '')} | {r.get('peak_memory_gb') or ''} "
                     f"| {mfu} | {r.get('note', '')} |")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["cpu", "cuda"], help="run only the rows of this device")
    parser.add_argument("--steps", type=int, default=4, help="measured steps per row (after warm-up)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up steps per row, not measured")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per row")
    parser.add_argument("--archs", help="comma-separated architectures of the cuda rows (default: all of ARCH_CONFIGS)")
    parser.add_argument("--methods", default="lora,full", help="comma-separated: lora, full")
    parser.add_argument("--threads", type=int, help="torch CPU threads in each row (default: torch's choice)")
    parser.add_argument("--out", help="also write the rows as JSON here")
    parser.add_argument("--row", help=argparse.SUPPRESS)   # internal: run one row in this process
    args = parser.parse_args(argv)
    if args.row:
        print("ROW " + json.dumps(run_row(json.loads(args.row))), flush=True)
        return []
    import torch
    cuda = torch.cuda.is_available()
    rows = []
    for row in default_rows(args.steps, args.warmup):
        if args.only and row["device"] != args.only:
            continue
        if row["method"] not in args.methods.split(","):
            continue
        if args.archs and row["device"] == "cuda" and row["arch"] not in args.archs.split(","):
            continue
        if args.threads and row["device"] == "cpu":
            row["threads"] = args.threads
        reason = _cannot_run(row, cuda)
        rows.append({**row, "note": reason} if reason else _spawn(row, args.timeout))
        print(f"[bench_sft] {row['device']} {row['backend']} {row['method']} {row['arch']}: "
              f"{rows[-1].get('tokens_per_s', '-')} tokens/s {rows[-1].get('note', '')}", file=sys.stderr, flush=True)
        if args.out:   # after every row, so rows measured before a kill are kept
            Path(args.out).write_text(json.dumps(rows, indent=2))
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
