"""The vLLM backend (CUDA only): offline `vllm.LLM.generate`, LoRA adapters through `LoRARequest`.

Prompts are rendered and tokenized here exactly as in the transformers backend (same chat template, same
BOS rule) and passed as token ids, so both backends see identical inputs. Each prompt gets its own
SamplingParams with seed `prompt_seed(seed, prompt text, 0)`: its n samples come from one seeded request,
independent of the other prompts in the call (vLLM's own kernels are not bitwise deterministic across
batch shapes, so reruns agree closely but not always exactly). Greedy: one request, replicated n times.
vllm is imported inside __init__ only: it does not import without CUDA.
"""
from __future__ import annotations

from .base import (Backend, Sample, Sampling, adapter_digest, check_prompts, encode, prompt_seed, render,
                   truncate_at_stop, versions)


class VLLMBackend(Backend):
    """`model`: a sot.models reference; `adapter`: a PEFT LoRA folder (served with enable_lora=True)."""
    name = "vllm"

    def __init__(self, model: str, adapter: str | None = None, dtype: str = "auto",
                 gpu_memory_utilization: float = 0.9, max_model_len: int | None = None,
                 max_lora_rank: int = 64, tensor_parallel_size: int = 1, enforce_eager: bool = False,
                 ignore_eos: bool = False):
        import torch
        from sot import models

        if not torch.cuda.is_available():
            raise RuntimeError("backend 'vllm' needs a CUDA GPU and none is visible; use backend "
                               "'transformers' (or 'auto', which picks it on CPU-only machines)")
        try:
            from vllm import LLM
        except ImportError as e:
            raise ImportError(f"backend 'vllm' needs the vllm package ({e}); install the GPU set (`make setup-gpu`: "
                              "pip install -e .[gpu] -c constraints/gpu.txt) or use backend 'transformers'") from e
        from sot.precision import weights_dtype
        dtype = weights_dtype(dtype, "cuda", "float16", "vLLM's weights")   # vLLM refuses bf16 on a T4 or V100
        self.model_ref, self.adapter, self.dtype, self.ignore_eos = model, adapter, dtype, ignore_eos
        self.adapter_sha256 = adapter_digest(adapter)
        self.model_path = models.resolve(model)
        kwargs = dict(model=self.model_path, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                      tensor_parallel_size=tensor_parallel_size, enforce_eager=enforce_eager, seed=0)
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if adapter is not None:
            kwargs.update(enable_lora=True, max_lora_rank=max_lora_rank, max_loras=1)
        self.options = {k: v for k, v in kwargs.items() if k != "model"}
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        # Stop also at the chat template's end-of-turn token (as the transformers backend does): a base model
        # fine-tuned in chat style learned to end with it, and its generation config may not list it.
        self.stop_token_ids = None
        if getattr(self.tokenizer, "chat_template", None):
            from sot.tokens import end_token_id
            self.stop_token_ids = [end_token_id(self.tokenizer, "chat")]
        self.lora_request = None
        if adapter is not None:
            from vllm.lora.request import LoRARequest
            self.lora_request = LoRARequest("adapter", 1, str(adapter))

    def _info(self) -> dict:
        return {"backend": self.name, "model": self.model_ref, "model_path": self.model_path,
                "adapter": self.adapter, "adapter_sha256": self.adapter_sha256, "device": "cuda",
                "dtype": self.dtype, "ignore_eos": self.ignore_eos, "options": self.options,
                "versions": versions("torch", "transformers", "vllm")}

    def generate(self, prompts, sampling: Sampling, progress: bool = True) -> list[list[Sample]]:
        from vllm import SamplingParams

        check_prompts(prompts)
        texts = [render(self.tokenizer, p) for p in prompts]
        requests = [{"prompt_token_ids": encode(self.tokenizer, t)} for t in texts]
        params = [SamplingParams(
            n=1 if sampling.greedy else sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens, seed=None if sampling.greedy else prompt_seed(sampling.seed, t, 0),
            stop=list(sampling.stop) or None, stop_token_ids=self.stop_token_ids, ignore_eos=self.ignore_eos,
            skip_special_tokens=True)
            for t in texts]
        outputs = self.llm.generate(requests, params, use_tqdm=progress, lora_request=self.lora_request)
        results = []
        for out in outputs:
            samples = [self._sample(c, sampling) for c in sorted(out.outputs, key=lambda c: c.index)]
            results.append(samples * sampling.n if sampling.greedy else samples)
        return results

    @staticmethod
    def _sample(completion, sampling: Sampling) -> Sample:
        text, found = truncate_at_stop(completion.text, sampling.stop)
        reason = "length" if completion.finish_reason == "length" and not found else "stop"
        return Sample(text=text, n_tokens=len(completion.token_ids), finish_reason=reason)
