"""sot.authors_style: the paper authors' evaluation prompts (pinned against hand-written text), their stop strings
and limits, and the completion format that agrees with them: every gold trace in that format still grades
correct, and the adaptation reaches training examples through sot.sft.data."""
from __future__ import annotations

import itertools
import json

import pytest

from sot import authors_style, prompts
from sot.evaluate import build_prompts
from sot.llm.base import truncate_at_stop
from sot.pipeline import prompts_for, stop_for
from sot.tasks import get_task

GSM8K = {"question": "Ann has 3 apples and buys 4 more. How many apples does she have?",
         "answer": "She has 3+4=<<3+4=7>>7 apples.\n#### 7"}
MATH = {"problem": "What is $1+1$?", "solution": "We have $1+1=\\boxed{2}$."}
COUNTDOWN = {"nums": [3, 5, 7], "target": 22}
MBPP = {"text": "Write a function to add two numbers. ", "code": "def add(a, b):\r\n    return a + b",
        "task_id": 1000, "test_setup_code": "", "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"],
        "challenge_test_list": []}

EXPERT = ('You are a math expert. I am going to give you a math Problem that you need to solve. When you respond, '
          'respond only with the Solution, thinking step by step. At the end of the Solution, when you give your '
          'final answer, write it in the form "Final Answer: The final answer is $answer$. I hope it is correct."')
EXPECTED = {
    "gsm8k": EXPERT + "\n\nProblem:\nAnn has 3 apples and buys 4 more. How many apples does she have?\n\nSolution:",
    "math": EXPERT + "\n\nProblem:\nWhat is $1+1$?\n\nSolution:",
    "countdown": (
        "You are a math expert. I am going to give you a Problem that you need to solve. When you respond, respond "
        "with the Solution, thinking step by step. And return the final answer in <answer> </answer> tags, for "
        "example <answer> (1 + 2) / 3 </answer>.\nProblem:\nUsing the numbers [3, 5, 7], create an equation that "
        "equals 22. You can use basic arithmetic operations (+, -, *, /) and each number can only be used once. "
        "Do not use any other operations or numbers.\n\nSolution:"),
    "mbpp": (
        "You are an expert Python programmer.\nI will give you a programming task description. Your job is to "
        "write a correct, efficient, and clean Python solution. Start directly with the coding solution.\n\n"
        "Requirements:\n- Use only the Python standard library.\n- Your code must strictly satisfy the provided "
        "assertion.\n- Respond with ONLY Python code (no backticks, no comments, no explanations).\n\nProblem:\n"
        "Write a function to add two numbers.\n\nYour code should satisfy the following assertion:\n"
        "assert add(1, 2) == 3\n\nSolution:"),
}
RECORDS = {"gsm8k": GSM8K, "math": MATH, "countdown": COUNTDOWN, "mbpp": MBPP}


def problem(name):
    return get_task(name).from_record(RECORDS[name], id=f"{name}/t/0")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_task_prompt_is_the_authors_text(name):
    p = problem(name)
    assert prompts.render(p.question, "authors", task=name) == EXPECTED[name]
    assert get_task(name).prompt(p, "authors") == EXPECTED[name]
    assert prompts.render(p.question, "plain") != EXPECTED[name]      # the plain style is untouched


def test_stop_strings_and_limits_are_the_authors():
    assert prompts.stop_strings("authors", "math") == ("Problem:",)
    assert prompts.stop_strings("authors", "countdown") == ("Problem:",)
    assert prompts.stop_strings("authors-4shot", "gsm8k") == ("Problem:",)
    assert prompts.stop_strings("authors", "mbpp") == ("Problem:", "<end_of_turn>", "User:", "Observation:",
                                                      "\nclass", "\ndef test", "\nif __name__")
    assert authors_style.MAX_NEW_TOKENS == {"gsm8k": 2048, "math": 2048, "countdown": 4096, "mbpp": 1024}
    assert authors_style.generation_limit("authors", "countdown") == 4096     # evaluate.max_new_tokens: authors
    assert authors_style.generation_limit("auto", "countdown") == "auto"
    assert authors_style.generation_limit(160, "mbpp") == 160
    assert prompts.token_style("authors") == "plain" and prompts.token_style("chat") == "chat"


