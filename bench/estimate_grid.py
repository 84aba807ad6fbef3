"""GPU-hours of the paper's grid (presets/paper.yaml) on one GPU, stage by stage, with the arithmetic shown.

Work is counted from the data: problems per split, and prompt + human-trace (H) tokens per problem under the
SmolLM2 tokenizer (the only one offline here; Qwen's and Gemma's tokenizers differ by some tens of percent).
Throughputs are measured where we measured them (bench/results/*/sft.json: fine-tuning on an H200) and
otherwise bounded from the hardware (decode: weight bytes read once per step, concurrency limited by KV-cache
memory), which makes those rows lower bounds on time. Every assumption is printed next to its number.

    python bench/estimate_grid.py                 # prints a markdown table (pasted into the README)
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

# Public model shapes: parameters, bf16 weight bytes, KV-cache bytes per token (2 x layers x kv_heads x head_dim x 2)
MODELS = {
    "gemma-2-27b-it": {"params": 27.2e9, "matmul_params": 27.2e9, "kv_bytes": 2 * 46 * 16 * 128 * 2},
    "qwen2.5-1.5b": {"params": 1.54e9, "matmul_params": 1.54e9, "kv_bytes": 2 * 28 * 2 * 128 * 2},
    "gemma-2-2b": {"params": 2.61e9, "matmul_params": 2.61e9, "kv_bytes": 2 * 26 * 4 * 256 * 2},
    "llama-3.1-8b": {"params": 8.03e9, "matmul_params": 8.03e9 - 128256 * 4096, "kv_bytes": 2 * 32 * 8 * 128 * 2},
}
GPU = {"name": "H100 SXM 80 GB", "bf16_tflops": 989.0, "hbm_tb_s": 3.35, "memory_gb": 80.0}


def token_stats(tasks: list[str], data_dir: str | None) -> dict:
    """Problems per split and mean prompt / H-completion tokens per training problem, from the data."""
    from transformers import AutoTokenizer

    from sot.models import OFFLINE_DEFAULT, resolve
    from sot.prompts import render
    from sot.tasks import get_task

    tok = AutoTokenizer.from_pretrained(resolve(OFFLINE_DEFAULT))
    out = {}
    for name in tasks:
        task = get_task(name)
        train, test = task.load_split("train", data_dir), task.load_split("test", data_dir)
        prompts = [len(tok(render(p.question, "plain")).input_ids) for p in train]
        traces = [len(tok(p.reference).input_ids) for p in train]
        out[name] = {"train": len(train), "test": len(test), "prompt_tokens": statistics.mean(prompts),
                     "trace_tokens": statistics.mean(traces)}
    return out


def decode_bound(model: str, seq_tokens: float, max_seqs: int = 256) -> tuple[float, str]:
    """Upper bound on decode tokens/s on one GPU. A step emits one token for each sequence in flight; it takes at
    least the time to read the bf16 weights once and at least 2N FLOPs a token at peak; sequences in flight are
    capped by what the KV cache fits in the memory left after the weights (90 % usable) and by `max_seqs`
    (the paper preset's batch size)."""
    m = MODELS[model]
    weights_gb = 2 * m["params"] / 1e9
    kv_gb = 0.9 * GPU["memory_gb"] - weights_gb
    seqs = min(max_seqs, int(kv_gb * 1e9 / (m["kv_bytes"] * seq_tokens)))
    read_s = weights_gb / (GPU["hbm_tb_s"] * 1e3)
    compute_s = 2 * m["params"] * seqs / (GPU["bf16_tflops"] * 1e12)
    step_s = max(read_s, compute_s)
    rate = seqs / step_s
    limit = (f"{weights_gb:.0f} GB of weights at {GPU['hbm_tb_s']} TB/s" if read_s >= compute_s
             else f"2N FLOPs x {seqs} at peak")
    return rate, f"{seqs} seqs / {step_s * 1e3:.2f} ms a step ({limit}) = {rate:,.0f} tok/s"


def sft_rate(model: str, measured: dict) -> tuple[float, str]:
    """Training tokens/s at the MFU measured for full fine-tuning of Qwen2.5-1.5B (Unsloth) on the H200."""
    mfu = measured["mfu"]
    n = MODELS[model]["matmul_params"]
    rate = mfu * GPU["bf16_tflops"] * 1e12 / (6 * n)
    if model == "qwen2.5-1.5b":
        return measured["tokens_per_s"], f"measured: {measured['tokens_per_s']:,.0f} tok/s (Unsloth, full, H200)"
    return rate, f"MFU {mfu:.1%} (measured on 1.5B) x {GPU['bf16_tflops']:.0f} TFLOP/s / (6 x {n / 1e9:.2f}e9) = {rate:,.0f} tok/s"


def sharding_table(preset: dict, tasks: list, students: list, n_sets: int) -> list[str]:
    """Per student: the preset's sft.distributed and processes, the memory per GPU before activations
    (sot.sft.distributed's arithmetic) and the fine-tuning runs that are sharded (FSDP)."""
    from sot.sft.distributed import memory_plan
    from sot.sft.stage import student_options

    sft = {k.split(".", 1)[1]: v for k, v in preset.items() if k.startswith("sft.")}
    rows = [f"Fine-tuning memory per GPU before activations ({GPU['name']}, {GPU['memory_gb']:.0f} GB; 80 % usable):",
            "", "| student | sft.distributed | processes | bytes/param | total GB | GB per GPU | fits | sharded runs |",
            "|---|---|---:|---:|---:|---:|---|---:|"]
    sharded_runs = 0
    for s in students:
        o = student_options(sft, s)
        mode, n = o.get("distributed", "ddp"), int(o.get("num_processes", 1) or 1)
        m = MODELS[s]["params"]
        plan = memory_plan(m, m, o.get("method", "lora"), "float32", "adamw_torch", n, mode, GPU["memory_gb"] * 1e9)
        runs = len(tasks) * n_sets if plan["sharded"] else 0
        sharded_runs += runs
        rows.append(f"| {s} | {mode} | {n} | {plan['bytes_per_param']:.0f} | {plan['total_gb']:.1f} | "
                    f"{plan['per_gpu_gb']:.1f} | {'yes' if plan['fits'] else 'NO'} | {runs} |")
    rows.append(f"| **sharded (FSDP) runs** | | | | | | | **{sharded_runs}** |")
    return rows


def main(argv=None) -> str:
    import yaml

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default=str(ROOT / "presets" / "paper.yaml"))
    ap.add_argument("--sft-results", default=str(ROOT / "bench" / "results" / "h200-2026-11-29" / "sft.json"))
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--teacher-length", type=float, default=1.0,
                    help="teacher / student completion length as a multiple of the H trace's (assumption)")
    args = ap.parse_args(argv)
    preset = yaml.safe_load(Path(args.preset).read_text())
    tasks, students, teacher = preset["tasks"], preset["students"], preset["teacher"]
    k, epochs, n_sets = preset["generate.k"], preset["sft.epochs"], len(preset["sets"])
    rows = json.loads(Path(args.sft_results).read_text())
    measured = next(r for r in rows if r["backend"] == "unsloth" and r["method"] == "full" and r.get("tokens_per_s"))

    stats = token_stats(tasks, args.data_dir)
    n_train = sum(s["train"] for s in stats.values())
    n_test = sum(s["test"] for s in stats.values())
    trace = sum(s["train"] * s["trace_tokens"] for s in stats.values()) / n_train * args.teacher_length
    prompt = sum(s["train"] * s["prompt_tokens"] for s in stats.values()) / n_train
    per_example = prompt + trace
    lines = [f"Data: {n_train:,} training and {n_test:,} test problems ("
             + ", ".join(f"{t} {s['train']:,}/{s['test']:,}" for t, s in stats.items())
             + f"); mean prompt {prompt:.0f} and completion {trace:.0f} tokens (H traces x {args.teacher_length}, "
             f"SmolLM2 tokenizer). GPU: one {GPU['name']} ({GPU['bf16_tflops']:.0f} TFLOP/s bf16 dense, "
             f"{GPU['hbm_tb_s']} TB/s).", "",
             "| stage | work | throughput (basis) | GPU-hours |", "|---|---|---|---:|"]
    total = 0.0

    def add(stage, work_tokens, work_text, rate, basis):
        nonlocal total
        hours = work_tokens / rate / 3600
        total += hours
        lines.append(f"| {stage} | {work_text} = {work_tokens / 1e6:,.1f} M tok | {basis} | {hours:,.2f} |")

    rate, basis = decode_bound(teacher, per_example)
    add(f"generate ({teacher}, vLLM)", n_train * k * trace, f"{n_train:,} x k={k} x {trace:.0f}", rate,
        f"not measured; bound {basis}")
    add(f"paraphrase ({teacher})", n_train * trace, f"{n_train:,} x {trace:.0f}", rate, "same bound")
    for s in students:
        srate, sbasis = sft_rate(s, measured)
        fwd = 3 * srate   # forward only: 2N of the 6N FLOPs a token
        add(f"distance ({s})", n_sets * n_train * per_example, f"{n_sets} sets x {n_train:,} x {per_example:.0f}",
            fwd, f"forward = 3x training rate ({srate:,.0f})")
        drate, dbasis = decode_bound(s, per_example)
        add(f"distance: own samples ({s})", n_train * trace, f"{n_train:,} x {trace:.0f}", drate,
            f"not measured; bound {dbasis}")
        add(f"sft ({s}, full, Unsloth)", n_sets * epochs * n_train * per_example,
            f"{n_sets} sets x {epochs} epochs x {n_train:,} x {per_example:.0f}", srate, sbasis)
        add(f"evaluate ({s}, vLLM)", (n_sets + 1) * n_test * trace, f"{n_sets + 1} models x {n_test:,} x {trace:.0f}",
            drate, "same bound as own samples")
    lines.append(f"| **total** | | | **{total:,.1f}** |")
    lines += ["", *sharding_table(preset, tasks, students, n_sets)]
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    main()
