"""Supervised fine-tuning of a student on one training set: `train(records, cfg, out_dir)`.

Backend: "auto" picks Unsloth when CUDA is present, one process runs and `import unsloth` works, else TRL
(+ PEFT); the choice and the reason are printed once and recorded. The output folder is written atomically
(a `.NAME.partial` sibling renamed at the end) and holds the LoRA adapter or the full model, the tokenizer,
`training_log.json` (per logged step: step, tokens_seen, loss, lr, val_loss) and `train_summary.json` (the
returned summary less what is measured rather than determined, MEASURED_FIELDS: timings, memory, how a rerun
resumed; they go to the stage's metrics). A rerun of the same settings and data then writes a byte-identical
folder (training on the CPU is deterministic), so DVC does not rerun the evaluation downstream of it.
`load_trained(out_dir)` loads either kind back as (model, tokenizer).

Resuming: with `checkpoint_dir` (one folder per run, outside the DVC output, e.g. data/.cache/sft/<run>) a full
checkpoint is written every `cfg.save_every` optimizer steps and on SIGTERM/SIGINT (sot.sft.resume: committed
with a marker, older ones pruned); a rerun continues from the newest complete checkpoint of the same settings
and data and ends as an uninterrupted run would. A finished run deletes its checkpoints (the optimizer state, about 12
bytes per trained parameter, would only serve to continue a run that is over) and keeps its output folder there
(hard-linked): a later call with the same settings, data and sot.sft code copies it instead of training again
(`resume` in the summary says `reused_finished_run`).
"""
from __future__ import annotations

import contextlib
import json
import shutil
import sys
from pathlib import Path

from sot import signals

from sot.sft import distributed
from sot.sft.config import PAPER_PRESET, SFTConfig, plan_steps, resolve_bf16, resolve_model_dtype
from sot.sft.data import (RightPadCollator, TokenizedSet, build_dataset, build_example, check_records,
                          split_validation)

__all__ = ["train", "choose_backend", "load_trained", "SFTConfig", "PAPER_PRESET", "plan_steps", "build_example",
           "build_dataset", "split_validation", "RightPadCollator", "TokenizedSet"]

SUMMARY_FILE = "train_summary.json"
HISTORY_FILE = "training_log.json"
MEASURED_FIELDS = ("train_seconds", "tokens_per_s", "peak_memory_gb", "resume")   # not written into the folder


def choose_backend(requested: str, world_size: int = 1) -> tuple[str, str]:
    """(backend, reason). Imports unsloth when it may be used, so it patches TRL before TRL is imported.

    TRL is refused in a process where unsloth was imported: unsloth patches TRL's SFTTrainer for the whole
    process, and on an H200 a LoRA run through the patched trainer trained every weight and saved no adapter.
    Each sft stage is its own process, so the pipeline never mixes them."""
    backend, reason = _choose_backend(requested, world_size)
    if backend == "trl" and "unsloth" in sys.modules:
        raise RuntimeError("sft backend 'trl' in a process where unsloth was already imported: unsloth patches TRL "
                           "for the whole process (a LoRA run would train every weight). Run TRL in a fresh process "
                           "(each `dvc repro` sft stage is one), or use backend 'unsloth' here.")
    return backend, reason


def _choose_backend(requested: str, world_size: int) -> tuple[str, str]:
    import torch

    if requested == "trl":
        return "trl", "requested"
    cuda = torch.cuda.is_available()
    if requested == "unsloth":
        if not cuda:
            raise RuntimeError("SFTConfig.backend='unsloth' needs a CUDA GPU; use 'trl' or 'auto' on this machine")
        import unsloth  # noqa: F401  (an ImportError here says what is missing)
        return "unsloth", "requested"
    if not cuda:
        return "trl", "no CUDA device"
    if world_size > 1:
        return "trl", f"{world_size} processes (Unsloth is used single-GPU only here)"
    try:
        import unsloth  # noqa: F401
    except Exception as error:  # unsloth raises more than ImportError when its GPU stack is incomplete
        return "trl", f"unsloth not importable ({type(error).__name__}: {str(error)[:120]})"
    return "unsloth", "CUDA present and unsloth importable"


