"""Training examples with an exact completion-only loss mask, the right-padding collator, the validation split.

One example = rendered prompt + completion + end token. The prompt and the completion are tokenised
separately (sot.tokens: the one place the BOS, end-token and dummy-prefix rules live, shared with the
distance stage and with generation) and their ids concatenated, so the boundary is exact and matches
generation (the model reads the tokenised prompt, then writes the completion): labels are -100 on every
prompt token, the completion ids and the end token elsewhere, so the model learns to stop. The end token is
EOS in plain style and the chat template's end-of-turn token in chat style (Llama-3's <|eot_id|>, not its
<|end_of_text|>). A record whose source says it was cut by the length limit (`is_truncated`) gets no end
token: it did not end, and the model must not learn to stop there (counted as n_unterminated). Examples
longer than max_length are truncated from the right (counted, one warning per set); an example whose prompt
alone fills max_length (or an empty truncated one) has no completion token left and is dropped (counted).
"""
from __future__ import annotations

import random
import warnings
from dataclasses import dataclass, field
from typing import Callable

from sot.prompts import adapt_completion, token_style
from sot.tokens import Encoder

IGNORE = -100


def is_truncated(record: dict) -> bool:
    """Whether a record's completion was cut by the length limit rather than ended by the model.

    Its source's "truncated" flag where set (classify and paraphrase set it), else source["finish_reason"] ==
    "length" (generation records). Only the record's own source counts, not a nested base_source."""
    source = record.get("source") if isinstance(record.get("source"), dict) else {}
    if "truncated" in source:
        return bool(source["truncated"])
    return source.get("finish_reason") == "length"


def _assemble(prompt_ids: list[int], completion_ids: list[int], max_length: int) -> dict:
    input_ids = (prompt_ids + completion_ids)[:max_length]
    labels = ([IGNORE] * len(prompt_ids) + completion_ids)[:max_length]
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def build_example(tokenizer, prompt_text: str, completion: str, max_length: int, style: str = "plain",
                  finished: bool = True) -> dict:
    """{input_ids, attention_mask, labels} for prompt_text + completion + end token (the end token only when
    `finished`); loss on the completion and its end token only. `style` picks the end token (sot.tokens)."""
    prompt_ids, completion_ids = Encoder(tokenizer, token_style(style)).example(prompt_text, completion, finished)
    return _assemble(prompt_ids, completion_ids, max_length)


@dataclass
class TokenizedSet:
    """Tokenised training examples plus what happened on the way (kept in the run summary)."""

    examples: list[dict]
    ids: list[str] = field(default_factory=list)   # record ids, aligned with examples
    n_truncated: int = 0        # examples cut at max_length
    n_dropped: int = 0          # records whose prompt alone fills max_length
    n_unterminated: int = 0     # records cut by the generation length limit: no end token appended

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def token_counts(self) -> list[int]:
        return [len(e["input_ids"]) for e in self.examples]

    @property
    def completion_token_counts(self) -> list[int]:
        return [sum(1 for t in e["labels"] if t != IGNORE) for e in self.examples]


def _check_record(record, index: int, where: str) -> None:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: record {index} is {type(record).__name__}, expected a dict")
    for key in ("prompt", "completion"):
        if not isinstance(record.get(key), str):
            raise ValueError(f"{where}: record {index} (id={record.get('id')!r}) field {key!r} is missing or "
                             f"not a string; training records need 'prompt' (the question) and 'completion'")


def check_records(records: list[dict], where: str = "records") -> None:
    """Fail fast, naming the record and field, before any model is loaded."""
    for i, record in enumerate(records):
        _check_record(record, i, where)


def default_render(question: str, style: str, tokenizer=None, task: str | None = None) -> str:
    from sot.prompts import render
    return render(question, style, tokenizer, task=task)


def _texts(record: dict, style: str, tokenizer, render, index: int, where: str, finished: bool) -> tuple[str, str]:
    """(prompt text, completion) of a record in `style`: the prompt rendered (the authors styles need the record's
    `task`), the completion in the format that style's prompt asks for (sot.prompts.adapt_completion; one cut by
    the length limit keeps its end as cut: no final-answer line is added to a trace that did not end)."""
    try:
        prompt = (render(record["prompt"], style, tokenizer) if render is not None
                  else default_render(record["prompt"], style, tokenizer, task=record.get("task")))
        return prompt, adapt_completion(record["completion"], style, record.get("task"), finished)
    except ValueError as e:
        raise ValueError(f"{where}: record {index} (id={record.get('id')!r}, task={record.get('task')!r}): {e}") from e


def build_dataset(records: list[dict], tokenizer, style: str, max_length: int,
                  render: Callable[[str, str, object], str] | None = None, where: str = "records",
                  end_token: bool = True) -> TokenizedSet:
    """Render every record's prompt (sot.prompts.render) and build its example; validates records first.
    The completion is put in the style's format first (sot.prompts.adapt_completion: as is for plain and chat).

    A record for which `is_truncated` holds gets no end token (counted in n_unterminated). end_token=False: no
    record gets one (sft.learn_end_token false, the authors' setup: the model never learns to stop)."""
    check_records(records, where)
    encoder = Encoder(tokenizer, token_style(style))
    out = TokenizedSet(examples=[])
    for i, record in enumerate(records):
        finished = not is_truncated(record)
        prompt_ids, completion_ids = encoder.example(*_texts(record, style, tokenizer, render, i, where, finished),
                                                     finished and end_token)
        if len(prompt_ids) >= max_length or not completion_ids:   # no completion token left to learn or score
            out.n_dropped += 1
            continue
        out.n_unterminated += not finished
        out.n_truncated += len(prompt_ids) + len(completion_ids) > max_length
        out.examples.append(_assemble(prompt_ids, completion_ids, max_length))
        out.ids.append(str(record.get("id", i)))
    if out.n_truncated:
        warnings.warn(f"{where}: {out.n_truncated} of {len(records)} examples longer than max_length={max_length} "
                      "tokens were truncated from the right (their end token is lost)", stacklevel=2)
    if out.n_dropped:
        warnings.warn(f"{where}: {out.n_dropped} of {len(records)} examples were dropped: no completion token "
                      f"left (the prompt alone fills max_length={max_length} tokens, or an empty completion was "
                      "cut by the length limit)", stacklevel=2)
    if not out.examples:
        raise ValueError(f"{where}: no usable training example out of {len(records)} records")
    return out


class RightPadCollator:
    """Pads a list of examples on the right: input_ids with pad_token_id, attention_mask 0, labels -100."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = int(pad_token_id)
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict]) -> dict:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        n = len(features)
        input_ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((n, width), dtype=torch.long)
        labels = torch.full((n, width), IGNORE, dtype=torch.long)
        for row, f in enumerate(features):
            k = len(f["input_ids"])
            input_ids[row, :k] = torch.tensor(f["input_ids"], dtype=torch.long)
            attention_mask[row, :k] = 1
            labels[row, :k] = torch.tensor(f.get("labels", f["input_ids"]), dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def split_validation(records: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Seeded (train, validation) split of training records, grouped by problem id so no problem is in both."""
    if fraction <= 0:
        return list(records), []
    groups: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        groups.setdefault(str(record.get("id", i)), []).append(i)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    n_val = max(1, round(fraction * len(keys)))
    if n_val >= len(keys):
        raise ValueError(f"eval_fraction={fraction} leaves no training problem out of {len(keys)}")
    val_idx = {i for key in keys[:n_val] for i in groups[key]}
    train = [r for i, r in enumerate(records) if i not in val_idx]
    val = [r for i, r in enumerate(records) if i in val_idx]
    return train, val
