"""TRL SFTTrainer (+ PEFT LoRA) on pre-tokenised examples: CPU, one GPU, or several processes under torchrun.

The dataset handed to TRL already holds `input_ids` and `labels` (our exact completion-only mask), so TRL skips
its own tokenisation and leaves the labels as they are; our right-padding collator pads the batches. The
Unsloth backend reuses `build_trainer` and `run_trainer` with its own model. With `resumable=True` every save
is a full checkpoint (optimizer, scheduler, RNG, trainer state) and sot.sft.resume decides when to save and
what to prune; `run_trainer(..., resume_from=checkpoint)` continues from one.
"""
from __future__ import annotations

import contextlib
import os
import time

from sot.sft import counting, distributed, schedule
from sot.sft.config import SFTConfig
from sot.sft.data import RightPadCollator, TokenizedSet


def _to_hf_dataset(tset: TokenizedSet):
    from datasets import Dataset
    return Dataset.from_dict({"input_ids": [e["input_ids"] for e in tset.examples],
                              "labels": [e["labels"] for e in tset.examples]})


def _final_step_callback(has_val: bool):
    from transformers import TrainerCallback

    class FinalStep(TrainerCallback):
        """Log (and evaluate) at the last step too, so the history ends at the step the model is saved from."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_log = True
                control.should_evaluate = has_val
            return control

    return FinalStep()


def lora_config(cfg: SFTConfig):
    from peft import LoraConfig
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.target_modules), bias="none", task_type="CAUSAL_LM")


def build_trainer(model, tokenizer, train_set: TokenizedSet, val_set: TokenizedSet | None, cfg: SFTConfig,
                  plan: dict, work_dir, bf16: bool, peft_config=None, callbacks=(),
                  gradient_checkpointing: bool | None = None, resumable: bool = False, sharded: bool = False):
    """A TRL SFTTrainer for pre-tokenised examples (sharded: FSDP2, sot.sft.distributed; else DDP or one process).
    best_val: the Trainer saves the model at each new best
    validation loss and loads the best one back at the end. resumable=False: those saves hold the model only
    and the Trainer keeps one; resumable=True: every save is a full checkpoint (optimizer, scheduler, RNG,
    trainer state) and the sot.sft.resume callback (in `callbacks`) adds the periodic saves and prunes."""
    import torch
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    has_val = bool(val_set is not None and len(val_set))
    if cfg.checkpoint == "best_val" and not has_val:
        raise ValueError("SFTConfig.checkpoint='best_val' needs a validation split: set eval_fraction > 0 "
                         "or pass val_records")
    best = cfg.checkpoint == "best_val"
    eval_steps = cfg.eval_steps or max(1, plan["max_steps"] // 10)
    if gradient_checkpointing is None:
        gradient_checkpointing = cfg.gradient_checkpointing
    args = TRLSFTConfig(
        output_dir=str(work_dir), max_steps=plan["max_steps"], gradient_accumulation_steps=plan["grad_accum"],
        per_device_train_batch_size=cfg.per_device_batch_size, per_device_eval_batch_size=cfg.per_device_batch_size,
        learning_rate=cfg.lr, warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay, optim=cfg.optimizer,
        lr_scheduler_type=cfg.lr_scheduler, bf16=bf16, fp16=False, seed=cfg.seed, data_seed=cfg.seed,
        use_cpu=not torch.cuda.is_available(), ddp_find_unused_parameters=False,
        logging_steps=cfg.logging_steps, logging_first_step=True, report_to="none",
        include_num_input_tokens_seen="non_padding",   # in the trainer state: the count survives a resume
        gradient_checkpointing=gradient_checkpointing and not sharded, max_length=cfg.max_length, packing=False,
        eval_strategy="steps" if has_val else "no", eval_steps=eval_steps if has_val else None,
        save_strategy="best" if best else "no", save_only_model=not (resumable or sharded),
        save_total_limit=1 if best and not resumable else None,
        load_best_model_at_end=best, metric_for_best_model="eval_loss" if has_val else None,
        greater_is_better=False if has_val else None, dataloader_pin_memory=torch.cuda.is_available(),
        **{**(distributed.fsdp_trainer_args(model._no_split_modules, bf16) if sharded else {}), **cfg.extra})
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with distributed.cpu_fsdp() if sharded else contextlib.nullcontext():
        trainer = SFTTrainer(
            model=model, args=args, data_collator=RightPadCollator(pad_id), train_dataset=_to_hf_dataset(train_set),
            eval_dataset=_to_hf_dataset(val_set) if has_val else None, processing_class=tokenizer,
            peft_config=peft_config, callbacks=[_final_step_callback(has_val), *callbacks])
    if sharded:
        distributed.require_sharded(trainer)
        distributed.set_mixed_precision(trainer, bf16)
    schedule.attach(trainer, plan["max_steps"], cfg.warmup_ratio, cfg.lr_scheduler)   # no step at learning rate 0
    counting.attach(trainer)                             # loss-bearing tokens trained on, in the log
    return trainer


def history_from_log(log_history: list[dict]) -> list[dict]:
    """Per-logged-step records {step, tokens_seen, loss, lr, [val_loss]} from Trainer.state.log_history."""
    by_step: dict[int, dict] = {}
    for entry in log_history:
        step = entry.get("step")
        if step is None:
            continue
        if "loss" in entry:
            row = by_step.setdefault(step, {"step": step})
            # the Trainer's count (checkpointed) rather than TRL's num_tokens, which restarts at 0 on a resume
            row.update(tokens_seen=entry.get("num_input_tokens_seen", entry.get("num_tokens")), loss=entry["loss"],
                       lr=entry.get("learning_rate"))
        if "eval_loss" in entry:
            by_step.setdefault(step, {"step": step})["val_loss"] = entry["eval_loss"]
    rows = [by_step[s] for s in sorted(by_step)]
    seen = None
    for row in rows:   # evaluation-only rows carry the last known token count
        seen = row.get("tokens_seen", seen)
        row.setdefault("tokens_seen", seen)
    return rows


def mean_loss(history: list[dict]) -> float | None:
    """Mean training loss over all steps, from the logged window means (each weighted by its steps): the same
    for a run resumed from a checkpoint as for an uninterrupted one (the Trainer's own figure covers only the
    steps of its last session)."""
    total = steps = last = 0
    for row in history:
        if row.get("loss") is not None:
            total += row["loss"] * (row["step"] - last)
            steps += row["step"] - last
            last = row["step"]
    return total / steps if steps else None


def run_trainer(trainer, cfg: SFTConfig, resume_from=None, tokens_before: int = 0) -> dict:
    """Train (from checkpoint `resume_from` when given); return timing, tokens, peak memory, the loss history
    and the checkpoint chosen (and why). train_seconds and tokens_per_s cover this session's steps only."""
    import torch

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    seconds = time.perf_counter() - start
    state = trainer.state
    history = history_from_log(state.log_history)
    tokens = next((int(r["tokens_seen"]) for r in reversed(history) if r.get("tokens_seen") is not None), None)
    losses = [r for r in history if "loss" in r]
    if cfg.checkpoint == "best_val":
        ckpt = state.best_model_checkpoint
        step = int(str(ckpt).rsplit("-", 1)[-1]) if ckpt else None
        n_eval = sum(1 for r in history if "val_loss" in r)
        checkpoint = {"rule": "best_val", "step": step, "val_loss": state.best_metric,
                      "why": f"lowest validation loss of {n_eval} evaluations"}
    else:
        vals = [r["val_loss"] for r in history if "val_loss" in r and r["step"] == state.global_step]
        checkpoint = {"rule": "final", "step": state.global_step, "val_loss": vals[-1] if vals else None,
                      "why": "last step (checkpoint='final')"}
    return {
        "steps": state.global_step, "tokens": tokens, "completion_tokens": counting.last_count(state.log_history),
        "train_seconds": round(seconds, 3),
        "tokens_per_s": round((tokens - tokens_before) / seconds, 2) if tokens and seconds > 0 else None,
        "final_loss": losses[-1]["loss"] if losses else None, "mean_train_loss": mean_loss(history),
        "checkpoint": checkpoint, "history": history,
        "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else None,
    }


def make_trainer(cfg: SFTConfig, model_path: str, tokenizer, train_set: TokenizedSet, val_set: TokenizedSet | None,
                 plan: dict, work_dir, bf16: bool, model_dtype: str, callbacks=(), resumable: bool = False):
    """Load the model with transformers (+ PEFT LoRA when cfg.method == 'lora') and build the TRL trainer."""
    import torch
    from transformers import AutoModelForCausalLM

    sharded = cfg.distributed == "fsdp" and int(os.environ.get("WORLD_SIZE", "1")) > 1
    if sharded:   # rank 0 reads the weights; FSDP broadcasts each process its shards (cpu_ram_efficient_loading)
        os.environ.update(distributed.loading_env())
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, model_dtype))
    peft_config = lora_config(cfg) if cfg.method == "lora" else None
    return build_trainer(model, tokenizer, train_set, val_set, cfg, plan, work_dir, bf16,
                         peft_config=peft_config, callbacks=callbacks, resumable=resumable, sharded=sharded)
