"""Sharded training (sft.distributed: fsdp) on 2 CPU processes (gloo), through the sft stage's own launch.

What DDP cannot pass: each process holds half of the parameter elements, as DTensor shards. The same run also
matches a 1-process run (per-step loss within LOSS_RTOL relative, final weights within WEIGHT_RTOL of each
tensor's largest value), is SIGKILLed after its first checkpoint and resumes from it, and writes an ordinary model
folder that transformers reloads. The memory arithmetic and the fit check are tested without any process.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sot.sft import distributed

ROOT = Path(__file__).resolve().parents[1]
LOSS_RTOL = 1e-5      # measured: identical to 1e-6 on this CPU (float32, same samples per step)
WEIGHT_RTOL = 1e-5    # measured: 5e-7 of each tensor's largest value
STEPS, SAVE_EVERY = 6, 2


def _project(tmp_path: Path, tiny_model: str, processes: int, name: str) -> tuple[Path, dict]:
    """A project folder for the sft stage: params.yaml (tiny student, full fine-tuning, fsdp), the notebook whose
    parameters the launched processes read, and one training set."""
    import yaml

    root = tmp_path / name
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "notebooks" / "08_sft.py", root / "notebooks")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["models"]["tiny"] = {"ref": tiny_model, "style": "plain"}
    params["seed"] = 0        # the launched processes read it from params.yaml: both runs must use the same
    params["sft"].update(method="full", lr=1e-3, budget="steps", budget_value=STEPS, batch_size=2, grad_accum=1,
                         effective_batch_size=4, max_length=64, logging_steps=1, save_every=SAVE_EVERY, bf16=False,
                         num_processes=processes, per_student={"tiny": {"distributed": "fsdp"}}, backend="trl")
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    sets = root / "data" / "sets" / "gsm8k"
    sets.mkdir(parents=True)
    records = [{"id": f"p{i}", "task": "gsm8k", "category": "H", "prompt": f"What is {i} + {i}?",
                "completion": f" {i} + {i} = {2 * i}. The answer is {2 * i}."} for i in range(16)]
    (sets / "H.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root, params


def _stage(root: Path, params: dict) -> dict:
    """sft.run in a fresh process in `root` (the 2-process run launches torchrun from there), its metrics back."""
    code = ("import json, sys, yaml; from sot.sft import stage; p = yaml.safe_load(open('params.yaml'));"
            "stage.run('gsm8k', 'tiny', 'H', models=p['models'], seed=p['seed'], options=p['sft'])")
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads((root / "metrics" / "sft" / "gsm8k-tiny" / "H.json").read_text())


def _descendants(pid: int) -> list[int]:
    """Every process below pid (from /proc: each process's parent)."""
    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, pp in parent.items() if pp in frontier]
        found += children
        frontier = children
    return found


def _kill_after_first_checkpoint(root: Path) -> None:
    """Start the 2-process stage, SIGKILL its whole process group once a checkpoint is committed."""
    code = ("import yaml; from sot.sft import stage; p = yaml.safe_load(open('params.yaml'));"
            "stage.run('gsm8k', 'tiny', 'H', models=p['models'], seed=p['seed'], options=p['sft'])")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=root, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if list((root / "data" / ".cache" / "sft").glob(f"*/*/checkpoint-{SAVE_EVERY}/sot_complete.json")):
            break
        time.sleep(0.2)
    family = _descendants(proc.pid)     # torchrun starts its workers in sessions of their own: kill them by pid
    for pid in [proc.pid, *family]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    assert family, "the stage had no launched processes to kill"
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed after its first checkpoint"


