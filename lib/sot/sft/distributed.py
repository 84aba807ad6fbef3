"""Sharded training (FSDP2) and the memory arithmetic that decides when a student needs it.

`sft.distributed: ddp` (the default) keeps a whole copy of the weights, gradients and optimizer state on every
process. `fsdp` shards all three across the `sft.num_processes` processes through the Trainer's own FSDP2 support
(transformers' `fsdp_config` -> accelerate's FullyShardedDataParallelPlugin, `fsdp_version` 2): every decoder
layer is its own FSDP unit (transformer-layer auto-wrap, the model's `_no_split_modules`), FSDP's activation
checkpointing replaces TRL's gradient_checkpointing (which errors under FSDP), parameters stay float32 master
weights and are cast to bf16 for compute (MixedPrecisionPolicy: bf16 params, float32 gradient reduction), and
rank 0 alone reads the weights, which it broadcasts shard by shard (cpu_ram_efficient_loading). Resume
checkpoints are sharded (each process writes its own shard of weights and optimizer state, torch.distributed
.checkpoint); the final model is gathered into a full state dict on rank 0 and written as an ordinary model
folder, so evaluation loads it like any other.

On a machine without CUDA, accelerate turns an FSDP request into plain DDP without a word (it switches to FSDP
only for GPU-like process groups): `cpu_fsdp` makes it shard the CPU (gloo) group too, which is how the tests
run this very code on 2 CPU processes.

Memory before activations, per trained parameter (AdamW, float32 master weights): 4 (weights) + 4 (gradients)
+ 8 (two Adam moments) = 16 bytes; DDP adds its gradient buckets (4); FSDP divides the 16 by the processes. LoRA
keeps the frozen base in its dtype (2 bytes in bf16) and 16 bytes per adapter parameter.
"""
from __future__ import annotations

import contextlib
import os

GB = 1e9
ACTIVATION_SHARE = 0.2          # of each GPU's memory left for activations, the gathered layers, the CUDA context
ADAM_BYTES = {"adamw_torch": 8, "adamw_torch_fused": 8, "adamw_hf": 8, "adamw_8bit": 2, "adamw_bnb_8bit": 2,
              "paged_adamw_8bit": 2, "sgd": 0, "adafactor": 4}
DDP_BUCKET_BYTES = 4            # DDP's gradient buckets: a second float32 copy of the gradients
DTYPE_BYTES = {"float32": 4, "bfloat16": 2}


def memory_plan(n_params: int, n_trainable: int, method: str, model_dtype: str, optimizer: str,
                world_size: int, distributed: str, gpu_bytes: float | None) -> dict:
    """Bytes per GPU before activations, and whether they fit (module docstring for the arithmetic)."""
    weight = DTYPE_BYTES[model_dtype]
    optim = ADAM_BYTES.get(optimizer, 8)
    frozen = n_params - n_trainable
    # a trained parameter: itself, its gradient (same dtype) and the optimizer moments (their bytes scale with it);
    # LoRA adapters are float32 whatever the base's dtype (PEFT upcasts them)
    own = weight if method == "full" else 4
    trained = own + own + optim * own // 4
    total = frozen * weight + n_trainable * trained
    sharded = distributed == "fsdp" and world_size > 1
    per_gpu = total / world_size if sharded else total + (n_trainable * DDP_BUCKET_BYTES if world_size > 1 else 0)
    usable = None if gpu_bytes is None else gpu_bytes * (1 - ACTIVATION_SHARE)
    return {"n_params": int(n_params), "n_trainable": int(n_trainable), "bytes_per_param": total / n_params,
            "total_gb": round(total / GB, 2), "per_gpu_gb": round(per_gpu / GB, 2), "world_size": world_size,
            "distributed": distributed, "sharded": sharded,
            "gpu_gb": None if gpu_bytes is None else round(gpu_bytes / GB, 2),
            "usable_gb": None if usable is None else round(usable / GB, 2),
            "fits": None if usable is None else per_gpu <= usable}


