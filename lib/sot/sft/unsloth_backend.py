"""Unsloth backend (CUDA only): FastLanguageModel loads the model (LoRA via get_peft_model, or full fine-tuning),
then the same TRL SFTTrainer, examples, collator and history as the TRL backend.

`unsloth` is imported inside the function: it fails to import without a CUDA GPU. It patches TRL and transformers
when imported, so `sot.sft.train` imports it (while choosing the backend) before anything imports TRL.
"""
from __future__ import annotations

from sot.sft.config import SFTConfig
from sot.sft.data import TokenizedSet
from sot.sft.trl_backend import build_trainer


def make_trainer(cfg: SFTConfig, model_path: str, tokenizer, train_set: TokenizedSet, val_set: TokenizedSet | None,
                 plan: dict, work_dir, bf16: bool, model_dtype: str, callbacks=(), resumable: bool = False):
    """Load with Unsloth (16-bit LoRA or full fine-tuning, never 4-bit) and build the TRL trainer around it."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("SFTConfig.backend='unsloth' needs a CUDA GPU; use backend='trl' (or 'auto') here")
    from unsloth import FastLanguageModel

    checkpointing = "unsloth" if cfg.gradient_checkpointing else False
    full = cfg.method == "full"
    model, _ = FastLanguageModel.from_pretrained(
        model_name=model_path, max_seq_length=cfg.max_length, dtype=getattr(torch, model_dtype),
        load_in_4bit=False, load_in_8bit=False, full_finetuning=full, use_gradient_checkpointing=checkpointing,
        random_state=cfg.seed, use_exact_model_name=True)   # exact: a local folder, no hub name mapping
    if not full:
        model = FastLanguageModel.get_peft_model(
            model, r=cfg.lora_r, target_modules=list(cfg.target_modules), lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout, bias="none", use_gradient_checkpointing=checkpointing,
            random_state=cfg.seed)
    # Unsloth handles checkpointing itself; our tokenizer (the one the examples were built with) is kept.
    return build_trainer(model, tokenizer, train_set, val_set, cfg, plan, work_dir, bf16,
                         peft_config=None, callbacks=callbacks, gradient_checkpointing=False, resumable=resumable)
