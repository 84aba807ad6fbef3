"""One tokenisation of a prompt and its completion, shared by training (sot.sft.data), the distance stage
(through sot.sft.data) and generation/evaluation (sot.llm.base.encode), so that a student reads the same ids
when it is trained, scored and evaluated. Each rule below exists only here.

- BOS. A prompt is tokenised without the tokenizer's post-processor; BOS is then prepended when the tokenizer
  prepends one by itself (probed on a one-letter text) and the prompt does not already start with it (chat
  templates such as Gemma's or Llama-3's write it). Nothing is appended: a post-processor that also appends
  EOS ("<s> $A </s>") would otherwise end every prompt with EOS, so the model would be asked to continue
  after the end of the text.
- End token: what a finished completion ends with, the token the student learns to stop with. Plain style:
  EOS. Chat style: the chat template's end-of-turn token, i.e. the first special token the template writes
  after an assistant message's content (Llama-3: <|eot_id|>, Qwen and SmolLM2: <|im_end|>, Gemma:
  <end_of_turn>, Llama-2 and Mistral: </s>); EOS only where the template writes no special token there.
  A completion cut by the length limit gets no end token (it did not end; sot.sft.data decides which).
- Completion. Tokenised on its own, so the prompt/completion boundary is exact, with no special tokens and
  without the tokenizer's dummy prefix: a SentencePiece-style tokenizer (Llama-2, Mistral: Metaspace with a
  prepend scheme, or a Prepend("▁") normalizer; a ByteLevel one with add_prefix_space) puts a space marker
  before the start of every text it encodes. That is right at the start of a sequence (the prompt) but a
  spurious leading space for a completion that continues a prompt. Completions are therefore encoded by a
  copy of the tokenizer without that one rule, so decode(prompt ids + completion ids) == prompt + completion.
"""
from __future__ import annotations

import json

PROBE = "a"                                    # a text every tokenizer encodes without a marker of its own
TURN_PROBE = "sot-end-of-turn-probe"           # stands for an assistant message when reading a chat template
STYLES = ("plain", "chat")


def _name(tokenizer) -> str:
    return f"{type(tokenizer).__name__} ({getattr(tokenizer, 'name_or_path', '') or 'unnamed'})"


def _ids(tokenizer, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer prepends BOS by itself when it encodes a text."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = _ids(tokenizer, PROBE, special=True)
    return bool(ids) and ids[0] == bos


def encode_prompt(tokenizer, text: str, with_bos: bool | None = None) -> list[int]:
    """Ids of a rendered prompt: no post-processor, BOS once where the tokenizer uses one, never EOS.

    `with_bos`: the result of adds_bos(tokenizer), when the caller has it already."""
    ids = _ids(tokenizer, text, special=False)
    if adds_bos(tokenizer) if with_bos is None else with_bos:
        bos = tokenizer.bos_token_id
        if not ids or ids[0] != bos:
            ids = [bos] + ids
    return ids


def eos_id(tokenizer) -> int:
    if getattr(tokenizer, "eos_token_id", None) is None:
        raise ValueError(f"tokenizer {_name(tokenizer)} has no eos_token: set tokenizer.eos_token before "
                         "building training examples")
    return int(tokenizer.eos_token_id)


def special_ids(tokenizer) -> set[int]:
    """Ids of the tokenizer's special tokens: the named ones and every added token marked special."""
    ids = {int(i) for i in (getattr(tokenizer, "all_special_ids", None) or [])}
    for i, token in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(token, "special", False):
            ids.add(int(i))
    return ids


def _render_turn(tokenizer) -> str:
    """The chat template applied to a conversation whose assistant message is TURN_PROBE."""
    from jinja2 import TemplateError

    user = {"role": "user", "content": "u"}
    reply = {"role": "assistant", "content": TURN_PROBE}
    errors = []
    for conversation in ([user, reply, {"role": "user", "content": "v"}], [user, reply]):
        try:
            text = tokenizer.apply_chat_template(conversation, tokenize=False)
        except (TemplateError, ValueError) as e:   # e.g. a template that refuses a conversation ending in a user turn
            errors.append(str(e))
            continue
        if TURN_PROBE in text:
            return text
    raise ValueError(f"tokenizer {_name(tokenizer)}: its chat template does not render an assistant message "
                     f"({'; '.join(errors) or 'the message content is missing from the output'}); "
                     "cannot tell its end-of-turn token. Use style 'plain' for this model")


def end_token_id(tokenizer, style: str) -> int:
    """The token a finished completion ends with: EOS in plain style (and the authors styles, sot.prompts.token_style),
    the template's end-of-turn in chat."""
    from sot.prompts import STYLES as PROMPT_STYLES
    if style == "plain" or (style != "chat" and style in PROMPT_STYLES):
        return eos_id(tokenizer)
    if style != "chat":
        raise ValueError(f"unknown prompt style {style!r}; valid: {', '.join(STYLES)}")
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"tokenizer {_name(tokenizer)} has no chat template; use style 'plain' for this model")
    text = _render_turn(tokenizer)
    tail = text[text.index(TURN_PROBE) + len(TURN_PROBE):]
    specials = special_ids(tokenizer)
    return next((i for i in _ids(tokenizer, tail, special=False) if i in specials), eos_id(tokenizer))