def count_parameters(model_path: str, cfg) -> tuple[int, int]:
    """(all parameters, trained parameters) of the model at model_path, built on the meta device (no weights read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    n = sum(p.numel() for p in model.parameters())
    if cfg.method == "full":
        return n, n
    from peft import get_peft_model

    from sot.sft.trl_backend import lora_config
    peft_model = get_peft_model(model, lora_config(cfg))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    return n + trainable, trainable


def gpu_memory() -> float | None:
    """Bytes of the smallest visible CUDA device, or None without CUDA."""
    import torch
    if not torch.cuda.is_available():
        return None
    return min(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count()))


def _count(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.2f} M"


def explain(plan: dict) -> str:
    how = (f"sharded over {plan['world_size']} processes (fsdp)" if plan["sharded"]
           else f"a whole copy on each of {plan['world_size']} process(es) ({plan['distributed']})")
    return (f"{_count(plan['n_params'])} parameters ({_count(plan['n_trainable'])} trained) x "
            f"{plan['bytes_per_param']:.1f} bytes = {plan['total_gb']:.1f} GB of weights, gradients and optimizer "
            f"state, {how}: {plan['per_gpu_gb']:.1f} GB per GPU before activations")


def check_fit(plan: dict, where: str) -> None:
    """Refuse, before any weight is read, a run whose state does not fit the GPUs, saying what would."""
    if plan["fits"] is not False:
        return
    total, usable = plan["total_gb"], plan["usable_gb"]
    need = int(-(-total // usable))     # processes that would make the shards fit
    fixes = [f"sft.distributed: fsdp with sft.num_processes >= {need} (one GPU each: {total / need:.1f} GB per GPU)"]
    if plan["sharded"]:
        fixes = [f"sft.num_processes >= {need} ({total / need:.1f} GB per GPU)"]
    if plan["n_trainable"] == plan["n_params"]:
        fixes.append("sft.method: lora (the frozen base in bf16, 2 bytes a parameter)")
    raise MemoryError(f"{where}: the student does not fit the GPUs: {explain(plan)}, more than the "
                      f"{usable:.1f} GB usable of each {plan['gpu_gb']:.1f} GB GPU ({ACTIVATION_SHARE:.0%} kept for "
                      f"activations). Use " + ", or ".join(fixes) + ".")


def fsdp_trainer_args(layer_classes: list[str], bf16: bool) -> dict:
    """TrainingArguments for FSDP2: shard everything, wrap each decoder layer, FSDP's activation checkpointing,
    rank-0 loading, sharded resume checkpoints (the final model is gathered separately: `save_full`). The caller
    turns off TRL's gradient_checkpointing (an error under FSDP) and save_only_model (FSDP refuses it with
    checkpoint='best_val')."""
    if not layer_classes:
        raise ValueError("sft.distributed=fsdp: the model names no decoder-layer class (_no_split_modules) to wrap")
    return {"fsdp": True,
            "fsdp_config": {"version": 2, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                            "transformer_layer_cls_to_wrap": list(layer_classes), "activation_checkpointing": True,
                            "cpu_ram_efficient_loading": True, "state_dict_type": "SHARDED_STATE_DICT",
                            "reshard_after_forward": True}}


def loading_env() -> dict:
    """Environment under which from_pretrained takes part in rank-0 loading (what `accelerate launch` sets for an
    FSDP config): set before the model is loaded."""
    return {"ACCELERATE_USE_FSDP": "true", "FSDP_CPU_RAM_EFFICIENT_LOADING": "true"}


@contextlib.contextmanager
def cpu_fsdp():
    """While the Trainer builds its Accelerator: on a CPU (gloo) process group, let accelerate choose FSDP as it
    does for GPUs (it keys the choice on the group's type, and otherwise falls back to DDP without a word)."""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    shared = PartialState._shared_state
    if shared.get("distributed_type") != DistributedType.MULTI_CPU:
        yield
        return
    shared["distributed_type"] = DistributedType.MULTI_GPU
    try:
        yield
    finally:
        shared["distributed_type"] = DistributedType.MULTI_CPU


def require_sharded(trainer) -> None:
    """After the Trainer is built: FSDP2 really is what accelerate will apply, else say why, before training."""
    plugin = getattr(trainer.accelerator.state, "fsdp_plugin", None)
    if not trainer.is_fsdp_enabled or plugin is None or plugin.fsdp_version != 2:
        raise RuntimeError(f"sft.distributed=fsdp but accelerate chose {trainer.accelerator.distributed_type} "
                           f"(fsdp plugin {plugin!r}); the model would not be sharded. Launch with torchrun on "
                           "more than one process (sft.num_processes > 1).")


def set_mixed_precision(trainer, bf16: bool) -> None:
    """bf16 compute on float32 master weights, gradients reduced in float32 (accelerate's bf16 default reduces in
    bf16, which rounds away a 1e-6-lr update's gradient detail)."""
    if not bf16:
        return
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy
    trainer.accelerator.state.fsdp_plugin.mixed_precision_policy = MixedPrecisionPolicy(
        param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


def save_full(trainer, folder: str, dtype: str) -> None:
    """Gather the sharded model into a full state dict on rank 0 (every process joins) and write there an ordinary
    model folder in `dtype`, with the tokenizer. Rank 0 writes it from a plain (unsharded) copy of the model
    holding the gathered tensors: save_pretrained on the FSDP module itself inspects its DTensors (tied weights)
    on rank 0 alone and waits forever for the other processes."""
    import torch
    from transformers import AutoModelForCausalLM

    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(trainer.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if trainer.accelerator.is_main_process:
        state = {k: v.to(getattr(torch, dtype)) if v.is_floating_point() else v for k, v in state.items()}
        with torch.device("meta"):
            plain = AutoModelForCausalLM.from_config(trainer.model.config, dtype=getattr(torch, dtype))
        missing, unexpected = plain.load_state_dict(state, strict=False, assign=True)
        plain.tie_weights()
        left = [k for k, p in plain.named_parameters() if p.is_meta]
        if left or unexpected:
            raise RuntimeError(f"sft.distributed=fsdp: the gathered state dict does not fill the model "
                               f"(still empty: {left[:5]}, unexpected: {unexpected[:5]})")
        plain.generation_config = trainer.model.generation_config
        plain.save_pretrained(folder)
        trainer.processing_class.save_pretrained(folder)
    trainer.accelerator.wait_for_everyone()


def shards(model) -> list[dict]:
    """Per process, in rank order: {"local": parameter elements it holds, "global": elements of the whole model,
    "dtensor": parameters held as DTensor shards, "n_params": parameters} (every process joins): what shows the
    model really is sharded (DDP: every process holds all the elements, none as a DTensor)."""
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    mine = {"local": 0, "global": 0, "dtensor": 0, "n_params": 0}
    for p in model.parameters():
        mine["n_params"] += 1
        mine["global"] += p.numel()
        if isinstance(p, DTensor):
            mine["dtensor"] += 1
            mine["local"] += p.to_local().numel()
        else:
            mine["local"] += p.numel()
    if not (dist.is_available() and dist.is_initialized()):
        return [mine]
    every = [None] * dist.get_world_size()
    dist.all_gather_object(every, mine)
    return every
