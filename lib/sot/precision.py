"""bfloat16 only where the hardware has it.

params.yaml asks for bfloat16 in several places (decoding weights, bf16 training). CPUs run it, and every CUDA GPU
from Ampere on (A100, L4, H100) has it natively; older ones (Colab's free T4, V100) do not: torch emulates it
slowly or a kernel refuses it, and vLLM stops. There the request falls back to what the GPU supports, and the
run says so once per process: float32 weights for transformers (float16 can overflow in Gemma-2 and Qwen2.5
activations), float16 for vLLM (its own advice for such GPUs), fp32 training instead of bf16 autocast.
"""
from __future__ import annotations

import sys

_said: set[str] = set()


def cuda_has_bf16() -> bool:
    """True when a CUDA GPU is present and does bfloat16 natively (not through emulation)."""
    import torch

    if not torch.cuda.is_available():
        return False
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:      # a torch without the argument never counted emulation
        return bool(torch.cuda.is_bf16_supported())


def say_once(message: str) -> None:
    if message not in _said:
        _said.add(message)
        print(message, file=sys.stderr)


def _gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0)


def weights_dtype(dtype: str, device: str, fallback: str = "float32", where: str = "") -> str:
    """`dtype`, unless it is bfloat16 on a CUDA device without native bf16: then `fallback`, said once."""
    if dtype != "bfloat16" or not str(device).startswith("cuda") or cuda_has_bf16():
        return dtype
    say_once(f"note: {_gpu_name()} has no native bfloat16; {where or 'weights'} use {fallback} instead of the "
             f"bfloat16 asked for (set dtype: {fallback} in params.yaml to silence this)")
    return fallback


def training_bf16(asked: bool) -> bool:
    """bf16 autocast as asked, except on a CUDA GPU without native bf16 (fp32 training there, said once)."""
    import torch

    if not asked or not torch.cuda.is_available() or cuda_has_bf16():
        return asked
    say_once(f"note: {_gpu_name()} has no native bfloat16; training in float32 instead of bf16 autocast "
             "(set sft.bf16: false in params.yaml to silence this)")
    return False
