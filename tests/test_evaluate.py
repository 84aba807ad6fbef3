"""evaluate(): greedy generation + strict and authors' grading + summary with a fake backend (and once with the
real one); check_rows(): stored rows are validated; panel(): the comparisons of one (task, student), aligned by
problem id and Holm-adjusted together."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest

from sot.evaluate import (ROW_FIELDS, accuracy_record, build_prompts, check_rows, compare, compare_to_reference,
                          evaluate, panel, summarize_rows, trend_record)
from sot.io import DataError
from sot.metrics import bootstrap_ci, holm, paired_comparison, proportion_ci, trend_test


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
    """Answers are "#### N"; no "####" means unparseable. The "authors' rule" keeps only non-negative
    integers (so "#### -1" is left out of their denominator)."""
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

    def grade_authors_many(self, problems, completions, workers=None):
        return [g if g.extracted is not None and g.extracted.isdigit() else FakeGrade(False, None)
                for g in self.grade_many(problems, completions)]


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
    rows, summary = evaluate(FakeTask(), problems, backend, style="chat", max_new_tokens=64, seed=0, progress=False)
    assert [r["id"] for r in rows] == [p.id for p in problems]
    assert all(tuple(r) == ROW_FIELDS for r in rows)
    assert [r["correct"] for r in rows] == [True] * 7 + [False] * 3
    assert rows[9]["extracted"] is None and rows[9]["finish_reason"] == "length"
    assert rows[7]["extracted"] == "-1" and rows[7]["authors_extracted"] is None and not rows[7]["authors_correct"]
    assert [r["authors_correct"] for r in rows] == [True] * 7 + [False] * 3
    assert summary["strict"] == 0.7 and (summary["strict_lo"], summary["strict_hi"]) == proportion_ci(7, 10)
    # the authors' accuracy, its interval and n_parsed come from the authors' fields: 7 of the 7 they keep
    assert (summary["n"], summary["n_parsed"], summary["n_correct"], summary["n_extracted"]) == (10, 7, 7, 9)
    assert summary["authors"] == 1.0 and (summary["authors_lo"], summary["authors_hi"]) == proportion_ci(7, 7)
    assert summary["interval"] == "wilson" and "bootstrap" not in summary    # n_boot = 0: no bootstrap extra
    assert summary["task"] == "fake" and summary["style"] == "chat" and summary["backend"]["backend"] == "fake"
    assert summary["generation"]["tokens"] == sum(r["n_tokens"] for r in rows)
    assert summary["generation"]["n_truncated"] == 1
    assert summarize_rows(check_rows(rows, "rows")) == {k: summary[k] for k in summarize_rows(rows)}
    json.dumps(summary), json.dumps(rows)  # both must be storable as JSON

    (prompts, sampling), = backend.calls
    assert prompts[0] == [{"role": "user", "content": "What is 0 + 0?"}]
    assert (sampling.temperature, sampling.n, sampling.max_new_tokens, tuple(sampling.stop)) == (0.0, 1, 64, ())


def test_evaluate_bootstrap_extra_uses_n_boot_and_seed():
    problems, answers = ten_problems()
    _, summary = evaluate(FakeTask(), problems, FakeBackend(answers), n_boot=500, seed=3, progress=False)
    boot = summary["bootstrap"]
    assert (boot["n_boot"], boot["seed"]) == (500, 3)
    assert boot["strict"] == list(bootstrap_ci([True] * 7 + [False] * 3, n_boot=500, seed=3))
    assert boot["authors"] == list(bootstrap_ci([True] * 7, n_boot=500, seed=3))
    assert (summary["strict_lo"], summary["strict_hi"]) == proportion_ci(7, 10)   # the summary keeps Wilson


def test_evaluate_plain_style_and_batches_give_the_same_rows():
    problems, answers = ten_problems()
    whole, _ = evaluate(FakeTask(), problems, FakeBackend(answers), style="plain", progress=False)
    backend = FakeBackend(answers)
    batched, summary = evaluate(FakeTask(), problems, backend, style="plain", batch_size=3, progress=True)
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

    class ShortAuthors(FakeTask):
        def grade_authors_many(self, problems, completions, workers=None):
            return super().grade_authors_many(problems, completions)[:-1]

    with pytest.raises(RuntimeError, match="grade_authors_many returned 9 grades for 10"):
        evaluate(ShortAuthors(), problems, FakeBackend(answers), progress=False)

    class NoAuthors(FakeTask):   # no silent substitution of the strict grade for the authors' one
        grade_authors_many = None

    with pytest.raises(TypeError):
        evaluate(NoAuthors(), problems, FakeBackend(answers), progress=False)


def test_evaluate_with_the_real_gsm8k_task():
    from sot.tasks import get_task

    task = get_task("gsm8k")
    problems = [task.from_record({"question": f"Tom has {i} apples and buys {i}. How many now?",
                                  "answer": f"{i}+{i}={2 * i}\n#### {2 * i}"}, id=f"gsm8k/test/{i}", split="test")
                for i in range(1, 5)]
    answers = {p.question: f"He has {2 * int(p.answer)} now. The final answer is {2 * int(p.answer)}."
               for p in problems[:2]}
    answers.update({p.question: f"So the total is \\boxed{{{p.answer}}}." for p in problems[2:]})
    rows, summary = evaluate(task, problems, FakeBackend(answers), style="chat", progress=False)
    assert [r["correct"] for r in rows] == [False, False, True, True]
    assert summary["strict"] == 0.5 and summary["task"] == "gsm8k"
    assert [r["authors_correct"] for r in rows] == [g.correct for g in
                                                    task.grade_authors_many(problems, [r["completion"] for r in rows])]
    assert summary["n_parsed"] == sum(r["authors_extracted"] is not None for r in rows)


def test_evaluate_end_to_end_with_the_transformers_backend(tiny_model):
    from sot.llm import get_backend

    problems, _ = ten_problems()
    backend = get_backend("transformers", tiny_model, device="cpu", dtype="float32", batch_size=5)
    rows, summary = evaluate(FakeTask(), problems[:4], backend, style="chat", max_new_tokens=6, progress=False)
    assert len(rows) == 4 and all(0 < r["n_tokens"] <= 6 for r in rows)
    assert summary["strict"] == 0.0  # a random tiny model does not write "#### 2i"
    assert summary["strict_hi"] == pytest.approx(proportion_ci(0, 4)[1]) and summary["strict_hi"] > 0.4  # not [0, 0]
    assert summary["generation"]["tokens_per_s"] > 0 and "model" in summary["backend"]


def test_build_prompts_uses_task_hooks():
    problems, _ = ten_problems()
    chat, stop = build_prompts(FakeTask(), problems[:1], "chat")
    assert chat == [[{"role": "user", "content": "What is 0 + 0?"}]] and stop == ()


def rows_for(ids, correct):
    return [{"id": i, "completion": "", "extracted": "1", "correct": bool(c), "authors_extracted": "1",
             "authors_correct": bool(c), "n_tokens": 1, "finish_reason": "stop"} for i, c in zip(ids, correct)]


def test_check_rows_names_the_file_line_and_field():
    rows = rows_for(["a", "b", "c"], [1, 0, 1])
    assert check_rows(rows, "x.jsonl") == rows
    bad = [dict(r) for r in rows]
    bad[1]["correct"] = "False"
    with pytest.raises(DataError, match=r"x.jsonl:12: field 'correct' is 'False' \(str\); expected true or false"):
        check_rows(bad, "x.jsonl", lines=[10, 12, 13])
    bad[1]["correct"] = 0
    with pytest.raises(DataError, match=r"x.jsonl:2: field 'correct' is 0 \(int\)"):
        check_rows(bad, "x.jsonl")
    old = [{k: v for k, v in r.items() if not k.startswith("authors_")} for r in rows]
    with pytest.raises(DataError, match=r"x.jsonl:1: no field 'authors_correct'.*rerun `dvc repro evaluate`"):
        check_rows(old, "x.jsonl")
    with pytest.raises(DataError, match=r"x.jsonl:2: duplicate problem id 'a' \(first at line 1\)"):
        check_rows(rows_for(["a", "a"], [1, 0]), "x.jsonl")
    with pytest.raises(DataError, match="'authors_extracted' is 3"):
        check_rows([dict(rows[0], authors_extracted=3)], "x.jsonl")
    with pytest.raises(DataError, match="missing field 'id'"):
        check_rows([{k: v for k, v in rows[0].items() if k != "id"}], "x.jsonl")


IDS = [f"p{i}" for i in range(20)]
H = [True] * 5 + [False] * 5 + [False] * 8 + [True] * 2
G = [True] * 5 + [False] * 5 + [True] * 8 + [False] * 2


def test_compare_aligns_ids_and_reports_other_problems():
    shuffled = list(zip(IDS, G))[::-1]  # G rows in another order: compared by id, not position
    out = compare_to_reference({"H": rows_for(IDS, H), "G": rows_for(*zip(*shuffled))})
    assert set(out) == {"G"}
    assert out["G"] == paired_comparison(H, G)
    assert out["G"]["mcnemar_p"] == pytest.approx(0.109375) and out["G"]["diff"] == pytest.approx(0.3)
    other = compare(rows_for(["a", "b", "d"], [1, 1, 1]), rows_for(["a", "b", "c"], [1, 0, 1]), "G", "H")
    assert set(other) == {"reason"} and "G and H were evaluated on different problems: 1 of H's ids missing" \
        in other["reason"] and "['c']" in other["reason"]
    assert compare_to_reference({"G": rows_for(IDS, G)}) == {"G": {"reason": "reference set H was not evaluated"}}


def panel_rows(seed: int = 0, sets=("base", "H", "G", "W", "F0", "F50", "F100")) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    easy = rng.random(30)
    return {s: rows_for([f"p{i}" for i in range(30)], rng.random(30) < easy) for s in sets}


def test_panel_holm_family_with_an_evaluated_f0():
    rows = panel_rows()
    out = panel(rows, f0="F0", n_perm=300, seed=5)
    vs_h, vs_f0, trend = out["vs_reference"], out["vs_f0"], out["trend"]
    assert set(vs_h) == {"base", "G", "W", "F0", "F50", "F100"} and set(vs_f0) == {"F50", "F100"}
    assert out["n_tests"] == 6 + 2 + 1                       # every set vs H, F50 and F100 vs F0, the trend
    family = [vs_h[s] for s in vs_h] + [vs_f0["F50"], vs_f0["F100"]]
    raw = [c["mcnemar_p"] for c in family] + [trend["p"]]
    assert [c["p_holm"] for c in family] + [trend["p_holm"]] == pytest.approx(holm(raw))
    by_id = lambda s: [r["correct"] for r in rows[s]]
    assert vs_f0["F50"]["diff"] == pytest.approx(paired_comparison(by_id("F0"), by_id("F50"))["diff"])
    expected = trend_test(list(zip(by_id("F0"), by_id("F50"), by_id("F100"))), [0, 50, 100], n_perm=300, seed=5)
    assert {k: trend[k] for k in expected} == expected and trend["sets"] == ["F0", "F50", "F100"]


def test_panel_with_h_as_f0_counts_each_comparison_once_and_survives_a_mismatch():
    rows = panel_rows(sets=("H", "G", "F50", "F100"))
    rows["F100"] = rows["F100"][:-1]                             # F100 was evaluated on other problems
    out = panel(rows, f0="H", n_perm=300)
    assert out["vs_f0"]["F50"] is out["vs_reference"]["F50"]      # F0 is H: the same test
    assert "reason" in out["vs_reference"]["F100"] and "reason" in out["vs_f0"]["F100"]
    assert out["n_tests"] == 2 + 1                               # G and F50 vs H, the trend (H, F50)
    assert out["trend"]["levels"] == [0.0, 50.0] and "F100" in out["trend"]["excluded"]
    rec = accuracy_record("fake", "tiny", "F100", summarize_rows(rows["F100"]), out["vs_reference"]["F100"],
                          out["vs_f0"]["F100"], "H")
    assert rec["delta_vs_H"] is None and rec["p_vs_H_holm"] is None and "different problems" in rec["note_vs_H"]
    rec = accuracy_record("fake", "tiny", "F50", summarize_rows(rows["F50"]), out["vs_reference"]["F50"],
                          out["vs_f0"]["F50"], "H")
    assert rec["delta_vs_F0"] == rec["delta_vs_H"] and rec["p_vs_F0_holm"] == out["vs_reference"]["F50"]["p_holm"]
    assert rec["F0"] == "H" and rec["note_vs_H"] is None
    tr = trend_record("fake", "tiny", out["trend"])
    assert tr["levels"] == "0,50" and tr["f0"] == "H" and "F100: evaluated on other problems" in tr["excluded"]
    no_f0 = panel({"H": rows["H"], "F50": rows["F50"]}, f0="G")
    assert no_f0["trend"] == {"reason": "the 0 % set G was not evaluated", "f0": "G"}
    assert no_f0["vs_f0"]["F50"] == {"reason": "the 0 % set G was not evaluated"}


def test_accuracy_record_has_the_plot_columns():
    problems, answers = ten_problems()
    _, summary = evaluate(FakeTask(), problems, FakeBackend(answers), progress=False)
    cmp = {"diff": 0.1, "diff_lo": -0.1, "diff_hi": 0.3, "mcnemar_p": 0.5, "p_holm": 0.9}
    rec = accuracy_record("fake", "tiny", "G", summary, cmp)
    assert {"task", "student", "set", "strict", "strict_lo", "strict_hi", "authors", "authors_lo", "authors_hi",
            "n", "n_parsed", "delta_vs_H", "delta_H_lo", "delta_H_hi", "p_vs_H", "p_vs_H_holm"} <= set(rec)
    assert (rec["delta_vs_H"], rec["delta_H_lo"], rec["p_vs_H"], rec["p_vs_H_holm"]) == (0.1, -0.1, 0.5, 0.9)
    assert rec["strict"] == 0.7 and rec["n_parsed"] == 7 and rec["F0"] is None and rec["delta_vs_F0"] is None
    assert accuracy_record("fake", "tiny", "H", summary)["p_vs_H"] is None
