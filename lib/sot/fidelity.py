"""How much of a fine-tuned adapter's effect the evaluated model keeps.

A LoRA adapter is a small change to a model. Evaluating it in a low precision can shrink that change: merging
rounds each weight's update onto the bf16 grid of the weight, and bf16 arithmetic adds noise of its own that can
be a sizeable fraction of what a few hundred training tokens changed. The measure (issue #21 of this project):

    d_ref  = log p(unmerged adapter, float32)  - log p(base, float32)       the adapter's effect, as trained
    d_eval = log p(evaluated model, dtype)      - log p(base, same dtype)   the effect the evaluation sees
    kept   = <d_eval, d_ref> / <d_ref, d_ref>                                projection of one on the other
    cosine = <d_eval, d_ref> / (|d_eval| |d_ref|)

over the full next-token log-probability vectors at every position of a few prompts. kept = 1 and cosine = 1:
the evaluated model moves exactly as the trained one does; kept 0.8: a fifth of the effect is lost. The stage
refuses to decode below `evaluate.min_adapter_kept` (default 0.95).
"""
from __future__ import annotations


def _logprobs(model, batch):
    import torch

    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    mask = batch["attention_mask"].bool()
    return torch.log_softmax(logits.float(), dim=-1)[mask]          # (positions, vocab), padding left out


def adapter_effect(evaluated, base_same_dtype, reference_peft, tokenizer, texts: list[str]) -> dict:
    """kept fraction and cosine (module docstring) of `evaluated` (merged or not, any dtype) against
    `reference_peft` (the unmerged PEFT model in float32, whose disabled adapter is the float32 base).
    base_same_dtype None: `evaluated` is in float32, so its base is that float32 base (computed once)."""
    import torch

    if not texts:
        raise ValueError("adapter_effect: no texts to measure on")
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    device = next(reference_peft.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    ref_on = _logprobs(reference_peft, batch)
    with reference_peft.disable_adapter():
        ref_off = _logprobs(reference_peft, batch)
    d_ref = (ref_on - ref_off).flatten().double()
    base = ref_off if base_same_dtype is None else _logprobs(base_same_dtype, batch)
    d_eval = (_logprobs(evaluated, batch) - base).flatten().double()
    dot, norm = float(d_eval @ d_ref), float(d_ref @ d_ref)
    if norm == 0.0:
        return {"kept": None, "cosine": None, "effect": 0.0, "n_positions": int(ref_on.shape[0]),
                "note": "the adapter changes nothing (zero effect): nothing to keep"}
    cosine = dot / (norm ** 0.5 * max(float(d_eval @ d_eval) ** 0.5, 1e-30))
    return {"kept": dot / norm, "cosine": cosine, "effect": float(d_ref.abs().mean()),
            "eval_effect": float(d_eval.abs().mean()), "n_positions": int(ref_on.shape[0])}


def measure(model_ref: str, adapter: str, evaluated, dtype: str, texts: list[str], device: str = "cpu") -> dict:
    """adapter_effect for a model the backend has loaded (`evaluated`, in `dtype`): loads the float32 base
    with the adapter unmerged as the reference, and the base alone in `dtype`."""
    from peft import PeftModel

    from sot import models

    base32, tok = models.load(model_ref, dtype="float32", device=device)
    tok.padding_side = "right"
    reference = PeftModel.from_pretrained(base32, adapter).eval()
    base_dtype = None if dtype == "float32" else models.load(model_ref, dtype=dtype, device=device)[0]
    out = adapter_effect(evaluated, base_dtype, reference, tok, texts)
    return {**out, "dtype": dtype, "n_texts": len(texts)}
