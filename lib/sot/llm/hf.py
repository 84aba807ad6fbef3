"""The transformers backend: batched generation with left padding and KV cache, on CPU or GPU.

Determinism. Greedy decoding (temperature 0) depends on nothing but the prompt; batched and one-at-a-time
runs agree up to float rounding of padded attention (identical in float32 in the tests). Sampling does not
use torch's global RNG: each (prompt, sample) row draws Gumbel noise from its own generator seeded by
`prompt_seed(seed, prompt text, sample index)` (Gumbel-max = sampling from softmax(logits / T) after top-p),
so a sample does not depend on batch size, batch boundaries, prompt order or resume chunking; only
float-rounding differences between batch shapes or devices can flip a near-tie. Same device + dtype +
library versions => same samples.
"""
from __future__ import annotations

import logging
import time

from .base import (Backend, Sample, Sampling, adapter_digest, check_prompts, encode, prompt_seed, render,
                   truncate_at_stop, versions)

log = logging.getLogger(__name__)


def pick_device(device: str = "auto") -> str:
    import torch
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def pick_dtype(dtype: str, device: str) -> str:
    """`auto`: bf16 on a CUDA GPU that has it natively, else float32; bfloat16 asked for on a GPU without it
    falls back to float32, said once (sot.precision)."""
    from sot.precision import cuda_has_bf16, weights_dtype
    if dtype != "auto":
        return weights_dtype(dtype, device, "float32", "the transformers backend's weights")
    if device.startswith("cuda") and cuda_has_bf16():
        return "bfloat16"
    return "float32"


# Nucleus candidates are looked for among this many most likely tokens first; a row whose top-p mass is not
# reached inside them is redone over the whole vocabulary, so the result is exactly top-p either way. Sorting
# the whole vocabulary (152k tokens for Qwen2.5) for every row at every step cost more than the model's
# forward pass on the CPU (1.3 s a step for 48 rows).
NUCLEUS_CANDIDATES = 1024
SAMPLER = "gumbel-max, top-p over the top-1024 candidates (exact), per-row seeds"   # recorded in info()


def nucleus_mask(sorted_logprobs, top_p: float):
    """For log-probabilities sorted in descending order: True where a token is in the nucleus, i.e. the
    probability mass of the tokens before it is below top_p (the most likely token is always kept)."""
    import torch

    probs = sorted_logprobs.exp()
    before = torch.cumsum(probs, dim=-1) - probs
    keep = before < top_p
    keep[..., 0] = True
    return keep


def _seeded_sampler(seeds: list[int], temperature: float, top_p: float, device):
    """A logits processor that turns greedy argmax into per-row seeded sampling (Gumbel-max trick).

    Each row's noise comes from its own generator (seeded per prompt and sample), so a row's sample does not
    depend on its batch. With top_p < 1 the noise is drawn for the nucleus candidates only (see
    NUCLEUS_CANDIDATES): argmax(logit / T + Gumbel) over the nucleus = a draw from the renormalised nucleus."""
    import torch
    from transformers.generation.logits_process import LogitsProcessor

    class SeededGumbel(LogitsProcessor):
        def __init__(self):
            self.gens = [torch.Generator(device=device).manual_seed(s) for s in seeds]

        def _gumbel(self, row: int, size: int, on):
            u = torch.rand(size, generator=self.gens[row], device=on)
            u = u.clamp_(min=torch.finfo(u.dtype).tiny, max=1.0 - torch.finfo(u.dtype).eps)
            return -torch.log(-torch.log(u))

        def __call__(self, input_ids, scores):
            scores = scores.float() / temperature
            rows, vocab = scores.shape
            if top_p >= 1.0:
                noise = torch.stack([self._gumbel(r, vocab, scores.device) for r in range(rows)])
                return scores + noise
            logprobs = scores - torch.logsumexp(scores, dim=-1, keepdim=True)
            k = min(NUCLEUS_CANDIDATES, vocab)
            top, idx = logprobs.topk(k, dim=-1)
            out = torch.full_like(scores, float("-inf"))
            for r in range(rows):
                lp, ix = top[r], idx[r]
                if lp.exp().sum() < top_p and k < vocab:    # the nucleus reaches past the candidates
                    lp, ix = logprobs[r].sort(descending=True)
                n = int(nucleus_mask(lp, top_p).sum())
                out[r, ix[:n]] = lp[:n] + self._gumbel(r, n, scores.device)
            return out

    return SeededGumbel()


