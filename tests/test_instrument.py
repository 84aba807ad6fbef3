"""The instrument sees fine-tuning: no step at lr 0, a budget of loss-bearing tokens, a decoding cap that covers
the training completions, H in the format its prompt asks for, and an evaluated model that is the trained one."""
from __future__ import annotations

import pytest

from sot.instrument import check_decoding_cap, check_kept, longest_completion
from sot.sft.config import SFTConfig, plan_steps
from sot.sft.schedule import lr_factor, summed_lr, warmup_steps


@pytest.mark.parametrize("steps,ratio", [(5, 0.1), (7, 0.1), (1, 0.5), (40, 0.25), (3, 0.9)])
@pytest.mark.parametrize("kind", ["linear", "cosine", "constant"])
def test_no_step_runs_at_learning_rate_zero(steps, ratio, kind):
    w = warmup_steps(ratio, steps)
    factors = [lr_factor(s, steps, w, kind) for s in range(steps)]
    assert all(0 < f <= 1 for f in factors), factors
    assert max(factors) == pytest.approx(1.0) or steps == 1
    assert summed_lr(1.0, steps, ratio, kind) == pytest.approx(sum(factors))


def test_warmup_is_monotone_then_decays():
    f = [lr_factor(s, 10, 2, "linear") for s in range(10)]
    assert f[:3] == sorted(f[:3]) and f[2:] == sorted(f[2:], reverse=True) and f[-1] == pytest.approx(0.125)


def test_unknown_schedule_is_refused_by_name():
    with pytest.raises(ValueError, match="sft.lr_scheduler='polynomial'"):
        lr_factor(0, 5, 1, "polynomial")


def test_token_budget_counts_completions_not_prompts():
    """Two sets with the same completions but prompts of very different length plan the same steps."""
    cfg = SFTConfig(model="m", budget="tokens", budget_value=3000, per_device_batch_size=4, warmup_ratio=0.1)
    completions = [30, 50, 40, 60] * 5
    a = plan_steps(completions, cfg)
    b = plan_steps(list(completions), cfg)
    assert a["max_steps"] == b["max_steps"] and abs(a["planned_tokens"] - 3000) <= a["tokens_per_step"] / 2
    assert a["summed_lr"] == pytest.approx(summed_lr(cfg.lr, a["max_steps"], 0.1))
    assert a["max_tokens_per_example"] == 60 and not a["over_max_epochs"]
    tiny = plan_steps([10, 12], cfg)                       # 22 tokens a pass: the budget needs ~136 passes
    assert tiny["over_max_epochs"] and tiny["planned_epochs"] > cfg.max_epochs


def test_decoding_cap_below_the_longest_completion_stops_with_both_numbers():
    with pytest.raises(ValueError) as e:
        check_decoding_cap(160, {"H": 90, "G": 287}, "evaluate.max_new_tokens")
    msg = str(e.value)
    assert "evaluate.max_new_tokens" in msg and "160" in msg and "287" in msg and "set G" in msg
    check_decoding_cap(287, {"H": 90, "G": 287}, "evaluate.max_new_tokens")      # equal is enough
    check_decoding_cap(10, {}, "evaluate.max_new_tokens")                         # nothing trained: no check


def test_kept_share_below_the_minimum_stops():
    with pytest.raises(ValueError, match="float32"):
        check_kept({"kept": 0.8, "cosine": 0.95}, 0.95, "mbpp-x-G", "bfloat16")
    check_kept({"kept": 0.99, "cosine": 0.999}, 0.95, "mbpp-x-G", "float32")


def test_longest_completion_counts_the_end_token():
    class Tok:
        def __call__(self, text, add_special_tokens=False):
            return type("E", (), {"input_ids": text.split()})()
    assert longest_completion([{"completion": "a b c"}, {"completion": "a"}], Tok()) == 4


def _records(data_dir, task, n=4):
    from sot.tasks import get_task
    t = get_task(task)
    return t, t.load_split("train", data_dir, limit=n, seed=0)


