"""How far a training set is from a model's own distribution: the model's NLL and perplexity on completions.

`completion_nll(model, records, style)` scores every record's completion given its rendered prompt, with
exactly the tokenisation and mask used for training (sot.sft.data, sot.tokens): prompt tokens are masked, the
completion tokens and the end token that ends them are scored (EOS in plain style, the chat template's
end-of-turn in chat style; included, so a trace that should have stopped earlier costs more). A completion
that was cut by the length limit (sot.sft.data.is_truncated: its source says finish_reason "length" or
truncated) is scored without an end token, since it did not end there; how many is `n_unterminated`.
The set-level figure is the token-weighted mean NLL (total NLL / total scored tokens) and its
perplexity exp(nll); the per-record mean NLLs are summarised (mean, median, quartiles) and returned in input
order. The reference point (the model's own greedy samples on the same problems) is just another set of records.
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from sot.sft.data import IGNORE, RightPadCollator, build_dataset


def _load(model, dtype: str, device: str | None):
    """(model, tokenizer) from a (model, tokenizer) pair, a sot.sft.train output folder, or a model reference."""
    if isinstance(model, (tuple, list)):
        return model[0], model[1]
    if isinstance(model, (str, Path)) and (Path(model) / "train_summary.json").exists():
        from sot.sft import load_trained
        return load_trained(model, dtype=dtype, device=device)
    if isinstance(model, (str, Path)):
        from sot.models import load
        return load(str(model), dtype=dtype, device=device)
    raise TypeError(f"completion_nll: model must be a reference, a train() folder or (model, tokenizer), "
                    f"got {type(model).__name__}")


def _quantiles(values: list[float]) -> dict:
    if len(values) == 1:
        v = values[0]
        return {"mean": v, "median": v, "q1": v, "q3": v, "min": v, "max": v}
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"mean": statistics.fmean(values), "median": median, "q1": q1, "q3": q3,
            "min": min(values), "max": max(values)}


def completion_nll(model, records: list[dict], style: str, batch_size: int = 8, max_length: int = 1024,
                   render=None, progress: bool = True, dtype: str = "float32", device: str | None = None) -> dict:
    """Token-weighted mean NLL / perplexity of `model` on the completions of `records` {prompt, completion, id?}.

    `model`: a (model, tokenizer) pair (used as is, on its device), a sot.sft.train output folder, or a model
    reference for sot.models.load; `dtype` and `device` apply to the last two.

    Returns {"nll", "ppl", "n_records", "n_tokens", "n_truncated", "n_dropped", "n_unterminated", "per_record":
    {mean, median, q1, q3, min, max}, "records": [{"id", "nll", "n_tokens"}, ...]} (records in input order; a
    record whose prompt alone fills max_length is dropped and counted; n_truncated: cut at max_length;
    n_unterminated: scored without an end token because generation cut them).
    """
    import torch
    import torch.nn.functional as F
    from sot.progress import tqdm

    model, tokenizer = _load(model, dtype, device)
    tset = build_dataset(records, tokenizer, style, max_length, render, where="completion_nll records")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    collate = RightPadCollator(pad)
    device = next(model.parameters()).device
    order = sorted(range(len(tset)), key=lambda i: -len(tset.examples[i]["input_ids"]))   # longest first: OOM early
    sums = [0.0] * len(tset)
    counts = [0] * len(tset)
    total = sum(tset.completion_token_counts)
    was_training = model.training
    model.eval()
    with torch.no_grad(), tqdm(total=total, unit="tok", desc="completion NLL", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = {k: v.to(device) for k, v in collate([tset.examples[i] for i in rows]).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"][:, 1:]
            for j, i in enumerate(rows):   # one row at a time: float32 logits of a whole batch can be large
                nll = F.cross_entropy(logits[j, :-1].float(), labels[j], ignore_index=IGNORE, reduction="sum")
                sums[i] = float(nll)
                counts[i] = int((labels[j] != IGNORE).sum())
            bar.update(sum(counts[i] for i in rows))
    model.train(was_training)
    n_tokens = sum(counts)
    nll = sum(sums) / n_tokens
    per_record = [s / c for s, c in zip(sums, counts)]
    return {
        "nll": nll, "ppl": math.exp(nll), "n_records": len(tset), "n_tokens": n_tokens,
        "n_truncated": tset.n_truncated, "n_dropped": tset.n_dropped, "n_unterminated": tset.n_unterminated,
        "per_record": _quantiles(per_record),
        "records": [{"id": rid, "nll": v, "n_tokens": c} for rid, v, c in zip(tset.ids, per_record, counts)],
    }
