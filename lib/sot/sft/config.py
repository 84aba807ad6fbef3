"""SFTConfig: every fine-tuning setting in one dataclass, the paper preset, and the step-budget rule.

Budgets (how long a run trains), so that training sets of different sizes can be compared fairly. As in the
transformers Trainer, one epoch is ceil(n_examples / (per_device_batch_size * processes)) micro-batches (the last
one may be short) grouped into steps_per_epoch = ceil(micro-batches / grad_accum) optimizer steps.
- ``"epochs"``: ``budget_value`` passes over the training set (``epochs`` when budget_value is None);
  steps = ceil(epochs * steps_per_epoch), exactly what Trainer(num_train_epochs=epochs) would run.
- ``"steps"``: ``budget_value`` optimizer steps (``max_steps`` when budget_value is None).
- ``"tokens"``: about ``budget_value`` loss-bearing tokens (completion + end token: the tokens whose prediction
  the loss counts; the prompt is read but not learned); steps = max(1, round(budget_value / tokens_per_step))
  with tokens_per_step = the set's loss-bearing tokens / steps_per_epoch. Every set then learns from about the
  same number of tokens whatever its size or prompt length (the token-matched control the paper's critics asked
  for); the realised count is off by less than about one step's worth. A set so small that the budget needs more
  than ``max_epochs`` passes over it is flagged (``plan["over_max_epochs"]``, the results table), not cut.
Every plan also carries ``summed_lr``: the learning rates of its steps added up (sot.sft.schedule).
``max_steps``, when set, caps the steps of the "epochs" and "tokens" budgets (smoke runs).

Two switches reproduce the paper authors' training setup when asked (both off by default):
- ``precision="pure_bf16"``: the model is loaded in bfloat16 and trained with bf16 on, so weights, gradients and
  AdamW states are bfloat16 (their script). An update smaller than half a bf16 step of its weight rounds away:
  one AdamW step at lr 1e-6 (weight decay 0.05, 8 MBPP traces) changed 0.39 % of SmolLM2-135M's weight elements
  in pure bf16 against 99.6 % with float32 master weights, and moved 0.38 % of the intended update; 1.8 % at lr
  1e-5, 14 % at lr 1e-4 (bench/pure_bf16_updates.py, 2 CPU cores, 2026-12-08). ``"mixed"`` keeps float32 master
  weights for full fine-tuning (``resolve_model_dtype``).
- ``learn_end_token=False``: no example ends with the end token (theirs: pad = EOS and the collator masks pad
  labels, so EOS is never learned); the student then never learns to stop and its output ends only at a stop
  string or the length limit (tests/test_sft.py: the tiny model, 30 steps on one trace, writes the trace and
  goes on past it instead of emitting EOS).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from sot.sft.schedule import summed_lr, warmup_steps

METHODS = ("lora", "full")
BUDGETS = ("epochs", "steps", "tokens")
CHECKPOINTS = ("final", "best_val")
BACKENDS = ("auto", "trl", "unsloth")
DISTRIBUTED = ("ddp", "fsdp")
STYLES = ("plain", "chat", "authors", "authors-4shot")   # sot.prompts.STYLES
DTYPES = ("auto", "float32", "bfloat16")
PRECISIONS = ("mixed", "pure_bf16")
LLAMA_LIKE_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# The authors' published settings (full fine-tuning with TRL). Effective batch 64 = 8 per device x accumulation,
# whatever the number of GPUs (see effective_batch_size). The scheduler is not stated: TRL's default (linear) is kept.
PAPER_PRESET: dict = {
    "method": "full", "lr": 1e-6, "epochs": 10, "budget": "epochs", "budget_value": 10,
    "per_device_batch_size": 8, "effective_batch_size": 64, "max_length": 1024,
    "warmup_ratio": 0.1, "weight_decay": 0.05, "optimizer": "adamw_torch", "lr_scheduler": "linear",
    "bf16": True, "seed": 42,
}


@dataclass
class SFTConfig:
    """All settings of one fine-tuning run (see the module docstring for the budget rule)."""

    model: str                                  # reference for sot.models.resolve (hub id, folder, offline default)
    style: str = "plain"                        # prompt style: "plain" | "chat" | "authors" | "authors-4shot" (sot.prompts.render)
    method: str = "lora"                        # "lora" | "full"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0                  # 0: Unsloth's fast path; PEFT dropout copies every input
    target_modules: tuple[str, ...] = LLAMA_LIKE_LINEAR   # Llama, Qwen2, Gemma2 share these names
    lr: float = 1e-4
    epochs: float = 1.0
    max_steps: int | None = None                # budget "steps" default; cap for the other budgets
    max_epochs: float | None = 4.0              # budget "tokens": more passes than this are flagged (not cut)
    per_device_batch_size: int = 8
    grad_accum: int = 1
    effective_batch_size: int | None = None     # when set: grad_accum = this / (per_device_batch_size * processes)
    max_length: int = 1024                      # tokens; longer examples are truncated from the right (counted)
    warmup_ratio: float = 0.0                   # fraction of the steps, in [0, 1)
    weight_decay: float = 0.0
    optimizer: str = "adamw_torch"              # a transformers `optim` name
    lr_scheduler: str = "linear"                # a transformers `lr_scheduler_type` name
    bf16: bool | str = "auto"                   # "auto": bf16 autocast only where CUDA supports it
    model_dtype: str = "auto"                   # weights: "auto" = bfloat16 for LoRA with bf16, else float32 (master weights)
    save_dtype: str = "auto"                    # full models: "auto" = bfloat16 when training in bf16, else float32
    # "mixed": bf16/model_dtype above (float32 master weights for full fine-tuning); "pure_bf16": the authors' setup,
    # weights and AdamW states in bfloat16 with bf16 on (at lr 1e-6 most updates round away: sot.sft.config docs)
    precision: str = "mixed"
    learn_end_token: bool = True                # False: the authors' setup, no end token is appended or learned
    gradient_checkpointing: bool = False
    seed: int = 42
    budget: str = "epochs"                      # "epochs" | "steps" | "tokens"
    budget_value: float | None = None
    eval_fraction: float = 0.0                  # validation split carved from train (seeded, grouped by problem id)
    checkpoint: str = "final"                   # "final" | "best_val" (lowest validation loss)
    sweep: list | dict | None = None            # also save the model at these steps: [100, 200] | {"every": N} (sot.sft.sweep)
    eval_steps: int | None = None               # None: about 10 evaluations per run (max(1, steps // 10))
    logging_steps: int = 10
    save_every: int | None = 50                 # resumable checkpoint every N optimizer steps (train(checkpoint_dir=...)); None: never
    backend: str = "auto"                       # "auto" | "trl" | "unsloth"
    distributed: str = "ddp"                    # several processes: "ddp" (a whole copy each) | "fsdp" (sharded: sot.sft.distributed)
    extra: dict = field(default_factory=dict)   # passed as-is to trl.SFTConfig (escape hatch, recorded)

    def __post_init__(self):
        self.target_modules = tuple(self.target_modules)
        for name, allowed in (("method", METHODS), ("budget", BUDGETS), ("checkpoint", CHECKPOINTS),
                              ("backend", BACKENDS), ("distributed", DISTRIBUTED), ("style", STYLES), ("model_dtype", DTYPES),
                              ("save_dtype", DTYPES), ("precision", PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"SFTConfig.{name}={getattr(self, name)!r}: expected one of {allowed}")
        if self.bf16 not in (True, False, "auto"):
            raise ValueError(f"SFTConfig.bf16={self.bf16!r}: expected true, false or 'auto'")
        if self.precision == "pure_bf16" and (self.model_dtype == "float32" or self.bf16 is False):
            raise ValueError(f"SFTConfig.precision='pure_bf16' trains bfloat16 weights with bf16 on, but model_dtype="
                             f"{self.model_dtype!r} and bf16={self.bf16!r} ask otherwise; set model_dtype auto and "
                             "bf16 auto or true (params.yaml sft), or precision: mixed")
        if not isinstance(self.learn_end_token, bool):
            raise ValueError(f"SFTConfig.learn_end_token={self.learn_end_token!r}: expected true or false")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"SFTConfig.warmup_ratio={self.warmup_ratio}: expected a fraction in [0, 1)")
        from sot.sft.sweep import check_spec
        check_spec(self.sweep)
        if not 0 <= self.eval_fraction < 1:
            raise ValueError(f"SFTConfig.eval_fraction={self.eval_fraction}: expected a fraction in [0, 1)")
        if self.budget == "steps" and self.budget_value is None and self.max_steps is None:
            raise ValueError("SFTConfig.budget='steps' needs budget_value (or max_steps)")
        if self.budget == "tokens" and not self.budget_value:
            raise ValueError("SFTConfig.budget='tokens' needs budget_value (training tokens)")
        for name in ("per_device_batch_size", "grad_accum", "max_length", "logging_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"SFTConfig.{name}={getattr(self, name)}: expected a positive integer")
        if self.save_every is not None and (isinstance(self.save_every, bool) or int(self.save_every) != self.save_every
                                            or self.save_every < 1):
            raise ValueError(f"SFTConfig.save_every={self.save_every!r}: expected a positive number of optimizer "
                             "steps, or null for no resumable checkpoints (params.yaml sft.save_every)")

    @classmethod
    def from_dict(cls, d: dict) -> "SFTConfig":
        """Build from a params.yaml section; unknown keys are an error that names them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"SFTConfig: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d