def test_four_shot_minerva_variant():
    p = problem("math")
    text = prompts.render(p.question, "authors-4shot", task="math")
    assert text.startswith(EXPERT + "\n\nProblem:\nFind the domain of the expression "
                                    "$\\frac{\\sqrt{x-2}}{\\sqrt{5-x}}$.\nSolution:\nThe expressions inside")
    assert ("$x\\ge2$" in text and "n&=480/30=\\boxed{16}\n\\end{align*}\nFinal Answer: The final answer is $16$. "
            "I hope it is correct.\n\nProblem:\nIf the system" in text)
    assert text.endswith("Final Answer: The final answer is $-\\frac{2}{3}$. I hope it is correct.\n\n\nProblem:\n"
                         "What is $1+1$?\n\nSolution:")
    assert text.count("Problem:\n") == 5 and text.count("I hope it is correct.") == 5
    # no few-shot prompt in the authors' MBPP script: zero-shot under either style
    assert prompts.render(problem("mbpp").question, "authors-4shot", task="mbpp") == EXPECTED["mbpp"]


def test_every_mbpp_question_gives_back_its_text_and_first_assert(data_dir):
    task = get_task("mbpp")
    records = [json.loads(line) for line in open(data_dir / "mbpp" / "mbpp.jsonl")]
    for r in records:
        fields = authors_style.problem_fields("mbpp", task.from_record(r).question)
        assert fields == {"text": r["text"].strip(), "assertion": r["test_list"][0].strip()}, r["task_id"]
    assert authors_style.first_assert("assert f(\n  1) == 2\nassert f(2) == 3") == "assert f(\n  1) == 2"


def test_a_question_not_in_our_format_or_no_task_is_an_error():
    with pytest.raises(ValueError, match="instruction"):
        authors_style.prompt("gsm8k", "How many apples?")
    with pytest.raises(ValueError, match="Countdown question"):
        authors_style.prompt("countdown", "Using the numbers 3, 5")
    with pytest.raises(ValueError, match="needs the task"):
        prompts.render("Q", "authors")
    with pytest.raises(ValueError, match="valid: plain, chat, authors"):
        prompts.render("Q", "author")


def test_completion_format_per_task():
    adapt = authors_style.adapt_completion
    sentence = "Final Answer: The final answer is ${}$. I hope it is correct."
    assert adapt("gsm8k", GSM8K["answer"]) == "\nShe has 3+4=<<3+4=7>>7 apples.\n" + sentence.format(7)
    assert adapt("gsm8k", "3 + 4 = 7. The answer is 7.") == "\n3 + 4 = 7. The answer is 7.\n" + sentence.format(7)
    assert adapt("gsm8k", "3 + 4 = 8. The answer is $8.") .endswith(sentence.format(8))   # a W trace keeps its answer
    assert adapt("math", MATH["solution"]) == "\nWe have $1+1=\\boxed{2}$.\n" + sentence.format(2)
    assert adapt("math", "I cannot solve this.") == "\nI cannot solve this."            # no answer: nothing added
    assert adapt("mbpp", "Here:\n```python\ndef add(a, b):\n    return a + b\n```\nDone.") == \
        "\ndef add(a, b):\n    return a + b"
    assert adapt("mbpp", "def add(a, b):\n    return a + b\n") == "\ndef add(a, b):\n    return a + b"
    assert adapt("countdown", "3 * 5 = 15\n<answer> 3 * 5 + 7 </answer>\nThat is 22.") == \
        "\n3 * 5 = 15\n<answer> 3 * 5 + 7 </answer>"
    # a student's own output keeps its leading whitespace; a cut trace keeps its end
    assert adapt("math", " So $\\boxed{2}$.") == " So $\\boxed{2}$.\n" + sentence.format(2)
    assert adapt("math", "So the answer is 2 and", finished=False) == "\nSo the answer is 2 and"
    for name in EXPECTED:
        once = adapt(name, get_task(name).from_record(RECORDS[name]).reference)
        assert adapt(name, once) == once                                                  # idempotent
    assert prompts.adapt_completion("x\n#### 7", "plain", "gsm8k") == "x\n#### 7"         # plain and chat: as is


