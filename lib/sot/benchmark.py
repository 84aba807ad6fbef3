"""Benchmark plumbing: medians over repeats after a warm-up, the machine described, results appended to
bench/RESULTS.md (markdown, newest last) so every figure there names the machine it was measured on."""
from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "RESULTS.md"

ARCH_CONFIGS = {   # shapes of the public configs; token ids follow the SmolLM2 tokenizer the rows use
    "qwen2.5-1.5b": {
        "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 1536,
        "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
        "vocab_size": 151936, "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
        "hidden_act": "silu", "tie_word_embeddings": True, "use_sliding_window": False, "attention_dropout": 0.0,
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2},
    "gemma-2-2b": {
        "model_type": "gemma2", "architectures": ["Gemma2ForCausalLM"], "hidden_size": 2304,
        "intermediate_size": 9216, "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4,
        "head_dim": 256, "vocab_size": 256000, "max_position_embeddings": 8192, "rope_theta": 10000.0,
        "rms_norm_eps": 1e-6, "hidden_activation": "gelu_pytorch_tanh", "query_pre_attn_scalar": 256,
        "sliding_window": 4096, "final_logit_softcapping": 30.0, "attn_logit_softcapping": 50.0,
        "tie_word_embeddings": True, "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2},
}


def arch_config(arch: str):
    """The transformers config of a real architecture (a key of ARCH_CONFIGS)."""
    from transformers import AutoConfig

    if arch not in ARCH_CONFIGS:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCH_CONFIGS)}")
    spec = dict(ARCH_CONFIGS[arch])
    return AutoConfig.for_model(spec.pop("model_type"), **spec)


def random_model(arch: str, folder: Path, device: str = "cpu", seed: int = 0) -> Path:
    """Save a randomly initialised bf16 model of a real architecture (a key of ARCH_CONFIGS) with the offline
    SmolLM2 tokenizer to `folder`. For speed measurements only: speed does not depend on the weights."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sot.models import OFFLINE_DEFAULT, resolve

    config = arch_config(arch)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve(OFFLINE_DEFAULT)).save_pretrained(folder)
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return Path(folder)


def timed(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> dict:
    """Run fn warmup times untimed, then `repeats` times; median and all wall times in seconds."""
    for _ in range(warmup):
        fn()
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return {"median_s": statistics.median(times), "times_s": times, "result": result}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> dict:
    import importlib.metadata as md

    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(), "gpu": "none"}
    try:
        import torch
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    for pkg in ("transformers", "trl", "peft", "vllm", "unsloth", "math-verify"):
        try:
            info[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return info


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def append_results(title: str, rows: list[dict], notes: str = "", path: Path = RESULTS) -> str:
    """Append a section (title, date, machine, table, notes) to RESULTS.md and return its text."""
    m = machine()
    when = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    desc = ", ".join(f"{k} {v}" for k, v in m.items())
    text = f"\n## {title} ({when})\n\nMachine: {desc}\n\n{markdown_table(rows)}\n"
    if notes:
        text += f"\n{notes.strip()}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text("# Benchmark results\n\nAppended by `make bench` (bench/run_all.py); each section names "
                        "the machine it was measured on. Medians over repeats after a warm-up.\n")
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
    return text