def resolve_bf16(cfg: SFTConfig) -> bool:
    """bf16 autocast: as asked, or (auto) only where a CUDA device supports it; always for precision pure_bf16."""
    from sot.precision import cuda_has_bf16, training_bf16
    if cfg.precision == "pure_bf16":
        return training_bf16(True)
    if cfg.bf16 != "auto":
        return training_bf16(bool(cfg.bf16))    # a GPU without native bf16 trains in fp32, said once
    return cuda_has_bf16()


def resolve_model_dtype(cfg: SFTConfig, bf16: bool) -> str:
    """LoRA keeps a frozen base in bf16; full fine-tuning keeps float32 master weights (lr 1e-6 updates vanish in
    bf16), unless precision is pure_bf16 (the authors' setup: bfloat16 weights, so the optimizer's states are too)."""
    if cfg.precision == "pure_bf16":
        return "bfloat16"
    if cfg.model_dtype != "auto":
        return cfg.model_dtype
    return "bfloat16" if (cfg.method == "lora" and bf16) else "float32"


def resolve_grad_accum(cfg: SFTConfig, world_size: int = 1) -> int:
    if cfg.effective_batch_size is None:
        return int(cfg.grad_accum)
    per_pass = cfg.per_device_batch_size * world_size
    if cfg.effective_batch_size % per_pass:
        raise ValueError(f"SFTConfig.effective_batch_size={cfg.effective_batch_size} is not a multiple of "
                         f"per_device_batch_size ({cfg.per_device_batch_size}) x processes ({world_size})")
    return cfg.effective_batch_size // per_pass