def _gold(name, data_dir, n):
    task = get_task(name)
    if name == "countdown":
        return task, task.load_split("test", limit=n, seed=0)
    if name == "mbpp":
        return task, [p for p in task.load_split("test", data_dir)
                      if not any(s in "\n" + p.reference for s in authors_style.STOP["mbpp"])][:n]
    return task, task.load_split("test", data_dir)[:n]


@pytest.mark.parametrize("name, n", [("gsm8k", 40), ("math", 40), ("countdown", 20), ("mbpp", 6)])
def test_gold_traces_in_the_authors_format_grade_correct(name, n, data_dir):
    """What a student trained on adapted H would write, cut by the authors' stop strings as at evaluation: our
    strict grader and the authors' rule both accept it (one GSM8K exception, below)."""
    task, problems = _gold(name, data_dir, n)
    texts = [truncate_at_stop(authors_style.adapt_completion(name, p.reference), authors_style.STOP[name])[0]
             for p in problems]
    assert all(g.correct for g in task.grade_many(problems, texts, workers=1)), name
    authors = task.grade_authors_many(problems, texts, workers=1)
    if name == "gsm8k":   # their gold is math-verify's parse of the whole answer text, which misreads some
        from math_verify import parse
        wrong = [p.id for p, a in zip(problems, authors) if not a.correct]
        assert all(str(parse(p.reference)[-1]) != p.answer for p in problems if p.id in wrong), wrong
    else:
        assert all(a.correct for a in authors), name


def test_a_fenced_mbpp_h_trace_becomes_bare_code_that_passes(data_dir):
    task = get_task("mbpp")
    p = task.load_split("test", data_dir)[0]
    fenced = f"```python\n{p.reference.strip()}\n```"
    code = authors_style.adapt_completion("mbpp", fenced)
    assert "```" not in code and code == "\n" + p.reference.strip()
    assert task.grade(p, code).correct and task.grade_authors(p, code).correct


def test_every_caller_renders_and_stops_in_the_authors_style():
    problems = [problem(name) for name in EXPECTED]
    for name, p in zip(EXPECTED, problems):
        sent, stop = build_prompts(get_task(name), [p], "authors")
        assert sent == [EXPECTED[name]] and stop == authors_style.STOP[name]
        assert prompts_for(name, [p], "authors") == [EXPECTED[name]]
        assert stop_for(name, "authors") == authors_style.STOP[name]


def test_training_examples_use_the_authors_prompt_and_format(tiny_model):
    from transformers import AutoTokenizer

    from sot.sft.data import IGNORE, build_dataset

    tok = AutoTokenizer.from_pretrained(tiny_model)
    p = problem("gsm8k")
    record = {"id": p.id, "task": "gsm8k", "prompt": p.question, "completion": p.reference}
    ex = build_dataset([record], tok, "authors", 512).examples[0]
    prompt_ids = [t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab == IGNORE]
    learned = [lab for lab in ex["labels"] if lab != IGNORE]
    assert tok.decode(prompt_ids) == EXPECTED["gsm8k"]
    assert tok.decode(learned[:-1]) == authors_style.adapt_completion("gsm8k", p.reference)
    assert learned[-1] == tok.eos_token_id
    with pytest.raises(ValueError, match=r"record 0 \(id='x', task=None\).*needs the task"):
        build_dataset([{"id": "x", "prompt": p.question, "completion": "7"}], tok, "authors", 512)


def test_gsm8k_gold_traces_the_authors_rule_misreads_are_few(data_dir):
    """How often the authors' rule rejects an adapted GSM8K gold trace (their gold parse misreads the answer
    text): pinned on the first 300 test problems, so a change in the adaptation that makes it worse shows."""
    task = get_task("gsm8k")
    problems = task.load_split("test", data_dir)[:300]
    texts = [authors_style.adapt_completion("gsm8k", p.reference) for p in problems]
    wrong = [p.id for p, a in zip(problems, task.grade_authors_many(problems, texts)) if not a.correct]
    assert len(wrong) <= 2, wrong
    assert all(task.grade(p, t).correct for p, t in itertools.islice(zip(problems, texts), 300))