def test_fsdp_shards_matches_one_process_reloads_and_resumes_after_sigkill(tmp_path, tiny_model):
    import torch
    from safetensors.torch import load_file

    from sot.sft import load_trained

    one_root, one_params = _project(tmp_path, tiny_model, 1, "one")
    two_root, two_params = _project(tmp_path, tiny_model, 2, "two")
    one = _stage(one_root, one_params)
    _kill_after_first_checkpoint(two_root)
    assert not (two_root / "data" / "sft" / "gsm8k-tiny" / "H").exists()
    two = _stage(two_root, two_params)

    # sharded, not replicated: each of the 2 processes holds half of the elements, every parameter a DTensor
    assert two["world_size"] == 2 and two["distributed"] == "fsdp" and one["shards"] is None
    shards = two["shards"]
    assert len(shards) == 2 and shards[0]["global"] == shards[1]["global"] == one["memory"]["n_params"]
    for s in shards:
        assert s["dtensor"] == s["n_params"] > 0
        assert abs(s["local"] / s["global"] - 0.5) < 0.01, shards
    assert sum(s["local"] for s in shards) == shards[0]["global"]

    # resumed from the checkpoint written before the kill, and ended as the uninterrupted 1-process run
    assert two["resume"]["resumed_from_step"] == SAVE_EVERY and two["steps"] == one["steps"] == STEPS
    loss_one = [r["loss"] for r in json.loads((one_root / "data/sft/gsm8k-tiny/H/training_log.json").read_text())]
    loss_two = [r["loss"] for r in json.loads((two_root / "data/sft/gsm8k-tiny/H/training_log.json").read_text())]
    assert len(loss_one) == len(loss_two) == STEPS
    assert loss_one == pytest.approx(loss_two, rel=LOSS_RTOL)
    assert loss_two[-1] < loss_two[0]

    # an ordinary model folder: one safetensors file of full tensors, reloaded by transformers
    a = load_file(one_root / "data/sft/gsm8k-tiny/H/model.safetensors")
    b = load_file(two_root / "data/sft/gsm8k-tiny/H/model.safetensors")
    assert sorted(a) == sorted(b) and all(a[k].shape == b[k].shape for k in a)
    assert max(((a[k] - b[k]).abs().max() / a[k].abs().max()).item() for k in a) < WEIGHT_RTOL
    model, tok = load_trained(two_root / "data/sft/gsm8k-tiny/H")
    ids = tok("What is 3 + 3?", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()


def test_memory_arithmetic_per_student():
    """16 bytes a fully trained parameter (float32 weights + gradients, AdamW's two moments); fsdp divides them."""
    gb80 = 80e9
    llama = distributed.memory_plan(8.03e9, 8.03e9, "full", "float32", "adamw_torch", 1, "ddp", gb80)
    assert llama["bytes_per_param"] == 16 and llama["total_gb"] == pytest.approx(128.5, abs=0.1)
    assert llama["fits"] is False
    sharded = distributed.memory_plan(8.03e9, 8.03e9, "full", "float32", "adamw_torch", 8, "fsdp", gb80)
    assert sharded["per_gpu_gb"] == pytest.approx(16.06, abs=0.01) and sharded["fits"] is True
    ddp8 = distributed.memory_plan(8.03e9, 8.03e9, "full", "float32", "adamw_torch", 8, "ddp", gb80)
    assert ddp8["per_gpu_gb"] == pytest.approx(160.6, abs=0.1) and ddp8["fits"] is False   # DDP adds its buckets
    qwen = distributed.memory_plan(1.54e9, 1.54e9, "full", "float32", "adamw_torch", 1, "ddp", gb80)
    assert qwen["per_gpu_gb"] == pytest.approx(24.6, abs=0.1) and qwen["fits"] is True
    lora = distributed.memory_plan(8.03e9 + 42e6, 42e6, "lora", "bfloat16", "adamw_torch", 1, "ddp", gb80)
    assert lora["per_gpu_gb"] < 17 and lora["fits"] is True
    assert distributed.memory_plan(1e6, 1e6, "full", "float32", "adamw_torch", 1, "ddp", None)["fits"] is None


def test_a_student_that_cannot_fit_is_refused_with_the_numbers_and_the_fix():
    plan = distributed.memory_plan(8.03e9, 8.03e9, "full", "float32", "adamw_torch", 1, "ddp", 80e9)
    with pytest.raises(MemoryError) as e:
        distributed.check_fit(plan, "sft llama")
    text = str(e.value)
    for part in ("8.03 B parameters", "16.0 bytes", "128.5 GB", "64.0 GB usable", "sft.distributed: fsdp",
                 "sft.num_processes >= 3", "sft.method: lora"):
        assert part in text, (part, text)
    two = distributed.memory_plan(8.03e9, 8.03e9, "full", "float32", "adamw_torch", 2, "fsdp", 80e9)
    with pytest.raises(MemoryError, match=r"sft.num_processes >= 3 \(42.8 GB per GPU\)"):
        distributed.check_fit(two, "sft llama")
    distributed.check_fit(distributed.memory_plan(8.03e9, 8.03e9, "full", "float32", "adamw_torch", 4, "fsdp", 80e9),
                          "sft llama")


def test_fit_check_counts_the_model_without_reading_weights(tiny_model):
    from sot.sft.config import SFTConfig

    total, trained = distributed.count_parameters(tiny_model, SFTConfig(model=tiny_model, method="full"))
    assert total == trained == 3219776
    total, trained = distributed.count_parameters(tiny_model, SFTConfig(model=tiny_model, method="lora"))
    assert total == 3219776 + trained and 0 < trained < 3219776 / 10


def test_fsdp_settings_wrap_layers_checkpoint_activations_and_load_on_rank_0():
    args = distributed.fsdp_trainer_args(["LlamaDecoderLayer"], bf16=True)
    c = args["fsdp_config"]
    assert args["fsdp"] is True and c["version"] == 2 and c["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert c["transformer_layer_cls_to_wrap"] == ["LlamaDecoderLayer"] and c["activation_checkpointing"] is True
    assert c["cpu_ram_efficient_loading"] is True and c["state_dict_type"] == "SHARDED_STATE_DICT"
    with pytest.raises(ValueError, match="no decoder-layer class"):
        distributed.fsdp_trainer_args([], bf16=True)