# --- the dummy prefix ----------------------------------------------------------------------------------------
def _marks_start(backend, text: str = PROBE) -> bool:
    """Whether a tokenizers.Tokenizer's normalizer/pre-tokenizer put anything before the start of `text`."""
    s = backend.normalizer.normalize_str(text) if backend.normalizer is not None else text
    if backend.pre_tokenizer is not None:
        s = "".join(piece for piece, _ in backend.pre_tokenizer.pre_tokenize_str(s))
    return s != text


def _drop_prepend(node):
    if node is None or node.get("type") == "Prepend":
        return None
    if node.get("type") == "Sequence":
        return {**node, "normalizers": [n for n in map(_drop_prepend, node["normalizers"]) if n is not None]}
    return node


def _never_prepend(node):
    if node is None:
        return None
    kind = node.get("type")
    if kind == "Metaspace":
        node = {**node, "prepend_scheme": "never"}
        if "add_prefix_space" in node:               # older serialisations
            node["add_prefix_space"] = False
    elif kind == "ByteLevel":
        node = {**node, "add_prefix_space": False}
    elif kind == "Sequence":
        node = {**node, "pretokenizers": [_never_prepend(n) for n in node["pretokenizers"]]}
    return node


def _without_prefix(tokenizer):
    """A copy of the tokenizer's tokenizers.Tokenizer without the rule that marks the start of a text."""
    from tokenizers import Tokenizer

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    spec.update(normalizer=_drop_prepend(spec.get("normalizer")),
                pre_tokenizer=_never_prepend(spec.get("pre_tokenizer")),
                post_processor=None, truncation=None, padding=None)
    copy = Tokenizer.from_str(json.dumps(spec))
    if _marks_start(copy):
        raise ValueError(f"tokenizer {_name(tokenizer)} adds a prefix to every text and sot.tokens cannot tell "
                         "which rule does it (normalizer/pre-tokenizer not Prepend, Metaspace or ByteLevel); "
                         "separately tokenised completions would start with a spurious space")
    return copy


def completion_encoder(tokenizer):
    """text -> completion ids (no special tokens, no dummy prefix) for this tokenizer; probe once, reuse."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:                              # a Python ("slow") tokenizer
        pieces = tokenizer.tokenize(PROBE)
        if pieces and pieces[0] != PROBE:
            raise ValueError(f"tokenizer {_name(tokenizer)} is a slow tokenizer that marks the start of a text "
                             f"({PROBE!r} -> {pieces[0]!r}); load its fast version (tokenizer.json) instead")
        return lambda text: _ids(tokenizer, text, special=False)
    if not _marks_start(backend):
        return lambda text: _ids(tokenizer, text, special=False)
    copy = _without_prefix(tokenizer)
    return lambda text: list(copy.encode(text, add_special_tokens=False).ids)


def encode_completion(tokenizer, text: str) -> list[int]:
    """Ids of a completion that continues a prompt (see the module docstring); no end token."""
    return completion_encoder(tokenizer)(text)


class Encoder:
    """The rules above probed once for one tokenizer and prompt style (what a dataset build reuses)."""

    def __init__(self, tokenizer, style: str):
        self.tokenizer, self.style = tokenizer, style
        self.with_bos = adds_bos(tokenizer)
        self.end_id = end_token_id(tokenizer, style)
        self._completion = completion_encoder(tokenizer)

    def prompt(self, text: str) -> list[int]:
        return encode_prompt(self.tokenizer, text, self.with_bos)

    def completion(self, text: str, finished: bool = True) -> list[int]:
        """Completion ids, plus the end token when the completion ended (not cut by the length limit)."""
        return self._completion(text) + ([self.end_id] if finished else [])

    def example(self, prompt_text: str, completion: str, finished: bool = True) -> tuple[list[int], list[int]]:
        return self.prompt(prompt_text), self.completion(completion, finished)
