"""Loss-bearing tokens a run has actually trained on, logged with every training-loss entry.

The Trainer counts the tokens it reads (`num_input_tokens_seen`: prompt + completion); what a set teaches is the
completion (+ end token), the tokens whose labels are not masked. `attach` counts those, micro-batch by
micro-batch, and writes the running total into each logged entry of `trainer.state.log_history` as
`loss_tokens_seen`, so it is checkpointed with the trainer state and a resumed run continues from the last
logged count (exact with logging_steps 1; otherwise off by at most the steps since that log). With several
processes each counts its own micro-batches and the total is the sum over processes.
"""
from __future__ import annotations

IGNORE = -100
KEY = "loss_tokens_seen"


def attach(trainer) -> None:
    from transformers import TrainerCallback

    counter = {"seen": 0}
    step = trainer.training_step

    def training_step(model, inputs, *args, **kwargs):
        labels = inputs.get("labels") if isinstance(inputs, dict) else None
        if labels is not None:
            counter["seen"] += int((labels != IGNORE).sum())
        return step(model, inputs, *args, **kwargs)

    class LogLossTokens(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            counter["seen"] = last_count(state.log_history) // max(1, args.world_size)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.log_history and "loss" in state.log_history[-1]:
                state.log_history[-1][KEY] = counter["seen"] * max(1, args.world_size)

    trainer.training_step = training_step
    trainer.add_callback(LogLossTokens())


def last_count(log_history: list[dict]) -> int:
    """The latest logged loss-bearing token count (0 before any)."""
    return next((int(e[KEY]) for e in reversed(log_history) if KEY in e), 0)
