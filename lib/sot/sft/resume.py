"""Resumable fine-tuning: complete-or-absent checkpoints outside the DVC output, pruned, stopped on signals.

`sot.sft.train(..., checkpoint_dir=D)` trains with the Trainer's output folder at D/<fingerprint>/ (the
fingerprint, kept in manifest.json there, covers the config except `save_every`, the backend, the device and
precision, the number of processes, the library versions and the tokenised training and validation examples,
so a checkpoint is never resumed under other settings or data). Every `cfg.save_every` optimizer steps the
Trainer writes a full checkpoint-<step>/: model or LoRA adapter, optimizer, scheduler, RNG states and
trainer_state.json, which holds the step and so the data position (the Trainer's seeded sampler gives every
epoch the same order, and it skips the batches already seen in the resumed epoch).

transformers 5.x writes a checkpoint in place, file by file, with no commit step, so a kill during a save
leaves a checkpoint-<step>/ that `get_last_checkpoint` would take. Here a checkpoint counts only when
`sot_complete.json` is in it: written atomically by `CheckpointCallback.on_save`, which the Trainer calls
after every file of the checkpoint is written (and, with several processes, after a barrier), listing each
file's size, and checked against the files before resuming. Anything else is deleted. After each commit the
older checkpoints are removed (kept: the newest and, for checkpoint='best_val', the best one), so at most
two are on disk. SIGTERM/SIGINT (sot.signals) end the current step, write a checkpoint and stop the run.

A finished run keeps its output folder (hard links, so no second copy on disk) as D/<fingerprint>/final/ with
final.json (the run's summary and loss history, and the files and sizes of final/); its checkpoints and the
folders of other fingerprints are deleted. The fingerprint also covers the source of the sot.sft package, so
when the sft stage of a (task, student) group reruns because one set changed, every other set whose settings,
data and training code are unchanged is copied from final/ instead of retrained (`finished`); a change to any
of them trains afresh.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

from sot import signals
from sot.io import write_json
from sot.resume import shard_folder

COMPLETE = "sot_complete.json"
FINAL, FINAL_RESULT = "final", "final.json"   # a finished run's output folder and its summary, in D/<fingerprint>/
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
NOT_IN_FINGERPRINT = ("save_every",)    # how often to save does not change what is trained


def data_digest(tset) -> str | None:
    """sha256 over the tokenised examples (input ids and labels) of a TokenizedSet, in order."""
    if tset is None:
        return None
    h = hashlib.sha256()
    for e in tset.examples:
        h.update(json.dumps([e["input_ids"], e["labels"]]).encode() + b"\n")
    return h.hexdigest()


def code_digest() -> str:
    """sha256 over the source files of the sot.sft package (what trains), by name, in order."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def run_manifest(cfg, backend: str, world_size: int, train_set, val_set, bf16: bool, model_dtype: str,
                 device: str, versions: dict) -> dict:
    """What decides the state a checkpoint holds; two runs with equal manifests can continue each other."""
    config = {k: v for k, v in cfg.to_dict().items() if k not in NOT_IN_FINGERPRINT}
    return {"config": config, "backend": backend, "world_size": world_size, "bf16": bf16,
            "model_dtype": model_dtype, "device": device, "versions": versions, "code_sha256": code_digest(),
            "train_sha256": data_digest(train_set), "n_train": len(train_set),
            "val_sha256": data_digest(val_set), "n_val": len(val_set) if val_set is not None else 0}


def run_folder(checkpoint_dir, manifest: dict) -> Path:
    """checkpoint_dir/<fingerprint>/ for this manifest (created with its manifest.json)."""
    return shard_folder(checkpoint_dir, manifest)


def checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """Every checkpoint-<step>/ in folder, complete or not, by step."""
    if not folder.exists():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return sorted(found)


def _files(path: Path) -> dict[str, int]:
    return {f.relative_to(path).as_posix(): f.stat().st_size
            for f in sorted(path.rglob("*")) if f.is_file() and f.name != COMPLETE}


def mark_complete(path: Path, step: int) -> None:
    """Commit a checkpoint: list its files and sizes in sot_complete.json (atomic write, last)."""
    write_json(path / COMPLETE, {"step": step, "files": _files(path)})


def is_complete(path: Path) -> bool:
    """A committed checkpoint whose files are all there with the sizes recorded at commit time."""
    marker = path / COMPLETE
    if not marker.exists():
        return False
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    m = _CHECKPOINT.match(path.name)
    return bool(m) and recorded.get("step") == int(m.group(1)) and recorded.get("files") == _files(path)


