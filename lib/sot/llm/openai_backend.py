"""The OpenAI-compatible backend: any server speaking /v1/completions and /v1/chat/completions (vLLM serve,
TGI, llama.cpp server, OpenAI itself). str prompts go to the completions API, message lists to chat.

- Concurrency: at most `concurrency` requests in flight (a thread pool, one prompt per task).
- Retries: 429, 5xx, timeouts and connection errors are retried up to `max_retries` times with exponential
  backoff (`backoff` * 2**attempt seconds, jittered, at most 60 s; a Retry-After header wins when present).
- n samples: one request with `n`; if the server rejects n > 1 (400/422), this and every later prompt use n
  separate requests with seeds prompt_seed(seed, prompt, j). Greedy: one request, replicated.
- n_tokens: usage.completion_tokens when a request returns one choice; with n > 1 choices the server reports
  only the total, so each choice is counted with `tokenizer` (a sot.models reference) when given, else the
  total is split over the choices in proportion to their text length (info() says which); 0 when the server
  reports no usage and no tokenizer is given.
- Stop strings are sent to the server and also applied to the returned text.
"""
from __future__ import annotations

import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

from .base import Backend, Sample, Sampling, check_prompts, prompt_seed, truncate_at_stop, versions

log = logging.getLogger(__name__)
LOCAL_HOSTS = {"127.0.0.1", "localhost", "0.0.0.0", "::1"}


def api_key_for(base_url: str | None, api_key_env: str) -> str:
    key = os.environ.get(api_key_env)
    if key:
        return key
    host = urlparse(base_url).hostname if base_url else None
    if host in LOCAL_HOSTS:
        return "EMPTY"                  # local servers (vllm serve) accept any key
    raise RuntimeError(f"backend 'openai': environment variable {api_key_env} is not set and base_url "
                       f"{base_url or 'https://api.openai.com/v1'} is not local; export {api_key_env}=<key> "
                       "or pass api_key_env=<the variable that holds it>")


