"""Checks that the instrument can see what fine-tuning changed, run before any expensive decoding.

- The decoding cap: a student taught completions of up to N tokens must be allowed at least N tokens when it is
  evaluated (and when its own samples are drawn as the distance stage's reference point), or the answers of the
  sets with long traces (the teacher's) are cut half-written and graded wrong. `check_decoding_cap`.
- The adapter's effect: the evaluated model keeps at least `minimum` of what training changed (sot.fidelity).
  `check_kept`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping


def longest_completion(records, tokenizer) -> int:
    """The longest completion of `records` in the student's tokens, + 1 for the end token it learns to emit."""
    return max((len(tokenizer(r["completion"], add_special_tokens=False).input_ids) + 1 for r in records), default=0)


def trained_longest(summary_paths: Mapping[str, Path]) -> dict[str, int]:
    """Per set: the longest loss-bearing example it was trained on (completion + end token, after the sft
    max_length cut), from the train_summary.json each fine-tuned model folder holds."""
    import json

    out = {}
    for name, path in summary_paths.items():
        plan = json.loads(Path(path).read_text()).get("plan") or {}
        if plan.get("max_tokens_per_example") is not None:
            out[name] = int(plan["max_tokens_per_example"])
    return out


def decoding_cap(max_new_tokens, longest: Mapping[str, int], param: str, default: int = 512) -> int:
    """The cap to decode with: `max_new_tokens` when it is a number (checked by check_decoding_cap), or, for
    "auto", the longest training completion (`default` when nothing was trained)."""
    if max_new_tokens == "auto":
        return max(longest.values()) if longest else default
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"{param} in params.yaml: expected a positive number of tokens or 'auto', "
                         f"got {max_new_tokens!r}")
    check_decoding_cap(max_new_tokens, longest, param)
    return max_new_tokens


def check_decoding_cap(max_new_tokens: int, longest: Mapping[str, int], param: str) -> None:
    """Stop, naming both numbers and the fix, when `max_new_tokens` is below a training set's longest completion."""
    if not longest:
        return
    name, n = max(longest.items(), key=lambda kv: kv[1])
    if max_new_tokens < n:
        raise ValueError(
            f"{param} in params.yaml is {max_new_tokens}, but set {name} trains completions of up to {n} student "
            f"tokens (with the end token): a student that learned them would be cut before it ends and graded on "
            f"a half-written answer. Set {param}: {n} or more, or auto (longest per set: "
            + ", ".join(f"{k} {v}" for k, v in sorted(longest.items(), key=lambda kv: -kv[1])) + ").")


def check_kept(effect: Mapping, minimum: float, what: str, dtype: str) -> None:
    """Stop when the evaluated model keeps less than `minimum` of the adapter's effect (sot.fidelity)."""
    kept = effect.get("kept")
    if kept is not None and kept < minimum:
        raise ValueError(
            f"{what}: the model as evaluated ({dtype}) keeps {kept:.1%} of its adapter's effect (cosine "
            f"{effect['cosine']:.3f}), below evaluate.min_adapter_kept = {minimum:.0%}: the evaluation would "
            "measure a smaller change than training made. Set evaluate.dtype: float32 in params.yaml.")
