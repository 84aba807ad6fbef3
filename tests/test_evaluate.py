"""evaluate(): greedy generation + grading + summary with a fake backend (and once with the real one);
compare_to_reference(): paired comparisons aligned by problem id."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest

from sot.evaluate import ROW_FIELDS, accuracy_record, build_prompts, compare_to_reference, evaluate
from sot.metrics import bootstrap_ci, paired_comparison


@dataclass
class FakeProblem:  # the fields of sot.tasks.Problem that evaluate() uses
    id: str
    task: str
    question: str
    answer: str


@dataclass(frozen=True)
class FakeGrade:
    correct: bool
    extracted: str | None


@dataclass
class FakeSample:
    text: str
    n_tokens: int
    finish_reason: str


class FakeTask:
    """Answers are "#### N"; no "####" means unparseable."""
    name = "fake"
    stop = ["\nQuestion:"]

    def messages(self, p):
        return [{"role": "user", "content": p.question}]

    def prompt(self, p, style, tokenizer=None):
        assert style == "plain"
        return f"{p.question}\nSolution:"

    def grade_many(self, problems, completions, workers=None):
        out = []
        for p, c in zip(problems, completions):
            m = re.search(r"#### (\S+)", c)
            out.append(FakeGrade(False, None) if m is None else FakeGrade(m[1] == p.answer, m[1]))
        return out


class FakeBackend:
    """Returns a fixed completion per question; records every generate() call."""

    def __init__(self, by_question: dict[str, str]):
        self.by_question, self.calls = by_question, []

    def generate(self, prompts, sampling, progress=True):
        self.calls.append((list(prompts), sampling))
        out = []
        for p in prompts:
            question = p[0]["content"] if isinstance(p, list) else p.split("\nSolution:")[0]
            text = self.by_question[question]
            out.append([FakeSample(text, len(text.split()), "length" if "..." in text else "stop")])
        return out

    def info(self):
        return {"backend": "fake", "model": "none"}


def ten_problems():
    """10 problems: 7 answered right, 2 wrong, 1 unparseable (and truncated)."""
    problems = [FakeProblem(f"fake/test/{i}", "fake", f"What is {i} + {i}?", str(2 * i)) for i in range(10)]
    answers = {p.question: f"{p.question} so #### {p.answer}" for p in problems[:7]}
    answers.update({p.question: "I think #### -1" for p in problems[7:9]})
    answers[problems[9].question] = "Let me think..."
    return problems, answers


def test_evaluate_hand_computed_accuracy_and_interval():
    problems, answers = ten_problems()
    backend = FakeBackend(answers)
    rows, summary = evaluate(FakeTask(), problems, backend, style="chat", max_new_tokens=64, n_boot=2000,
                             seed=0, progress=False)
    assert [r["id"] for r in rows] == [p.id for p in problems]
    assert all(tuple(r) == ROW_FIELDS for r in rows)
    assert [r["correct"] for r in rows] == [True] * 7 + [False] * 3
    assert rows[9]["extracted"] is None and rows[9]["finish_reason"] == "length"
    assert rows[7]["extracted"] == "-1"
    assert summary["strict"] == 0.7 and summary["authors"] == pytest.approx(7 / 9)
    assert (summary["n"], summary["n_parsed"], summary["n_correct"]) == (10, 9, 7)
    assert (summary["strict_lo"], summary["strict_hi"]) == bootstrap_ci([True] * 7 + [False] * 3, n_boot=2000)
    assert summary["authors_lo"] <= 7 / 9 <= summary["authors_hi"]
    assert summary["task"] == "fake" and summary["style"] == "chat" and summary["backend"]["backend"] == "fake"
    assert summary["generation"]["tokens"] == sum(r["n_tokens"] for r in rows)
    assert summary["generation"]["n_truncated"] == 1
    json.dumps(summary), json.dumps(rows)  # both must be storable as JSON

    (prompts, sampling), = backend.calls
    assert prompts[0] == [{"role": "user", "content": "What is 0 + 0?"}]
    assert (sampling.temperature, sampling.n, sampling.max_new_tokens, tuple(sampling.stop)) == (0.0, 1, 64, ())


def test_evaluate_plain_style_and_batches_give_the_same_rows():
    problems, answers = ten_problems()
    whole, _ = evaluate(FakeTask(), problems, FakeBackend(answers), style="plain", progress=False, n_boot=100)
    backend = FakeBackend(answers)
    batched, summary = evaluate(FakeTask(), problems, backend, style="plain", batch_size=3, progress=True,
                                n_boot=100)
    assert whole == batched
    assert [len(prompts) for prompts, _ in backend.calls] == [3, 3, 3, 1]
    prompts, sampling = backend.calls[0]
    assert prompts[0] == "What is 0 + 0?\nSolution:" and tuple(sampling.stop) == ("\nQuestion:",)
    assert summary["sampling"]["stop"] == ["\nQuestion:"]


def test_evaluate_rejects_bad_input():
    problems, answers = ten_problems()
    with pytest.raises(ValueError, match="style"):
        evaluate(FakeTask(), problems, FakeBackend(answers), style="fancy", progress=False)
    with pytest.raises(ValueError, match="duplicate id"):
        evaluate(FakeTask(), problems + problems[:1], FakeBackend(answers), progress=False)
    with pytest.raises(ValueError, match="no test problems"):
        evaluate(FakeTask(), [], FakeBackend(answers), progress=False)

    class ShortBackend(FakeBackend):
        def generate(self, prompts, sampling, progress=True):
            return super().generate(prompts, sampling)[:-1]

    with pytest.raises(RuntimeError, match="9 results for 10 prompts"):
        evaluate(FakeTask(), problems, ShortBackend(answers), progress=False)


def test_evaluate_with_the_real_gsm8k_task():
    from sot.tasks import get_task

    task = get_task("gsm8k")
    problems = [task.from_record({"question": f"Tom has {i} apples and buys {i}. How many now?",
                                  "answer": f"{i}+{i}={2 * i}\n#### {2 * i}"}, id=f"gsm8k/test/{i}", split="test")
                for i in range(1, 5)]
    answers = {p.question: f"He has {2 * int(p.answer)} now. The final answer is {2 * int(p.answer)}."
               for p in problems[:2]}
    answers.update({p.question: f"So the total is \\boxed{{{p.answer}}}." for p in problems[2:]})
    rows, summary = evaluate(task, problems, FakeBackend(answers), style="chat", progress=False, n_boot=200)
    assert [r["correct"] for r in rows] == [False, False, True, True]
    assert summary["strict"] == 0.5 and summary["task"] == "gsm8k"


def test_evaluate_end_to_end_with_the_transformers_backend(tiny_model):
    from sot.llm import get_backend

    problems, _ = ten_problems()
    backend = get_backend("transformers", tiny_model, device="cpu", dtype="float32", batch_size=5)
    rows, summary = evaluate(FakeTask(), problems[:4], backend, style="chat", max_new_tokens=6,
                             progress=False, n_boot=100)
    assert len(rows) == 4 and all(0 < r["n_tokens"] <= 6 for r in rows)
    assert summary["strict"] == 0.0  # a random tiny model does not write "#### 2i"
    assert summary["generation"]["tokens_per_s"] > 0 and "model" in summary["backend"]


def test_build_prompts_uses_task_hooks():
    problems, _ = ten_problems()
    chat, stop = build_prompts(FakeTask(), problems[:1], "chat")
    assert chat == [[{"role": "user", "content": "What is 0 + 0?"}]] and stop == ()


def rows_for(ids, correct):
    return [{"id": i, "completion": "", "extracted": "1", "correct": c, "n_tokens": 1, "finish_reason": "stop"}
            for i, c in zip(ids, correct)]


def test_compare_to_reference_aligns_ids():
    ids = [f"p{i}" for i in range(20)]
    h = [True] * 5 + [False] * 5 + [False] * 8 + [True] * 2
    g = [True] * 5 + [False] * 5 + [True] * 8 + [False] * 2
    shuffled = list(zip(ids, g))[::-1]  # G rows in another order: compared by id, not position
    out = compare_to_reference({"H": rows_for(ids, h), "G": rows_for(*zip(*shuffled))}, n_boot=500)
    assert set(out) == {"G"}
    assert out["G"]["mcnemar_p"] == 0.109375 and out["G"]["diff"] == pytest.approx(0.3)
    assert out["G"] == paired_comparison(h, g, n_boot=500)


def test_compare_to_reference_errors():
    ids = ["a", "b", "c"]
    with pytest.raises(ValueError, match="'G' and reference 'H'.*1 ids missing.*'c'"):
        compare_to_reference({"H": rows_for(ids, [1, 0, 1]), "G": rows_for(["a", "b", "d"], [1, 1, 1])})
    with pytest.raises(ValueError, match="reference set 'H' not among"):
        compare_to_reference({"G": rows_for(ids, [1, 0, 1])})
    with pytest.raises(ValueError, match="duplicate problem id 'a'"):
        compare_to_reference({"H": rows_for(["a", "a"], [1, 0])})
    with pytest.raises(ValueError, match="missing field 'correct'"):
        compare_to_reference({"H": [{"id": "a"}]})


def test_accuracy_record_has_the_plot_columns():
    problems, answers = ten_problems()
    _, summary = evaluate(FakeTask(), problems, FakeBackend(answers), progress=False, n_boot=100)
    cmp = {"diff": 0.1, "diff_lo": -0.1, "diff_hi": 0.3, "mcnemar_p": 0.5}
    rec = accuracy_record("fake", "tiny", "G", summary, cmp)
    assert {"task", "student", "set", "strict", "strict_lo", "strict_hi", "authors", "n", "delta_vs_H",
            "p_vs_H"} <= set(rec)
    assert rec["delta_vs_H"] == 0.1 and rec["p_vs_H"] == 0.5 and rec["strict"] == 0.7
    assert accuracy_record("fake", "tiny", "H", summary)["p_vs_H"] is None