def split_tokens(total: int, texts: list[str]) -> list[int]:
    """Split a token total over texts in proportion to their length (sums exactly to total)."""
    weights = [max(len(t), 1) for t in texts]
    parts = [total * w // sum(weights) for w in weights]
    for k in range(total - sum(parts)):
        parts[k % len(parts)] += 1
    return parts


class OpenAIBackend(Backend):
    """`model`: the model name the server serves (a LoRA is served under its own name: pass that)."""
    name = "openai"

    def __init__(self, model: str, adapter: str | None = None, base_url: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", concurrency: int = 8, max_retries: int = 5,
                 timeout: float = 600.0, backoff: float = 1.0, tokenizer: str | None = None):
        import openai

        if adapter is not None:
            raise ValueError("backend 'openai' cannot load an adapter; serve it as a model "
                             "(e.g. `vllm serve BASE --enable-lora --lora-modules NAME=PATH`) and pass NAME as model")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.model_ref, self.base_url, self.api_key_env = model, base_url, api_key_env
        self.concurrency, self.max_retries, self.backoff, self.timeout = concurrency, max_retries, backoff, timeout
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key_for(base_url, api_key_env),
                                    max_retries=0, timeout=timeout)
        self.tokenizer_ref = tokenizer
        self.tokenizer = None
        if tokenizer is not None:
            from transformers import AutoTokenizer
            from sot import models
            self.tokenizer = AutoTokenizer.from_pretrained(models.resolve(tokenizer))
        self.n_supported = True
        self._lock = threading.Lock()
        self.retries = 0                # retried requests so far (for logs and tests)

    def _info(self) -> dict:
        return {"backend": self.name, "model": self.model_ref, "base_url": self.base_url, "adapter": None,
                "device": "remote", "concurrency": self.concurrency, "n_supported": self.n_supported,
                "n_tokens": ("tokenizer " + self.tokenizer_ref) if self.tokenizer_ref else
                "usage per request; split by text length when one request returns n > 1 choices",
                "versions": versions("openai")}

    def generate(self, prompts, sampling: Sampling, progress: bool = True) -> list[list[Sample]]:
        from sot.progress import tqdm

        check_prompts(prompts)
        bar = tqdm(total=len(prompts), unit="prompt", disable=not progress, desc="generate (openai)",
                   leave=False)
        start, counts = time.perf_counter(), [0, 0]

        def one(prompt):
            samples = self._prompt_samples(prompt, sampling)
            with self._lock:
                counts[0] += len(samples)
                counts[1] += sum(s.n_tokens for s in samples)
                secs = max(time.perf_counter() - start, 1e-9)
                bar.update(1)
                bar.set_postfix(samples_s=f"{counts[0] / secs:.2f}", tok_s=f"{counts[1] / secs:.1f}")
            return samples

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            results = list(pool.map(one, prompts))
        bar.close()
        return results

    def _prompt_samples(self, prompt, sampling: Sampling) -> list[Sample]:
        import openai

        key = prompt if isinstance(prompt, str) else "\0".join(m["role"] + "\0" + m["content"] for m in prompt)
        if sampling.greedy:
            return self._request(prompt, sampling, 1, None) * sampling.n
        if sampling.n > 1 and self.n_supported:
            try:
                return self._request(prompt, sampling, sampling.n, prompt_seed(sampling.seed, key, 0))
            except (openai.BadRequestError, openai.UnprocessableEntityError) as e:
                with self._lock:
                    if self.n_supported:
                        log.warning("server rejected n=%d (%s); using %d requests per prompt from now on",
                                    sampling.n, e, sampling.n)
                    self.n_supported = False
        return [self._request(prompt, sampling, 1, prompt_seed(sampling.seed, key, j))[0]
                for j in range(sampling.n)]

    def _request(self, prompt, sampling: Sampling, n: int, seed: int | None) -> list[Sample]:
        common = dict(model=self.model_ref, n=n, temperature=sampling.temperature, top_p=sampling.top_p,
                      stop=list(sampling.stop) or None)
        if seed is not None:
            common["seed"] = seed
        if isinstance(prompt, str):
            resp = self._with_retries(self.client.completions.create, prompt=prompt,
                                      max_tokens=sampling.max_new_tokens, **common)
            texts = [c.text or "" for c in resp.choices]
        else:
            resp = self._with_retries(self.client.chat.completions.create, messages=list(prompt),
                                      max_completion_tokens=sampling.max_new_tokens, **common)
            texts = [c.message.content or "" for c in resp.choices]
        if len(resp.choices) != n:
            raise RuntimeError(f"backend 'openai': asked {self.base_url} for n={n} choices, got {len(resp.choices)}")
        total = resp.usage.completion_tokens if resp.usage is not None else None
        if self.tokenizer is not None or total is None:
            tok = self.tokenizer
            counts = [len(tok(t, add_special_tokens=False)["input_ids"]) if tok else 0 for t in texts]
        else:
            counts = [total] if n == 1 else split_tokens(total, texts)
        samples = []
        for choice, text, count in zip(resp.choices, texts, counts):
            text, found = truncate_at_stop(text, sampling.stop)
            reason = "length" if choice.finish_reason == "length" and not found else "stop"
            samples.append(Sample(text=text, n_tokens=count, finish_reason=reason))
        return samples

    def _with_retries(self, create, **kwargs):
        import openai

        for attempt in range(self.max_retries + 1):
            try:
                return create(**kwargs)
            except (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError,
                    openai.InternalServerError, openai.APIStatusError) as e:
                status = getattr(e, "status_code", None)
                retryable = status is None or status == 429 or status >= 500
                if not retryable or attempt == self.max_retries:
                    if retryable:
                        raise RuntimeError(f"backend 'openai': {self.base_url} still failing after "
                                           f"{self.max_retries} retries: {e}") from e
                    raise
                delay = min(60.0, self.backoff * 2 ** attempt) * (1 + 0.25 * random.random())
                response = getattr(e, "response", None)
                after = response.headers.get("retry-after") if response is not None else None
                if after and after.replace(".", "", 1).isdigit():
                    delay = min(60.0, float(after))
                with self._lock:
                    self.retries += 1
                log.warning("openai request failed (%s); retry %d/%d in %.2fs",
                            status or type(e).__name__, attempt + 1, self.max_retries, delay)
                time.sleep(delay)
