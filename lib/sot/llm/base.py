"""What every generation backend shares: sampling settings, results, prompt checks, seeds, stop strings."""
from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Union

from sot.prompts import render_messages
from sot.tokens import encode_prompt

Prompt = Union[str, list]          # a ready prompt string, or a list of chat messages {"role", "content"}


@dataclass
class Sampling:
    """How to sample: temperature 0 means greedy (then the n samples of a prompt are identical)."""
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0
    stop: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        self.stop = tuple(self.stop or ())
        if self.n < 1:
            raise ValueError(f"Sampling.n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"Sampling.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"Sampling.top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"Sampling.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ValueError(f"Sampling.stop must hold non-empty strings, got {self.stop!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


@dataclass
class Sample:
    """One completion: the generated text only (no prompt), its token count, and why it ended."""
    text: str
    n_tokens: int
    finish_reason: str             # "stop" (EOS or a stop string) | "length" (max_new_tokens reached)


class Backend:
    """Interface: generate(prompts, sampling, progress) -> one list of `sampling.n` Samples per prompt."""
    name = "base"
    auto_choice: str | None = None     # set by get_backend("auto", ...): which backend it picked and why

    def generate(self, prompts: list[Prompt], sampling: Sampling, progress: bool = True) -> list[list[Sample]]:
        raise NotImplementedError

    def info(self) -> dict:
        """Provenance: model, adapter, backend, device, dtype, library versions (recorded with every sample)."""
        d = self._info()
        if self.auto_choice:
            d["auto_choice"] = self.auto_choice
        return d

    def _info(self) -> dict:
        raise NotImplementedError


def check_prompts(prompts) -> None:
    """Fail early, naming the prompt index, on anything that is neither a string nor a list of messages."""
    if not isinstance(prompts, (list, tuple)):
        raise TypeError(f"prompts must be a list of str or of message lists, got {type(prompts).__name__}")
    for i, p in enumerate(prompts):
        if isinstance(p, str):
            continue
        if not isinstance(p, (list, tuple)) or not p:
            raise TypeError(f"prompts[{i}]: expected a str or a non-empty list of messages, got {p!r:.80}")
        for j, m in enumerate(p):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise TypeError(f"prompts[{i}][{j}]: a message needs str fields 'role' and 'content', got {m!r:.80}")


def render(tokenizer, prompt: Prompt) -> str:
    """A str prompt as is; a message list through the model's chat template with the generation prompt
    (sot.prompts.render_messages, the same rendering as training's chat style)."""
    if isinstance(prompt, str):
        return prompt
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("got chat messages but the model's tokenizer has no chat_template; "
                         "pass rendered str prompts (sot.prompts.render style 'plain') instead")
    return render_messages(prompt, tokenizer)


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of a rendered prompt, by the rule training and the distance stage use (sot.tokens.encode_prompt):
    BOS once where the tokenizer uses one (not doubled when a chat template writes it), never a trailing EOS."""
    return encode_prompt(tokenizer, text)


def prompt_seed(seed: int, text: str, sample: int) -> int:
    """Seed of one (prompt, sample): depends on the content only, not on batching, order or chunking."""
    h = hashlib.sha256(f"{seed}\0{sample}\0{text}".encode()).digest()
    return int.from_bytes(h[:8], "little") & (2**63 - 1)


def truncate_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Cut `text` before the earliest stop string; returns (text, whether one was found)."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def versions(*packages: str) -> dict:
    """Installed versions of the given distributions (None where missing)."""
    out = {}
    for p in packages:
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            out[p] = None
    return out


def adapter_digest(path: str | None) -> str | None:
    """sha256 over the files of a LoRA folder, so that a retrained adapter at the same path is a new setting."""
    if path is None:
        return None
    folder = Path(path)
    if not (folder / "adapter_config.json").exists():
        raise FileNotFoundError(f"adapter {folder}: no adapter_config.json there; pass a folder written by "
                                "PeftModel.save_pretrained (the SFT stage's output)")
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()

