"""GPU-only SFT checks (skipped without CUDA): the Unsloth backend trains the tiny model, and what it saves loads
and scores through the same path (load_trained + completion_nll) as what the TRL backend saves."""
from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.gpu

RECORDS = [{"id": "p0", "prompt": "Tom has 3 apples and gets 4 more. How many?", "completion": " 3+4=7. The answer is 7."}]


def render(question: str, style: str, tokenizer=None) -> str:
    if style == "plain":
        return f"{question}\nSolution:"
    return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True)


TRAIN_ONE = """
import json, sys
from sot.distance import completion_nll
from sot.sft import SFTConfig, load_trained, train
model, backend, method, out, records = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
render = lambda q, style, tokenizer=None: f"{q}\\nSolution:"
cfg = SFTConfig(model=model, method=method, backend=backend, lr=1e-2 if method == "full" else 5e-3,
                lr_scheduler="constant", budget="steps", budget_value=20, per_device_batch_size=1, logging_steps=5,
                max_length=128)
summary = train(records, cfg, out, render=render)
trained = load_trained(out, device="cuda")
summary["nll_after"] = completion_nll(trained, records, "plain", render=render, progress=False)["nll"]
print("SUMMARY " + json.dumps({k: summary[k] for k in ("backend", "history", "peak_memory_gb", "nll_after")}))
"""


def _train_in_own_process(model: str, backend: str, method: str, out) -> dict:
    """One backend per process, as the pipeline runs it: unsloth patches TRL for the whole process."""
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", TRAIN_ONE, model, backend, method, str(out), json.dumps(RECORDS)],
                          capture_output=True, text=True, timeout=600)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("SUMMARY ")), None)
    assert proc.returncode == 0 and line, proc.stderr[-3000:]
    return json.loads(line[len("SUMMARY "):])


@pytest.mark.parametrize("method", ["lora", "full"])
def test_unsloth_and_trl_outputs_load_and_score_the_same_way(tiny_model, tmp_path, method):
    pytest.importorskip("unsloth")
    from sot.distance import completion_nll

    base = completion_nll(tiny_model, RECORDS, "plain", render=render, progress=False)["nll"]
    for backend in ("unsloth", "trl"):
        summary = _train_in_own_process(tiny_model, backend, method, tmp_path / backend)
        losses = [r["loss"] for r in summary["history"] if "loss" in r]
        assert summary["backend"] == backend and losses[-1] < losses[0]
        assert summary["peak_memory_gb"] and summary["peak_memory_gb"] > 0
        assert (tmp_path / backend / "adapter_config.json").exists() == (method == "lora")
        assert math.isfinite(summary["nll_after"]) and summary["nll_after"] < base


def test_auto_backend_prefers_unsloth_on_cuda():
    pytest.importorskip("unsloth")
    from sot.sft import choose_backend
    assert choose_backend("auto") == ("unsloth", "CUDA present and unsloth importable")
    assert choose_backend("auto", world_size=2)[0] == "trl"


def test_trl_backend_on_cuda_uses_bf16_and_reports_memory(tiny_model, tmp_path):
    import torch
    from sot.sft import SFTConfig, train

    cfg = SFTConfig(model=tiny_model, method="lora", backend="trl", lr=5e-3, budget="steps", budget_value=4,
                    per_device_batch_size=1, logging_steps=1)
    summary = train(RECORDS, cfg, tmp_path / "trl", render=render)
    assert summary["bf16"] == torch.cuda.is_bf16_supported()
    assert summary["model_dtype"] == ("bfloat16" if summary["bf16"] else "float32")
    assert summary["peak_memory_gb"] > 0
