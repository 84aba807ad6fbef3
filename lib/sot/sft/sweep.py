"""Checkpoint sweep (`sft.sweep`): ordinary model folders saved at chosen optimizer steps, beside the final model.

`sweep` is null (no sweep), a list of optimizer steps (`[100, 200]`) or `{every: N}` (steps N, 2N, ... up to the
run's last step). At each such step the model is saved exactly as the final model is (the LoRA adapter, or the
full model in `save_dtype`, with the tokenizer), so evaluation loads it like any other; steps beyond the run's
last are skipped and recorded. During training a snapshot goes to <trainer folder>/sweep/<step>/ (written to a
`.<step>.partial` sibling and renamed: complete or absent); with resumable checkpoints that folder is the run's
data/.cache/sft/<run>/<fingerprint>/, so the snapshots taken before a kill survive it and the resumed run takes
the later ones. At the end they move into the output folder as steps/<step>/, each with its own
train_summary.json (the run's, with steps, tokens, loss and `checkpoint` {rule: "sweep", step, val_loss} of that
step) and training_log.json (the history up to that step); the finished-run reuse (sot.sft.resume) keeps and
restores them with the rest of the folder. A sweep step is always a logging step (its tokens and loss are
recorded). The swept checkpoints are evaluated beside the headline (sot.checkpoint_sweep), never chosen by test
accuracy: the headline is the model `sft.checkpoint` picked (final, or best_val).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

FOLDER = "steps"           # in the output folder: steps/<step>/
WORK = "sweep"             # in the trainer's folder while training


def spec_problem(spec) -> str | None:
    """What is wrong with a sweep setting (None: nothing): null, a list of positive steps, or {every: N}."""
    def positive(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    if spec is None:
        return None
    if isinstance(spec, dict):
        if set(spec) != {"every"} or not positive(spec["every"]):
            return f"must be {{every: N}} with N a positive number of optimizer steps, got {spec!r}"
        return None
    if isinstance(spec, (list, tuple)):
        if not spec or not all(positive(v) for v in spec):
            return f"must be a non-empty list of positive optimizer steps, e.g. [100, 200], got {list(spec)!r}"
        return None
    return f"must be null (no sweep), a list of optimizer steps (e.g. [100, 200]) or {{every: N}}, got {spec!r}"


def check_spec(spec, where: str = "SFTConfig.sweep") -> None:
    problem = spec_problem(spec)
    if problem:
        raise ValueError(f"{where} {problem} (params.yaml sft.sweep)")


def resolve(spec, max_steps: int) -> tuple[list[int], list[int]]:
    """(steps to save, asked steps beyond the run's last step) for a run of max_steps optimizer steps."""
    check_spec(spec)
    if spec is None:
        return [], []
    asked = (list(range(spec["every"], max_steps + 1, spec["every"])) if isinstance(spec, dict)
             else sorted(set(int(s) for s in spec)))
    return [s for s in asked if s <= max_steps], [s for s in asked if s > max_steps]


def clean(work: Path) -> None:
    """Delete the snapshots a kill left half-written (main process, before training)."""
    if work.exists():
        for partial in work.glob(".*.partial"):
            shutil.rmtree(partial, ignore_errors=True)


def saved(work: Path) -> list[int]:
    """The complete snapshots in a trainer folder's sweep/, by step."""
    return sorted(int(p.name) for p in work.iterdir() if p.is_dir() and p.name.isdigit()) if work.exists() else []


def check_resumable(work: Path, steps: list[int], resume_step: int | None) -> None:
    """A run resumed after step `resume_step` cannot take again the snapshots of the steps it skips: each must be
    there already."""
    missing = [s for s in steps if resume_step is not None and s <= resume_step and s not in saved(work)]
    if missing:
        raise RuntimeError(f"sft.sweep: the run resumes after step {resume_step} but the swept checkpoints of steps "
                           f"{missing} are not in {work}; delete {work.parent} to train the run afresh")


def callback(steps: list[int], work: Path, save, is_main: bool, barrier):
    """A TrainerCallback saving the model at each of `steps` (save(trainer, folder): every process calls it;
    FSDP gathers there). Set `.trainer` before training. The step is logged too."""
    from transformers import TrainerCallback

    wanted = set(steps)

    class SweepCallback(TrainerCallback):
        trainer = None
        sot_sweep = True

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step not in wanted:
                return control
            control.should_log = True
            final, partial = work / str(state.global_step), work / f".{state.global_step}.partial"
            if is_main:
                shutil.rmtree(partial, ignore_errors=True)
                partial.mkdir(parents=True)
            barrier()
            save(self.trainer, partial)
            if is_main:
                shutil.rmtree(final, ignore_errors=True)     # a resumed run retakes a step after its checkpoint
                partial.rename(final)
            barrier()
            return control

    return SweepCallback()


def attach(trainer) -> None:
    """Give the sweep callback (if any among the trainer's callbacks) the trainer it saves."""
    for cb in trainer.callback_handler.callbacks:
        if getattr(cb, "sot_sweep", False):
            cb.trainer = trainer


def saver(cfg, bf16: bool):
    """save(trainer, folder) for the callback: in the dtype sot.sft.train saves the final model in."""
    dtype = None
    if cfg.method == "full":
        dtype = cfg.save_dtype if cfg.save_dtype != "auto" else ("bfloat16" if bf16 else "float32")
    return lambda trainer, folder: save_like_final(trainer, folder, dtype)


def snapshot_summary(summary: dict, history: list[dict], log_history: list[dict], step: int, folder: Path) -> dict:
    """The train_summary.json of the snapshot at `step`: the run's, with what that step had reached."""
    from sot.sft.counting import KEY
    from sot.sft.trl_backend import mean_loss

    upto = [r for r in history if r["step"] <= step]
    at = next((r for r in upto if r["step"] == step), {})
    logged = next((e for e in log_history if e.get("step") == step and KEY in e), {})
    headline = summary.get("checkpoint") or {}
    summary = {k: v for k, v in summary.items() if k != "sweep"}
    return {**summary, "swept_from": str(Path(folder).parent.parent), "steps": step, "tokens": at.get("tokens_seen"),
            "completion_tokens": logged.get(KEY),
            "final_loss": at.get("loss"), "mean_train_loss": mean_loss(upto), "out_dir": str(folder),
            "checkpoint": {"rule": "sweep", "step": step, "val_loss": at.get("val_loss"),
                           "why": f"swept at step {step} (sft.sweep); not the headline, which sft.checkpoint="
                                  f"{headline.get('rule')!r} picked (step {headline.get('step')})"}}


def collect(work: Path, model_dir: Path, steps: list[int], summary: dict, history: list[dict],
            log_history: list[dict], out_dir: Path, summary_file: str, history_file: str, measured=()) -> None:
    """Move the snapshots into model_dir/steps/<step>/ with their own summary and history (main process)."""
    from sot.sft import canonical_adapter_config

    missing = [s for s in steps if s not in saved(work)]
    if missing:
        raise RuntimeError(f"sft.sweep: no swept checkpoint for steps {missing} in {work}; delete {work.parent} and "
                           "rerun")
    for step in steps:
        target = model_dir / FOLDER / str(step)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(work / str(step)), str(target))
        (target / "training_args.bin").unlink(missing_ok=True)
        canonical_adapter_config(target)
        own = snapshot_summary(summary, history, log_history, step, out_dir / FOLDER / str(step))
        (target / history_file).write_text(json.dumps([r for r in history if r["step"] <= step], indent=1))
        determined = {k: v for k, v in own.items() if k not in measured}
        (target / summary_file).write_text(json.dumps(determined, indent=2, default=str))
    shutil.rmtree(work, ignore_errors=True)


def save_like_final(trainer, folder: Path, saved_dtype: str | None) -> None:
    """Save the model being trained as the final model is saved (sot.sft.train), without changing it: the LoRA
    adapter, or the full model in saved_dtype (a cast copy when it trains in another dtype), and the tokenizer."""
    import torch

    if trainer.is_fsdp_enabled:            # every process joins the gather; rank 0 writes
        from sot.sft import distributed
        distributed.save_full(trainer, str(folder), saved_dtype)
        return
    model = trainer.accelerator.unwrap_model(trainer.model)
    dtype = getattr(torch, saved_dtype) if saved_dtype else None
    if dtype is None or all(p.dtype == dtype for p in model.parameters() if p.is_floating_point()):
        trainer.save_model(str(folder))
        return
    if not trainer.args.should_save:
        return
    from transformers import AutoModelForCausalLM

    state = {k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu())
             for k, v in model.state_dict().items()}
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(model.config, dtype=dtype)
    plain.load_state_dict(state, strict=False, assign=True)
    plain.tie_weights()
    plain.generation_config = model.generation_config
    plain.save_pretrained(str(folder))
    trainer.processing_class.save_pretrained(str(folder))