@pytest.mark.parametrize("task", ["mbpp", "gsm8k", "math", "countdown"])
def test_human_trace_obeys_the_prompt_and_grades_correct(data_dir, task):
    t, problems = _records(data_dir, task)
    traces = [t.human_trace(p) for p in problems]
    assert all(g.correct for g in t.grade_many(problems, traces)), task
    for p, h in zip(problems, traces):
        if task == "mbpp":      # the prompt asks for one ```python block
            assert "```python" in p.question and h.startswith("```python\n") and h.rstrip().endswith("```")
        if task == "gsm8k":     # the prompt asks for "The answer is <number>."
            assert "The answer is <number>." in p.question
            assert "####" not in h and h.rstrip().endswith(f"The answer is {p.answer}.")
        if task == "math":
            assert "\\boxed{}" in p.question and "\\boxed" in h
        if task == "countdown":
            assert "<answer>" in p.question and "<answer>" in h


def test_evaluated_model_keeps_the_adapter_effect(tiny_model, tmp_path):
    """After real LoRA steps, the transformers backend's model (merged in float32) changes the log-probs exactly
    as the unmerged float32 PEFT model does; in bf16 the measure reports what it loses."""
    from sot import fidelity
    from sot.llm.hf import TransformersBackend
    from sot.prompts import render
    from sot.sft import train

    records = [{"id": f"r{i}", "prompt": f"Add {i} and {i + 1}.", "completion": f" {2 * i + 1} is the sum"}
               for i in range(6)]
    cfg = SFTConfig(model=tiny_model, method="lora", lora_r=8, lora_alpha=16, lr=5e-3, budget="steps",
                    budget_value=6, per_device_batch_size=2, logging_steps=1, warmup_ratio=0.2, bf16=False)
    summary = train(records, cfg, tmp_path / "lora", render=render)
    first = summary["history"][0]
    assert first["step"] == 1 and first["lr"] > 0                       # the first step learns
    assert summary["completion_tokens"] > 0
    assert summary["plan"]["summed_lr"] == pytest.approx(sum(r["lr"] for r in summary["history"]), rel=1e-6)
    texts = [render(f"Add {i} and {i + 2}.", "plain") for i in range(4)]
    for dtype, floor in (("float32", 0.999), ("bfloat16", None)):
        llm = TransformersBackend(tiny_model, adapter=str(tmp_path / "lora"), dtype=dtype, batch_size=2)
        effect = fidelity.measure(tiny_model, str(tmp_path / "lora"), llm.model, dtype, texts)
        assert effect["effect"] > 0 and effect["kept"] is not None
        if floor:
            assert effect["kept"] == pytest.approx(1.0, abs=1e-3) and effect["cosine"] > floor
        else:
            assert 0 < effect["kept"] and effect["cosine"] < 0.99999


def _row(s, **kw):
    base = {"task": "mbpp", "student": "s", "set": s, "records": 20, "steps": 10, "completion_tokens": 4000,
            "budget_tokens": 4000, "tokens_per_step": 400.0, "epochs": 2.0, "over_max_epochs": False,
            "summed_lr": 4e-3, "first_lr": 1e-4, "longest": 300, "cap": 300, "cut": 3, "n": 150, "kept": 1.0,
            "budget": "tokens"}
    return {**base, **kw}


def test_alike_flags_lr_zero_steps_repeated_sets_and_token_mismatch():
    from sot.training_table import alike

    assert alike([_row("H"), _row("G", steps=6, tokens_per_step=667.0, completion_tokens=4100)]) == []
    problems = alike([_row("H", first_lr=0.0), _row("P", over_max_epochs=True, epochs=6.5),
                      _row("G", completion_tokens=5200)])
    assert len(problems) == 3 and any("learning rate 0" in p for p in problems)
    assert any("6.5 passes" in p for p in problems) and any("5200 completion tokens" in p for p in problems)
