"""One generation interface, three backends: transformers (CPU/GPU), vLLM (CUDA), any OpenAI-compatible server.

    backend = get_backend("auto", "smollm2-135m-instruct", adapter=None, batch_size=16)
    samples = backend.generate(prompts, Sampling(n=4, temperature=0.7, max_new_tokens=256, stop=("\\n\\n",)))
    samples[i][j].text, .n_tokens, .finish_reason ; backend.info() -> provenance dict

Options per backend (keyword arguments of get_backend):
- transformers: device="auto", dtype="auto", batch_size=16, ignore_eos=False
- vllm: dtype="auto", gpu_memory_utilization=0.9, max_model_len=None, max_lora_rank=64,
  tensor_parallel_size=1, enforce_eager=False, ignore_eos=False
- openai: base_url=None, api_key_env="OPENAI_API_KEY", concurrency=8, max_retries=5, timeout=600.0,
  backoff=1.0, tokenizer=None
"auto" picks vllm when CUDA is available and vllm imports, else transformers; it passes on only the
options the chosen backend takes (the others are listed in the log line) and records the choice in info().
"""
from __future__ import annotations

import inspect
import logging

from .base import Backend, Sample, Sampling

__all__ = ["get_backend", "Sampling", "Sample", "Backend", "BACKENDS", "auto_choice"]
BACKENDS = ("transformers", "vllm", "openai", "auto")
log = logging.getLogger(__name__)


def _backend_class(name: str):
    if name == "transformers":
        from .hf import TransformersBackend
        return TransformersBackend
    if name == "vllm":
        from .vllm_backend import VLLMBackend
        return VLLMBackend
    if name == "openai":
        from .openai_backend import OpenAIBackend
        return OpenAIBackend
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def auto_choice() -> tuple[str, str]:
    """(backend name, reason) for backend "auto"."""
    try:
        import torch
        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    if not cuda:
        return "transformers", "no CUDA GPU"
    try:
        import vllm  # noqa: F401  (imports only with CUDA)
    except Exception as e:  # ImportError, or CUDA/driver errors raised while importing
        return "transformers", f"CUDA present but vllm does not import ({type(e).__name__}: {e})"
    return "vllm", "CUDA GPU and vllm available"


def get_backend(name: str, model: str, adapter: str | None = None, **options) -> Backend:
    """Build a backend. `model` is a sot.models reference (openai: the served model name)."""
    if name != "auto":
        return _backend_class(name)(model, adapter=adapter, **options)
    chosen, reason = auto_choice()
    cls = _backend_class(chosen)
    accepted = set(inspect.signature(cls.__init__).parameters)
    dropped = sorted(k for k in options if k not in accepted)
    log.warning("backend auto -> %s (%s)%s", chosen, reason,
                f"; options not used by {chosen}: {', '.join(dropped)}" if dropped else "")
    backend = cls(model, adapter=adapter, **{k: v for k, v in options.items() if k in accepted})
    backend.auto_choice = f"auto -> {chosen}: {reason}"
    return backend