def _versions(backend: str) -> dict:
    import importlib.metadata as md
    names = ["torch", "transformers", "trl", "peft", "accelerate"] + (["unsloth"] if backend == "unsloth" else [])
    out = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def _load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def train(records: list[dict], cfg: SFTConfig, out_dir, val_records: list[dict] | None = None,
          render=None, callbacks=(), checkpoint_dir=None) -> dict:
    """Fine-tune cfg.model on training records {prompt, completion, ...}; save to out_dir; return the summary.

    Validation: `val_records` when given, else a seeded split of `records` (cfg.eval_fraction, grouped by id);
    never the test set. `render(question, style, tokenizer)` defaults to sot.prompts.render.
    checkpoint_dir: resumable checkpoints (module docstring); None: none are written. A run stopped by
    SIGTERM/SIGINT raises sot.signals.StopRequested after its checkpoint is complete.
    """
    from accelerate import PartialState

    from sot.models import resolve

    if not records:
        raise ValueError("sft.train: no training records")
    check_records(records, "train records")
    check_records(val_records or [], "validation records")
    out_dir = Path(out_dir)
    import torch
    # Without CUDA, processes under torchrun only form a (gloo) group when told they are CPU processes.
    state = PartialState(cpu=not torch.cuda.is_available())
    backend, reason = choose_backend(cfg.backend, state.num_processes)
    if state.is_main_process:
        print(f"[sot.sft] backend={backend} ({reason})", flush=True)

    model_path = resolve(cfg.model)
    if cfg.distributed == "fsdp" and (backend == "unsloth" or cfg.method != "full"):
        raise ValueError(f"SFTConfig.distributed='fsdp' shards full fine-tuning on the TRL backend (got method "
                         f"{cfg.method!r}, backend {backend!r}): a LoRA student's frozen bf16 base (2 bytes a parameter) "
                         "fits one GPU, so use sft.distributed: ddp for LoRA, and sft.backend: trl or auto")
    # refused here, before any weight is read, when the student cannot fit the GPUs (sot.sft.distributed)
    memory = distributed.memory_plan(*distributed.count_parameters(model_path, cfg), cfg.method,
                                     resolve_model_dtype(cfg, resolve_bf16(cfg)), cfg.optimizer,
                                     state.num_processes, cfg.distributed, distributed.gpu_memory())
    distributed.check_fit(memory, f"sft {cfg.model} ({cfg.method}, sft.distributed={cfg.distributed}, "
                                  f"{state.num_processes} process(es))")
    if state.is_main_process:
        print(f"[sot.sft] memory: {distributed.explain(memory)}", flush=True)
    tokenizer = _load_tokenizer(model_path)
    if val_records is None:
        records, val_records = split_validation(records, cfg.eval_fraction, cfg.seed)
    if cfg.checkpoint == "best_val" and not val_records:
        raise ValueError("SFTConfig.checkpoint='best_val' needs a validation split: set eval_fraction > 0 "
                         "or pass val_records")
    train_set = build_dataset(records, tokenizer, cfg.style, cfg.max_length, render, where="train records",
                              end_token=cfg.learn_end_token)
    val_set = (build_dataset(val_records, tokenizer, cfg.style, cfg.max_length, render, where="validation records",
                             end_token=cfg.learn_end_token) if val_records else None)
    plan = plan_steps(train_set.completion_token_counts, cfg, state.num_processes)   # loss-bearing tokens
    bf16 = resolve_bf16(cfg)
    model_dtype = resolve_model_dtype(cfg, bf16)

    work = out_dir.parent / f".{out_dir.name}.partial"
    if state.is_main_process:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
    state.wait_for_everyone()

    if backend == "unsloth":
        from sot.sft.unsloth_backend import make_trainer
    else:
        from sot.sft.trl_backend import make_trainer
    from sot.sft.trl_backend import run_trainer

    run_dir, resume_from, saver, tokens_before = work / "checkpoints", None, None, 0
    if checkpoint_dir is not None:
        from sot.sft import resume
        manifest = resume.run_manifest(cfg, backend, state.num_processes, train_set, val_set, bf16, model_dtype,
                                       "cuda" if torch.cuda.is_available() else "cpu", _versions(backend))
        if state.is_main_process:   # creates the folder and its manifest, deletes incomplete checkpoints
            resume.resume_point(resume.run_folder(checkpoint_dir, manifest))
        state.wait_for_everyone()
        run_dir = resume.run_folder(checkpoint_dir, manifest)
        stored = resume.finished(run_dir)
        if stored is not None:                                  # this exact run finished before: no training
            if state.is_main_process:
                resume.restore_finished(run_dir, out_dir)
                print(f"[sot.sft] reusing the finished run in {run_dir / resume.FINAL} (same settings, data "
                      "and code)", flush=True)
            state.wait_for_everyone()
            return {**stored, "resume": {**(stored.get("resume") or {}),
                                         "reused_finished_run": str(run_dir / resume.FINAL)}}
        resume_from = resume.resume_point(run_dir)              # every process: the same, complete one
        tokens_before = resume.tokens_at(resume_from)
        saver = resume.checkpoint_callback(cfg.save_every, cfg.checkpoint == "best_val", state.is_main_process,
                                           state.wait_for_everyone)
        callbacks = (saver, *callbacks)
        if state.is_main_process:
            print(f"[sot.sft] checkpoints every {cfg.save_every} steps in {run_dir}; "
                  + (f"resuming from {resume_from.name}" if resume_from else "no checkpoint to resume from"),
                  flush=True)

    from sot.sft import sweep   # sft.sweep: model folders at chosen steps, beside the final model
    swept, beyond = sweep.resolve(cfg.sweep, plan["max_steps"])
    if swept:
        if state.is_main_process:
            sweep.clean(run_dir / sweep.WORK)
        sweep.check_resumable(run_dir / sweep.WORK, swept,
                              int(resume_from.name.rsplit("-", 1)[1]) if resume_from else None)
        callbacks = (*callbacks, sweep.callback(swept, run_dir / sweep.WORK, sweep.saver(cfg, bf16),
                                                state.is_main_process, state.wait_for_everyone))
    trainer = make_trainer(cfg, model_path, tokenizer, train_set, val_set, plan, run_dir,
                           bf16, model_dtype, callbacks, resumable=saver is not None)
    sweep.attach(trainer)
    # With checkpoints, SIGTERM/SIGINT end the step and save; without, they keep their default effect.
    with signals.deferred_signals() if saver is not None else contextlib.nullcontext():
        result = run_trainer(trainer, cfg, resume_from, tokens_before)
        received = signals.requested()      # None here when only another process got the signal
    if saver is not None and saver.stopping and trainer.state.global_step < plan["max_steps"]:
        raise signals.StopRequested(received, f"step {trainer.state.global_step} of {plan['max_steps']}, "
                                              f"checkpoint in {run_dir}")

    saved_dtype = None
    if cfg.method == "full":
        import torch
        saved_dtype = cfg.save_dtype if cfg.save_dtype != "auto" else ("bfloat16" if bf16 else "float32")
    shards = distributed.shards(trainer.model) if trainer.is_fsdp_enabled else None   # per process, for the record
    if trainer.is_fsdp_enabled:          # shards gathered into one ordinary model folder, written by rank 0
        distributed.save_full(trainer, str(work / "model"), saved_dtype)
    else:
        if saved_dtype:
            trainer.model.to(getattr(torch, saved_dtype))
        trainer.save_model(str(work / "model"))
    # the Trainer's pickled TrainingArguments hold its output folder, data/.cache/sft/<run>/<fingerprint>, which
    # changes with the sot.sft code: the same weights would hash differently and every evaluation rerun. Nothing
    # reads it back; the settings are in train_summary.json.
    (work / "model" / "training_args.bin").unlink(missing_ok=True)

    history = result.pop("history")
    summary = {
        "backend": backend, "backend_reason": reason, "model": cfg.model, "model_path": model_path,
        "method": cfg.method, "style": cfg.style, **result, "plan": plan,
        "n_train": len(train_set), "n_val": len(val_set) if val_set else 0,
        "n_truncated": train_set.n_truncated, "n_dropped": train_set.n_dropped,
        "n_unterminated": train_set.n_unterminated,
        "bf16": bf16, "model_dtype": model_dtype, "saved_dtype": saved_dtype, "world_size": state.num_processes,
        "distributed": cfg.distributed if state.num_processes > 1 else None, "memory": memory, "shards": shards,
        "config": cfg.to_dict(), "versions": _versions(backend), "out_dir": str(out_dir),
        "resume": None if saver is None else {
            "checkpoint_dir": str(run_dir), "save_every": cfg.save_every,
            "resumed_from_step": int(resume_from.name.rsplit("-", 1)[1]) if resume_from else None,
            "checkpoint_seconds": [round(s, 3) for s in saver.save_seconds]},
    }
    if cfg.sweep is not None:
        summary["sweep"] = {"asked": cfg.sweep, "steps": swept, "beyond_run": beyond, "folder": sweep.FOLDER}
    if state.is_main_process:             # the one process that saved the model: the others must not rewrite it
        canonical_adapter_config(work / "model")
        (work / "model" / HISTORY_FILE).write_text(json.dumps(history, indent=1))
        determined = {k: v for k, v in summary.items() if k not in MEASURED_FIELDS}
        (work / "model" / SUMMARY_FILE).write_text(json.dumps(determined, indent=2, default=str))
        if swept:                         # into steps/<step>/, each with its own summary and history
            sweep.collect(run_dir / sweep.WORK, work / "model", swept, summary, history, trainer.state.log_history,
                          out_dir, SUMMARY_FILE, HISTORY_FILE, MEASURED_FIELDS)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        (work / "model").rename(out_dir)
        shutil.rmtree(work, ignore_errors=True)
        if checkpoint_dir is not None:      # the run is over: its checkpoints go, its output stays for reuse
            resume.keep_finished(run_dir, out_dir, {**summary, "history": history})
    state.wait_for_everyone()
    return {**summary, "history": history}


