"""The benchmark plumbing: the real-architecture configs build at their published sizes, and results are appended
with the machine named."""
from __future__ import annotations

import pytest

from sot.benchmark import ARCH_CONFIGS, append_results, arch_config, markdown_table, random_model, timed

PUBLISHED_PARAMS = {"qwen2.5-1.5b": 1.54e9, "gemma-2-2b": 2.61e9}   # model cards: 1.54B, 2.61B (tied embeddings)


@pytest.mark.parametrize("arch", sorted(ARCH_CONFIGS))
def test_arch_configs_have_the_published_size(arch):
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(arch_config(arch))
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - PUBLISHED_PARAMS[arch]) / PUBLISHED_PARAMS[arch] < 0.01, n


def test_random_model_rejects_unknown_arch(tmp_path):
    with pytest.raises(ValueError, match="unknown architecture 'gpt-9'.*qwen2.5-1.5b"):
        random_model("gpt-9", tmp_path)


def test_timed_takes_the_median_after_warmup():
    calls = []
    out = timed(lambda: calls.append(1) or len(calls), repeats=3, warmup=2)
    assert len(calls) == 5 and out["result"] == 5 and len(out["times_s"]) == 3
    assert out["median_s"] == sorted(out["times_s"])[1]


def test_append_results_names_the_machine(tmp_path):
    path = tmp_path / "RESULTS.md"
    text = append_results("Demo", [{"a": 1.23456, "b": None}], notes="a note", path=path)
    body = path.read_text()
    assert body.startswith("# Benchmark results") and text in body
    assert "Machine: cpu " in text and "cores " in text and "| 1.235 |  |" in text and "a note" in text
    assert markdown_table([]) == "(no rows)"
