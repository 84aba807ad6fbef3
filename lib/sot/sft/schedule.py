"""The learning-rate schedule of every fine-tuning run: warmup that never leaves a step at learning rate 0.

transformers' schedulers give optimizer step s (counted from 0) the factor s / warmup_steps during warmup, so the
first step of every run with warmup runs at learning rate 0 and does nothing. On a run of a few steps that is a
large share of the run (5 steps with warmup_ratio 0.1: one step in five), and it falls unevenly on sets trained for
different numbers of steps. Here step s of a warmup of w steps gets (s + 1) / (w + 1), so every step learns, and
the decay that follows ends above 0 too:

    linear    (T - s) / (T - w)                   for s >= w (T: the run's optimizer steps)
    cosine    0.5 * (1 + cos(pi * (s - w) / (T - w)))
    constant  1

`summed_lr` is the sum over the run's steps of the learning rate each step uses: with the optimizer steps and the
loss-bearing tokens, what the results table shows so that a reader can see that sets were trained alike.
"""
from __future__ import annotations

import math

SCHEDULES = ("linear", "cosine", "constant")


def warmup_steps(warmup_ratio: float, steps: int) -> int:
    """Steps of warmup: round(ratio x steps), at most steps - 1 (a run is never all warmup)."""
    if steps < 1:
        raise ValueError(f"a run needs at least one optimizer step, got {steps}")
    return max(0, min(steps - 1, round(warmup_ratio * steps)))


def lr_factor(step: int, steps: int, warmup: int, kind: str = "linear") -> float:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based) of a run of `steps` steps."""
    if kind not in SCHEDULES:
        raise ValueError(f"sft.lr_scheduler={kind!r}: expected one of {', '.join(SCHEDULES)} "
                         "(schedules that keep every step above learning rate 0: sot.sft.schedule)")
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if kind == "constant":
        return 1.0
    span = max(1, steps - warmup)
    done = min(step - warmup, span)
    if kind == "linear":
        return (span - done) / span
    return 0.5 * (1.0 + math.cos(math.pi * done / span))


def summed_lr(lr: float, steps: int, warmup_ratio: float, kind: str = "linear") -> float:
    """The learning rates of all `steps` optimizer steps, added up."""
    w = warmup_steps(warmup_ratio, steps)
    return lr * sum(lr_factor(s, steps, w, kind) for s in range(steps))


def attach(trainer, steps: int, warmup_ratio: float, kind: str) -> None:
    """Make `trainer` (a transformers Trainer) use this schedule instead of its own `lr_scheduler_type`.

    The scheduler is a LambdaLR, so a resumed run restores its step count from the checkpoint like any other."""
    from torch.optim.lr_scheduler import LambdaLR

    w = warmup_steps(warmup_ratio, steps)
    lr_factor(0, steps, w, kind)                          # an unknown schedule stops here, before training

    def create_scheduler(num_training_steps: int, optimizer=None):
        if trainer.lr_scheduler is None:
            trainer.lr_scheduler = LambdaLR(optimizer or trainer.optimizer,
                                            lambda s: lr_factor(s, steps, w, kind))
            trainer._created_lr_scheduler = True
        return trainer.lr_scheduler

    trainer.create_scheduler = create_scheduler