def plan_batches(lengths: list[int], batch_size: int, factor: float = 2.0) -> list[tuple[int, int]]:
    """(start, end) slices of rows sorted longest first: `batch_size` rows a batch, fewer where the batch's longest
    prompt would pad more than `batch_size` x `factor` x the median prompt length. Left padding makes every row
    of a batch cost its longest prompt: one 1,500-token MBPP test prompt among 64 of ~150 tokens made a batch
    (its prefill and attention) take minutes on the CPU; it now gets a batch of a few rows. A call whose prompts
    are within `factor` of the median is batched exactly as before."""
    if not lengths:
        return []
    ordered = sorted(lengths)
    budget = batch_size * factor * max(1, ordered[len(ordered) // 2])
    out, b = [], 0
    while b < len(lengths):
        size = max(1, min(batch_size, int(budget // max(1, lengths[b]))))
        out.append((b, min(b + size, len(lengths))))
        b += size
    return out


def _stop_criterion(tokenizer, stop: tuple[str, ...], prompt_len: int, batch: int):
    """Stops a row once its generated text (not the prompt) contains a stop string; records the step."""
    import torch
    from transformers.generation.stopping_criteria import StoppingCriteria

    class StopOnText(StoppingCriteria):
        def __init__(self):
            self.tail = max(len(s) for s in stop) + 4          # tokens: every token decodes to >= 1 char or so
            self.stopped_at = [None] * batch                    # number of generated tokens when it fired

        def __call__(self, input_ids, scores, **kwargs):
            gen = input_ids[:, prompt_len:]
            texts = tokenizer.batch_decode(gen[:, -self.tail:], skip_special_tokens=True)
            hit = []
            for r, t in enumerate(texts):
                if self.stopped_at[r] is None and any(s in t for s in stop):
                    self.stopped_at[r] = gen.shape[1]
                hit.append(self.stopped_at[r] is not None)
            return torch.tensor(hit, dtype=torch.bool, device=input_ids.device)

    return StopOnText()


class TransformersBackend(Backend):
    """`model`: a sot.models reference; `adapter`: a PEFT LoRA folder merged on top;
    `ignore_eos`: force exactly max_new_tokens tokens (benchmarks only)."""
    name = "transformers"

    def __init__(self, model: str, adapter: str | None = None, device: str = "auto", dtype: str = "auto",
                 batch_size: int = 16, ignore_eos: bool = False):
        from sot import models

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_ref, self.adapter, self.batch_size, self.ignore_eos = model, adapter, batch_size, ignore_eos
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        self.adapter_sha256 = adapter_digest(adapter)
        self.model_path = models.resolve(model)
        if adapter is None:
            self.model, self.tokenizer = models.load(model, dtype=self.dtype, device=self.device)
        else:   # merged in float32, then cast once: a bf16 base would round the adapter's update per weight
            from peft import PeftModel
            self.model, self.tokenizer = models.load(model, dtype="float32", device=self.device)
            self.model = PeftModel.from_pretrained(self.model, adapter).merge_and_unload()
            if self.dtype != "float32":
                import torch
                self.model.to(getattr(torch, self.dtype))
            self.model.eval()
        eos = self.model.generation_config.eos_token_id
        eos = self.tokenizer.eos_token_id if eos is None else eos
        self.eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos])
        # A model fine-tuned in chat style learned to end with its template's end-of-turn token (sot.tokens), which
        # a base model's generation config may not list (Qwen2.5 base: <|im_end|>; Llama-3.1 base: <|eot_id|>).
        if getattr(self.tokenizer, "chat_template", None):
            from sot.tokens import end_token_id
            self.eos_ids.add(end_token_id(self.tokenizer, "chat"))
        # Only what Sampling says applies: drop the checkpoint's generation defaults (e.g. Qwen's
        # repetition_penalty), which generate() would otherwise merge into every call.
        from transformers import GenerationConfig
        self.model.generation_config = GenerationConfig(
            bos_token_id=self.tokenizer.bos_token_id, eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.tokenizer.pad_token_id)

    def _info(self) -> dict:
        return {"backend": self.name, "model": self.model_ref, "model_path": self.model_path,
                "adapter": self.adapter, "adapter_sha256": self.adapter_sha256, "device": self.device,
                "dtype": self.dtype, "batch_size": self.batch_size, "ignore_eos": self.ignore_eos, "sampler": SAMPLER,
                "versions": versions("torch", "transformers", "peft")}

    def generate(self, prompts, sampling: Sampling, progress: bool = True) -> list[list[Sample]]:
        import torch
        from sot.progress import tqdm

        check_prompts(prompts)
        torch.manual_seed(sampling.seed)
        texts = [render(self.tokenizer, p) for p in prompts]
        ids = [encode(self.tokenizer, t) for t in texts]
        per_prompt = 1 if sampling.greedy else sampling.n      # greedy samples are identical: compute once
        rows = [(i, j) for i in range(len(prompts)) for j in range(per_prompt)]
        rows.sort(key=lambda r: -len(ids[r[0]]))              # similar lengths together: less padding
        done: dict[tuple[int, int], Sample] = {}
        bar = tqdm(total=len(rows), unit="sample", disable=not progress, desc="generate", leave=False)
        start, n_tok = time.perf_counter(), 0
        for b, e in plan_batches([len(ids[i]) for i, _ in rows], self.batch_size):
            batch = rows[b:e]
            seeds = [prompt_seed(sampling.seed, texts[i], j) for i, j in batch]
            for row, sample in zip(batch, self._generate_batch([ids[i] for i, _ in batch], seeds, sampling)):
                done[row] = sample
                n_tok += sample.n_tokens
            bar.update(len(batch))
            secs = max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(samples_s=f"{len(done) / secs:.2f}", tok_s=f"{n_tok / secs:.1f}")
        bar.close()
        return [[done[(i, 0 if sampling.greedy else j)] for j in range(sampling.n)] for i in range(len(prompts))]

    def _generate_batch(self, batch_ids: list[list[int]], seeds: list[int], sampling: Sampling) -> list[Sample]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        pad = self.tokenizer.pad_token_id
        width = max(len(x) for x in batch_ids)
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in batch_ids], device=self.model.device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in batch_ids], device=self.model.device)
        config = GenerationConfig(
            max_new_tokens=sampling.max_new_tokens, do_sample=False, pad_token_id=pad,
            eos_token_id=sorted(self.eos_ids), bos_token_id=self.tokenizer.bos_token_id,
            min_new_tokens=sampling.max_new_tokens if self.ignore_eos else None)
        processors = LogitsProcessorList()
        if not sampling.greedy:
            processors.append(_seeded_sampler(seeds, sampling.temperature, sampling.top_p, self.model.device))
        criteria = StoppingCriteriaList()
        stopper = _stop_criterion(self.tokenizer, sampling.stop, width, len(batch_ids)) if sampling.stop else None
        if stopper is not None:
            criteria.append(stopper)
        out = self.model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config,
                                  logits_processor=processors, stopping_criteria=criteria)
        samples = []
        for r, tokens in enumerate(out[:, width:].tolist()):
            n, ended = count_generated(tokens, self.eos_ids, stopper.stopped_at[r] if stopper else None)
            text = self.tokenizer.decode(tokens[:n], skip_special_tokens=True)
            text, found = truncate_at_stop(text, sampling.stop)
            samples.append(Sample(text=text, n_tokens=n, finish_reason="stop" if ended or found else "length"))
        return samples


def count_generated(tokens: list[int], eos_ids: set[int], stopped_at: int | None) -> tuple[int, bool]:
    """(number of generated tokens, whether it ended by EOS or stop string) for one padded output row.

    Tokens after the end are padding (pad may equal EOS). A stop string ends the row at `stopped_at`;
    otherwise the first EOS ends it and counts as a generated token; otherwise it ran to the length limit.
    """
    eos_at = next((k for k, t in enumerate(tokens) if t in eos_ids), None)
    if stopped_at is not None and (eos_at is None or stopped_at <= eos_at):
        return stopped_at, True
    if eos_at is not None:
        return eos_at + 1, True
    return len(tokens), False