def canonical_adapter_config(folder: Path) -> None:
    """PEFT writes `target_modules` from a set, in an order that changes with Python's string hashing from one
    process to the next; sort it (and any other list of module names), so the same run writes the same bytes."""
    path = Path(folder) / "adapter_config.json"
    if not path.exists():
        return
    config = json.loads(path.read_text())
    for key in ("target_modules", "modules_to_save", "exclude_modules"):
        if isinstance(config.get(key), list) and all(isinstance(m, str) for m in config[key]):
            config[key] = sorted(config[key])
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


def load_trained(out_dir, dtype: str = "float32", device: str | None = None):
    """(model, tokenizer) from a train() output folder: base + LoRA adapter, or the full model. Left padding."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out_dir)
    summary_path = out_dir / SUMMARY_FILE
    if not summary_path.exists():
        raise FileNotFoundError(f"{summary_path} not found: {out_dir} is not a sot.sft.train output folder")
    summary = json.loads(summary_path.read_text())
    tok = AutoTokenizer.from_pretrained(out_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    if (out_dir / "adapter_config.json").exists():
        from peft import PeftModel

        from sot.models import resolve
        base = AutoModelForCausalLM.from_pretrained(resolve(summary["model"]), dtype=getattr(torch, dtype))
        model = PeftModel.from_pretrained(base, str(out_dir))
    else:
        model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=getattr(torch, dtype))
    if device:
        model.to(device)
    model.eval()
    return model, tok
