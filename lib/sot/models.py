"""Model references: hub ids, local folders, and the offline models (GGUF files shipped on PyPI).

`resolve(ref)` turns a reference into something `from_pretrained` accepts:
- a name of sot.offline_models.MODELS (``"smollm2-135m-instruct"``, the demo's student;
  ``"qwen2.5-coder-0.5b-instruct"``, the demo's teacher; ``"qwen2.5-coder-1.5b-instruct"``): its GGUF file
  (from one PyPI package, or assembled from chunk packages and checksum-verified) is converted once into an
  ordinary safetensors folder under the cache (``$SOT_CACHE``, default ``~/.cache/sot``) and that folder is
  returned;
- an existing local folder: returned as is;
- anything else: returned unchanged as a hub id (needs network or a filled HF cache).

`tiny_random(path)` builds the tiny randomly initialised Llama the unit tests use.
"""
from __future__ import annotations

from pathlib import Path

from sot.offline_models import MODELS as OFFLINE_MODELS
from sot.offline_models import cache_dir, materialize  # noqa: F401  (cache_dir: the documented cache location)

OFFLINE_DEFAULT = "smollm2-135m-instruct"


def resolve(ref: str) -> str:
    """Return a path or hub id for `from_pretrained`; converts an offline model on first use."""
    if ref in OFFLINE_MODELS:
        return str(materialize(ref))
    return ref


def load(ref: str, dtype: str = "float32", device: str | None = None):
    """Load (model, tokenizer) for a reference; the tokenizer pads on the left for batched generation."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve(ref)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    if device:
        model.to(device)
    model.eval()
    return model, tok


def tiny_random(dest: Path, seed: int = 0, hidden: int = 64, layers: int = 2) -> Path:
    """A tiny randomly initialised Llama with the SmolLM2 tokenizer (and chat template), saved at `dest`."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(resolve(OFFLINE_DEFAULT))
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest
