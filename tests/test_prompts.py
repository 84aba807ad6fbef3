"""sot.prompts: one plain format and its stop strings; a base model's run-on into a new problem is cut there."""
from __future__ import annotations

import pytest

from sot import prompts
from sot.evaluate import evaluate
from sot.llm import Sample, Sampling
from sot.llm.base import truncate_at_stop
from sot.tasks import get_task

QUESTION = "Ann has 40 apples and buys 4 more. How many apples does she have?"
# A base model that finishes, then runs on into a new problem written in the prompt's own format.
RUN_ON = ("40 + 4 = 44\n#### 44\n\n"
          + prompts.render_plain("Tom has 3 apples. How many?") + "#### 999")


def gsm8k_problem():
    task = get_task("gsm8k")
    return task, task.from_record({"question": QUESTION, "answer": "40+4=<<40+4=44>>44\n#### 44"}, id="gsm8k/t/0")


class ScriptedBackend:
    """Replies RUN_ON to every prompt and honours stop strings the way the openai and vllm backends do
    (cut after generation, finish_reason "stop"); records what it was asked."""

    def __init__(self, text: str = RUN_ON):
        self.text, self.calls = text, []

    def generate(self, prompts_, sampling, progress=True):
        self.calls.append((list(prompts_), sampling))
        out = []
        for _ in prompts_:
            text, found = truncate_at_stop(self.text, sampling.stop)
            out.append([Sample(text, len(text.split()), "stop" if found else "length")] * sampling.n)
        return out

    def info(self):
        return {"backend": "scripted", "model": "none"}


def test_plain_format_and_its_stops_are_defined_once():
    assert prompts.render("Q?", "plain") == "Problem:\nQ?\n\nSolution:\n"
    assert prompts.stop_strings("plain") == prompts.PLAIN_STOP and prompts.stop_strings("chat") == ()
    for name in ("gsm8k", "math", "countdown", "mbpp"):
        assert tuple(get_task(name).stop) == prompts.PLAIN_STOP
    # the stop strings match the format's own start of a new problem, wherever the run-on starts it
    new_problem = "\n" + prompts.render_plain("x").split("\n")[0]
    assert new_problem in prompts.PLAIN_STOP
    with pytest.raises(ValueError, match="valid: plain, chat"):
        prompts.stop_strings("fewshot")


def test_a_run_on_into_a_new_problem_is_cut_and_graded_on_its_own_answer():
    task, problem = gsm8k_problem()
    assert task.grade(problem, RUN_ON).extracted == "999"       # what grading the uncut run-on would give
    backend = ScriptedBackend()
    rows, summary = evaluate(task, [problem], backend, style="plain", max_new_tokens=64, n_boot=10, progress=False)
    sent, sampling = backend.calls[0]
    assert sent == [prompts.render(problem.question, "plain")] and sampling.stop == prompts.PLAIN_STOP
    assert rows[0]["completion"] == "40 + 4 = 44\n#### 44\n" and rows[0]["finish_reason"] == "stop"
    assert rows[0]["extracted"] == "44" and rows[0]["correct"]


def test_chat_style_has_no_stop_strings():
    task, problem = gsm8k_problem()
    backend = ScriptedBackend("#### 44\nProblem: more")
    rows, _ = evaluate(task, [problem], backend, style="chat", max_new_tokens=64, n_boot=10, progress=False)
    assert backend.calls[0][1].stop == () and rows[0]["completion"] == "#### 44\nProblem: more"


def test_transformers_backend_stops_a_run_on(tiny_model):
    """The real transformers backend (its stopping criterion and cut) on the tiny model, forced to write RUN_ON."""
    import torch
    from transformers import LlamaForCausalLM

    from sot.llm import get_backend

    backend = get_backend("transformers", tiny_model, batch_size=2)
    tok = backend.tokenizer
    script = tok(RUN_ON, add_special_tokens=False).input_ids + [tok.eos_token_id]

    class Scripted(LlamaForCausalLM):
        """Greedy decoding writes `script`, one token per step (the real model runs; only its logits change)."""

        def forward(self, input_ids=None, past_key_values=None, **kwargs):
            cached = past_key_values.get_seq_length() if past_key_values is not None else 0
            if cached == 0:                                   # prefill: the (left-padded) prompt batch
                self.width = input_ids.shape[1]
            out = super().forward(input_ids=input_ids, past_key_values=past_key_values, **kwargs)
            step = cached + input_ids.shape[1] - self.width   # tokens generated so far
            forced = torch.full_like(out.logits, -1e4)
            forced[:, -1, script[min(step, len(script) - 1)]] = 0.0
            out.logits = forced
            return out

    backend.model.__class__ = Scripted
    task, problem = gsm8k_problem()
    plain = task.prompt(problem, "plain")
    free = backend.generate([plain], Sampling(max_new_tokens=len(script) + 4), progress=False)[0][0]
    assert free.text == RUN_ON and free.n_tokens == len(script)      # the script is what the model writes
    cut = backend.generate([plain, plain + " "], Sampling(max_new_tokens=len(script) + 4, stop=tuple(task.stop)),
                           progress=False)
    for sample in (cut[0][0], cut[1][0]):
        assert sample.text == "40 + 4 = 44\n#### 44\n" and sample.finish_reason == "stop"
        assert sample.n_tokens < len(script) - 5                      # generation ended at the stop, not later
    assert task.grade(problem, cut[0][0].text).extracted == "44"


def test_an_assistant_prefix_is_continued_not_closed(tiny_model):
    """sot.paraphrase opens the reply with <rewritten>: the rendered prompt must end with that prefix (the model
    continues inside the tag), with the generation prompt before it and no end-of-turn after it."""
    from transformers import AutoTokenizer

    from sot.prompts import render_messages

    tok = AutoTokenizer.from_pretrained(tiny_model)
    user = [{"role": "user", "content": "Rewrite: 1 + 1 = 2"}]
    opened = render_messages(user + [{"role": "assistant", "content": "<rewritten>\n"}], tok)
    assert opened == render_messages(user, tok) + "<rewritten>\n"
