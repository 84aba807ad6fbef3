"""Generation throughput: transformers batched vs one sequence at a time (CPU, and GPU when present), and
vLLM vs batched transformers (CUDA + vllm only; otherwise the rows say "not measured"), for k samples per prompt.

Every sample is forced to exactly --max-new-tokens tokens (EOS ignored, no stop strings), so all rows
generate the same number of tokens. Median of --repeats timed runs after one warm-up run.

    python bench/bench_generation.py                      # offline SmolLM2-135M, 2 prompts, 32 new tokens
    python bench/bench_generation.py --model Qwen/Qwen2.5-1.5B-Instruct --prompts 64 --max-new-tokens 256
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

QUESTIONS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
    "What is the remainder when 2^10 is divided by 7?",
    "Write a Python function that returns the second largest number in a list.",
    "Betty needs $100 for a wallet. She has half of the money; her parents give her $15 and her grandparents "
    "twice as much as her parents. How much more money does Betty need?",
    "Find the sum of all positive divisors of 36.",
    "James writes a 3-page letter to 2 different friends twice a week. How many pages does he write a year?",
    "Using the numbers 3, 7, 25 and 50, reach 125 with + - * /.",
]


def prompts(count: int) -> list[list[dict]]:
    return [[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}] for i in range(count)]


def time_backend(backend, prompt_list, sampling, repeats: int) -> dict:
    """Warm up with one full run of the same workload, then time `repeats` runs; tokens/s from the median run.
    (With a 4-token warm-up, the H200 run's first row, batched k=1, took 137 ms per decode step, slower than
    every row after it: warm-up cost, so the warm-up is now the whole workload.)"""
    backend.generate(prompt_list, sampling, progress=False)
    seconds, tokens = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = backend.generate(prompt_list, sampling, progress=False)
        seconds.append(time.perf_counter() - start)
        counted = sum(s.n_tokens for row in out for s in row)
        if tokens is not None and counted != tokens:
            raise RuntimeError(f"token count changed between repeats ({tokens} vs {counted})")
        tokens = counted
    median = statistics.median(seconds)
    return {"tokens": tokens, "seconds_median": round(median, 3), "tokens_per_s": round(tokens / median, 1),
            "samples_per_s": round(sum(len(r) for r in out) / median, 2)}


def not_measured(device, backend, k, mode, why) -> dict:
    return {"device": device, "backend": backend, "k": k, "mode": mode, "tokens": None, "seconds_median": None,
            "tokens_per_s": None, "samples_per_s": None, "speedup": None, "note": f"not measured: {why}"}


def main(argv=None) -> list[dict]:
    import torch
    from sot.llm import Sampling, auto_choice, get_backend
    from sot.models import OFFLINE_DEFAULT

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=OFFLINE_DEFAULT)
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--ks", default="1,8", help="samples per prompt, comma-separated")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--dtype", default="auto", help="transformers dtype: auto (bf16 on CUDA, float32 on CPU), "
                    "float32, bfloat16 (CPUs with AMX / AVX512-BF16 run it several times faster)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's choice); on a shared, busy CPU 1 avoids "
                         "oversubscription, which slowed 2-thread generation ~14x on the 2-core dev box")
    ap.add_argument("--devices", default="auto", choices=["auto", "cpu", "cuda"],
                    help="auto (cpu, plus cuda and vllm when present), cpu, or cuda (cuda and vllm only)")
    ap.add_argument("--arch", default=None, help="instead of --model, a randomly initialised model of this real "
                    "architecture (a key of sot.benchmark.ARCH_CONFIGS, e.g. qwen2.5-1.5b); speed only")
    ap.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    use_cuda = args.devices in ("auto", "cuda") and torch.cuda.is_available()
    if args.devices == "cuda" and not use_cuda:
        raise SystemExit("--devices cuda: no CUDA GPU visible to torch")
    if args.arch:
        import tempfile
        from sot.benchmark import random_model
        args.model = str(random_model(args.arch, Path(tempfile.mkdtemp()) / args.arch,
                                      device="cuda" if args.devices == "cuda" else "cpu"))
    prompt_list = prompts(args.prompts)
    ks = [int(k) for k in args.ks.split(",")]
    devices = (["cpu"] if args.devices != "cuda" else []) + (["cuda"] if use_cuda else [])
    rows: list[dict] = []
    for device in devices:
        modes = [(f"batched (batch {args.batch_size})", args.batch_size), ("one at a time", 1)]
        backends = {bs: get_backend("transformers", args.model, device=device, batch_size=bs, ignore_eos=True,
                                    dtype=args.dtype)
                    for _, bs in modes}
        for k in ks:
            sampling = Sampling(n=k, temperature=args.temperature, top_p=args.top_p,
                                max_new_tokens=args.max_new_tokens, seed=0)
            measured = {}
            for mode, bs in modes:
                measured[mode] = time_backend(backends[bs], prompt_list, sampling, args.repeats)
                rows.append({"device": device, "backend": "transformers", "k": k, "mode": mode,
                             **measured[mode], "speedup": None, "note": ""})
            rows[-2]["speedup"] = round(rows[-2]["tokens_per_s"] / rows[-1]["tokens_per_s"], 2)
            rows[-2]["note"] = "speedup vs one at a time"
        del backends
    chosen, why = auto_choice() if args.devices != "cpu" else ("transformers", "--devices cpu")
    vllm = None
    if chosen == "vllm":
        import gc
        gc.collect()
        torch.cuda.empty_cache()
        cuda_dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"   # what transformers picked
        vllm = get_backend("vllm", args.model, dtype=cuda_dtype, ignore_eos=True)
    for k in ks:
        if vllm is None:
            rows.append(not_measured("cuda", "vllm", k, "continuous batching", why))
            continue
        sampling = Sampling(n=k, temperature=args.temperature, max_new_tokens=args.max_new_tokens, seed=0)
        result = time_backend(vllm, prompt_list, sampling, args.repeats)
        base = next(r for r in rows if r["device"] == "cuda" and r["k"] == k and r["mode"].startswith("batched"))
        rows.append({"device": "cuda", "backend": "vllm", "k": k, "mode": "continuous batching", **result,
                     "speedup": round(result["tokens_per_s"] / base["tokens_per_s"], 2),
                     "note": "speedup vs batched transformers on cuda"})
    print(f"\nmodel {args.model}, dtype {args.dtype}, torch threads {torch.get_num_threads()}, {args.prompts} prompts, "
          f"{args.max_new_tokens} new tokens per sample, temperature {args.temperature}, top_p {args.top_p}, "
          f"median of {args.repeats} runs after a warm-up\n")
    print(markdown(rows))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n")
    return rows


def markdown(rows: list[dict]) -> str:
    cols = ["device", "backend", "k", "mode", "tokens", "seconds_median", "tokens_per_s", "speedup", "note"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join("" if r[c] is None else str(r[c]) for c in cols) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