def plan_steps(token_counts: list[int], cfg: SFTConfig, world_size: int = 1) -> dict:
    """Optimizer steps for this training set under cfg's budget (rule in the module docstring).

    token_counts: each example's loss-bearing tokens (sot.sft.data.TokenizedSet.completion_token_counts)."""
    n = len(token_counts)
    if n == 0:
        raise ValueError("plan_steps: the training set is empty")
    grad_accum = resolve_grad_accum(cfg, world_size)
    per_step = cfg.per_device_batch_size * grad_accum * world_size
    micro_batches = math.ceil(n / (cfg.per_device_batch_size * world_size))
    steps_per_epoch = math.ceil(micro_batches / grad_accum)
    tokens_per_step = sum(token_counts) / steps_per_epoch
    if cfg.budget == "epochs":
        epochs = cfg.epochs if cfg.budget_value is None else float(cfg.budget_value)
        steps = max(1, math.ceil(epochs * steps_per_epoch))
        rule = f"ceil({epochs:g} epochs x {steps_per_epoch} steps per epoch)"
    elif cfg.budget == "steps":
        steps = int(cfg.budget_value if cfg.budget_value is not None else cfg.max_steps)
        rule = f"{steps} steps"
    else:
        steps = max(1, round(float(cfg.budget_value) / tokens_per_step))
        rule = f"round({cfg.budget_value:g} tokens / {tokens_per_step:.1f} tokens per step)"
    if cfg.max_steps is not None and cfg.budget != "steps" and steps > cfg.max_steps:
        steps, rule = int(cfg.max_steps), rule + f", capped by max_steps={cfg.max_steps}"
    return {"max_steps": steps, "grad_accum": grad_accum, "examples_per_step": per_step,
            "steps_per_epoch": steps_per_epoch, "tokens_per_step": tokens_per_step,
            "mean_tokens_per_example": sum(token_counts) / n, "max_tokens_per_example": max(token_counts),
            "planned_tokens": round(steps * tokens_per_step), "planned_epochs": steps / steps_per_epoch,
            "over_max_epochs": bool(cfg.max_epochs is not None and steps / steps_per_epoch > cfg.max_epochs),
            "warmup_steps": warmup_steps(cfg.warmup_ratio, steps),
            "summed_lr": summed_lr(cfg.lr, steps, cfg.warmup_ratio, cfg.lr_scheduler), "rule": rule}
