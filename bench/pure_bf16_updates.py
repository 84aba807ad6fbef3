"""How many parameter updates of one AdamW step survive in pure bf16 (sft.precision: pure_bf16, the authors' setup).

One batch of MBPP H traces in the `authors` style, one optimizer step (torch AdamW, weight decay 0.05, the paper's),
at each learning rate, from the same starting weights:
- mixed: float32 weights and AdamW states (our default for full fine-tuning);
- pure_bf16: the model loaded in bfloat16, so weights, gradients and AdamW states are bfloat16 (their script: model
  loaded in bf16, `bf16=True`).
Reported per learning rate: the share of weight elements whose stored value changed, and the share of the intended
update (the float32 step's change) that the bf16 weights actually moved, sum |bf16 change| / sum |fp32 change|.

    python bench/pure_bf16_updates.py                       # SmolLM2-135M-Instruct (offline), 8 examples
    python bench/pure_bf16_updates.py --model tiny          # the tests' tiny random Llama
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path


def _batch(tokenizer, n: int, data_dir: str | None):
    from sot.sft.data import RightPadCollator, build_dataset
    from sot.tasks import get_task

    problems = get_task("mbpp").load_split("train", data_dir, limit=n, seed=0)
    records = [{"id": p.id, "task": "mbpp", "prompt": p.question, "completion": p.reference} for p in problems]
    tset = build_dataset(records, tokenizer, "authors", 512)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return RightPadCollator(pad)(tset.examples)


def one_step(model, batch, lr: float, weight_decay: float):
    """Weights before and after one AdamW step on `batch` (as float32 copies), the model's dtype throughout."""
    import torch

    before = {n: p.detach().float().clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    model(**batch).loss.backward()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    opt.step()
    after = {n: p.detach().float().clone() for n, p in model.named_parameters()}
    with torch.no_grad():   # back to the start, for the next learning rate
        for n, p in model.named_parameters():
            p.copy_(before[n].to(p.dtype))
    return before, after


def measure(model_ref: str, n: int, lrs, weight_decay: float, data_dir: str | None) -> dict:
    import torch

    from sot.models import load

    model32, tokenizer = load(model_ref, dtype="float32")
    batch = _batch(tokenizer, n, data_dir)
    model16 = load(model_ref, dtype="bfloat16")[0]
    model32.train()
    model16.train()
    out = []
    for lr in lrs:
        start = time.perf_counter()
        b32, a32 = one_step(model32, batch, lr, weight_decay)
        b16, a16 = one_step(model16, batch, lr, weight_decay)
        total = changed32 = changed16 = 0
        intended = moved = 0.0
        for name in b32:
            d32, d16 = a32[name] - b32[name], a16[name] - b16[name]
            total += d32.numel()
            changed32 += int((d32 != 0).sum())
            changed16 += int((d16 != 0).sum())
            intended += float(d32.abs().sum())
            moved += float(d16.abs().sum())
        out.append({"lr": lr, "elements": total, "changed_float32": changed32 / total,
                    "changed_pure_bf16": changed16 / total, "update_moved_pure_bf16": moved / intended,
                    "seconds": round(time.perf_counter() - start, 1)})
        print(json.dumps(out[-1]), flush=True)
    return {"model": model_ref, "examples": n, "tokens": int(batch["attention_mask"].sum()),
            "weight_decay": weight_decay, "optimizer": "torch.optim.AdamW (betas 0.9/0.999, eps 1e-8)",
            "torch": torch.__version__, "machine": platform.machine(), "results": out}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="a model reference, or 'tiny'")
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--lr", type=float, nargs="+", default=[1e-6, 1e-5, 1e-4])
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--data-dir", default=None, help="offline data directory (default: $SOT_DATA_DIR)")
    args = parser.parse_args(argv)
    model = args.model
    if model == "tiny":
        import tempfile

        from sot.models import tiny_random
        model = str(tiny_random(Path(tempfile.mkdtemp(prefix="tiny-"))))
    print(json.dumps(measure(model, args.examples, args.lr, args.weight_decay, args.data_dir), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