def resume_point(folder: Path) -> Path | None:
    """The newest complete checkpoint in folder, after deleting every incomplete one (main process only)."""
    latest = None
    for _, path in checkpoints(folder):
        if is_complete(path):
            latest = path
        else:
            shutil.rmtree(path, ignore_errors=True)
    return latest


def prune(folder: Path, keep: set[Path]) -> list[Path]:
    """Delete every checkpoint-<step>/ in folder but those in keep; returns what was deleted."""
    keep = {Path(p).resolve() for p in keep}
    removed = [p for _, p in checkpoints(folder) if p.resolve() not in keep]
    for p in removed:
        shutil.rmtree(p, ignore_errors=True)
    return removed


def _stop_everywhere(args) -> bool:
    """Whether any process received SIGTERM/SIGINT (all processes must stop at the same step)."""
    local = signals.requested() is not None
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return local
    import torch
    flag = torch.tensor([1.0 if local else 0.0], device=args.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def checkpoint_callback(save_every: int | None, best_strategy: bool, is_main: bool, barrier):
    """A TrainerCallback that saves every `save_every` steps and on a stop request, commits and prunes.

    best_strategy: the Trainer runs save_strategy='best' (checkpoint='best_val'); it then decides whether to save
    only after evaluating, overriding a save asked for at an evaluation step, so such a save moves to the next
    step. A save step is also a logging step, so the loss windows of a resumed run are those of an uninterrupted
    one. No resume checkpoint is written at the last step: the final model is written right after it."""
    from transformers import TrainerCallback

    class CheckpointCallback(TrainerCallback):
        def __init__(self):
            self.pending = self.stopping = False
            self.started = None
            self.save_seconds: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            if _stop_everywhere(args):
                self.pending = self.stopping = True
            if state.global_step >= state.max_steps:
                return control
            if save_every and state.global_step % save_every == 0:
                self.pending = True
            if self.pending and not (best_strategy and control.should_evaluate):
                control.should_save = control.should_log = True
                control.should_training_stop = control.should_training_stop or self.stopping
                self.started = None if control.should_evaluate else time.perf_counter()   # time the save alone
            return control

        def on_save(self, args, state, control, **kwargs):
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            barrier()                                     # every process has written its files (RNG states)
            if is_main:
                mark_complete(path, state.global_step)
                keep = {path} | ({Path(state.best_model_checkpoint)} if state.best_model_checkpoint else set())
                prune(Path(args.output_dir), keep)
            barrier()
            if self.started is not None:
                self.save_seconds.append(time.perf_counter() - self.started)
            self.pending, self.started = False, None
            if self.stopping:
                control.should_training_stop = True
            return control

    return CheckpointCallback()


def tokens_at(checkpoint: Path | None) -> int:
    """Training tokens seen before a checkpoint (0 for a fresh run), from its trainer_state.json."""
    if checkpoint is None:
        return 0
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    return int(state.get("num_input_tokens_seen") or 0)


def finished(folder: Path) -> dict | None:
    """The stored result of a finished run in folder (its final/ intact: every file there with its recorded
    size), else None."""
    path = Path(folder) / FINAL_RESULT
    if not path.exists() or not (Path(folder) / FINAL).is_dir():
        return None
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return stored["result"] if stored.get("files") == _files(Path(folder) / FINAL) else None


def keep_finished(folder: Path, out_dir: Path, result: dict) -> None:
    """Keep a finished run (main process): out_dir linked into folder/final/, the result in final.json, the
    checkpoints deleted, and the other fingerprints' folders beside folder too."""
    folder = Path(folder)
    for other in folder.parent.iterdir():
        if other.is_dir() and other != folder:
            shutil.rmtree(other, ignore_errors=True)
    prune(folder, set())
    (folder / FINAL_RESULT).unlink(missing_ok=True)
    shutil.rmtree(folder / FINAL, ignore_errors=True)
    shutil.copytree(out_dir, folder / FINAL, copy_function=_link_or_copy)
    write_json(folder / FINAL_RESULT, {"files": _files(folder / FINAL), "result": result})


def restore_finished(folder: Path, out_dir: Path) -> None:
    """Copy a finished run's final/ to out_dir (through a sibling folder renamed at the end)."""
    out_dir = Path(out_dir)
    work = out_dir.parent / f".{out_dir.name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(Path(folder) / FINAL, work, copy_function=_link_or_copy)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    work.rename(out_dir)


def _link_or_copy(src, dst):
    """A hard link (no second copy on disk; DVC replaces files rather than writing into them), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst
