"""sot.tasks and sot.prompts: registry, splits, answer extraction, equivalence, prompts, bad input."""
from __future__ import annotations

import json
import threading
import time

import pytest

from sot import prompts
from sot.io import DataError
from sot.tasks import TASK_NAMES, Grade, Problem, get_task
from sot.tasks import answers
from sot.tasks.mbpp import build_program, extract_code

GSM8K_RECORD = {"question": "Tom has 3 apples and buys 2 more. How many apples does he have?",
                "answer": "Tom has 3 + 2 = <<3+2=5>>5 apples.\n#### 5"}
MATH_RECORD = {"problem": "What is $1/2 + 0$?", "solution": "It is $\\boxed{\\frac{1}{2}}$.",
               "level": "Level 1", "type": "Algebra"}


# --- registry, splits, Problem -------------------------------------------------------------------
def test_get_task_names_every_task_and_rejects_unknown():
    for name in TASK_NAMES:
        assert get_task(name).name == name
    with pytest.raises(ValueError, match="gsm8k, math, countdown, mbpp"):
        get_task("gsm9k")


@pytest.mark.parametrize("name,valid", [("gsm8k", "train, test"), ("math", "train, test, test_full"),
                                        ("mbpp", "train, test, validation, prompt"), ("countdown", "train, test")])
def test_unknown_split_names_valid_ones(name, valid, data_dir):
    with pytest.raises(ValueError, match=f"valid: {valid}"):
        get_task(name).load_split("dev", data_dir)


def test_problem_round_trips_through_dict():
    p = get_task("gsm8k").from_record(GSM8K_RECORD, id="gsm8k/test/0")
    assert Problem.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    with pytest.raises(ValueError, match="missing field 'reference'"):
        Problem.from_dict({k: v for k, v in p.to_dict().items() if k != "reference"})


def test_from_record_without_id_gives_stable_content_id():
    task = get_task("gsm8k")
    a, b = task.from_record(GSM8K_RECORD), task.from_record(dict(GSM8K_RECORD))
    assert a.id == b.id and a.id.startswith("gsm8k/train/")
    assert get_task("math").from_record({**MATH_RECORD, "unique_id": "test/algebra/7.json",
                                         "answer": "\\frac{1}{2}"}).id == "math/test/algebra/7"


@pytest.mark.parametrize("name,split,n", [("gsm8k", "train", 7473), ("gsm8k", "test", 1319),
                                          ("math", "train", 7498), ("math", "test", 500), ("math", "test_full", 5000),
                                          ("mbpp", "prompt", 10), ("mbpp", "test", 500), ("mbpp", "validation", 90),
                                          ("mbpp", "train", 374)])
def test_split_sizes_and_unique_ids(name, split, n, data_dir):
    problems = get_task(name).load_split(split, data_dir)
    assert len(problems) == n  # MATH train: 7,500 minus the 2 upstream records with an empty \boxed{}
    assert len({p.id for p in problems}) == n
    assert all(p.task == name and p.reference and p.question for p in problems)


def test_ids_follow_the_documented_scheme(data_dir):
    assert get_task("gsm8k").load_split("test", data_dir)[12].id == "gsm8k/test/12"
    assert get_task("math").load_split("test", data_dir)[0].id == "math/test/precalculus/807"
    assert get_task("mbpp").load_split("test", data_dir)[0].id == "mbpp/11"


def test_limit_takes_a_seeded_subset_in_dataset_order(data_dir):
    task = get_task("gsm8k")
    full = [p.id for p in task.load_split("test", data_dir)]
    a = [p.id for p in task.load_split("test", data_dir, limit=20, seed=0)]
    assert a == [p.id for p in task.load_split("test", data_dir, limit=20, seed=0)]
    assert a != [p.id for p in task.load_split("test", data_dir, limit=20, seed=1)]
    assert len(a) == 20 and a == sorted(a, key=full.index) and a != full[:20]


def test_data_dir_comes_from_the_environment(data_dir, monkeypatch):
    monkeypatch.setenv("SOT_DATA_DIR", str(data_dir))
    assert len(get_task("mbpp").load_split("prompt")) == 10


def test_stop_strings_never_occur_in_references(data_dir):
    for name, split in [("gsm8k", "train"), ("math", "train"), ("mbpp", "train"), ("countdown", "test")]:
        task = get_task(name)
        for p in task.load_split(split, data_dir, limit=None if name != "countdown" else 200):
            assert not any(s in p.reference for s in task.stop), p.id


# --- bad input ------------------------------------------------------------------------------------
def _write_gsm8k(tmp_path, lines):
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text("\n".join(lines) + "\n")


def test_malformed_json_line_names_file_and_line(tmp_path):
    _write_gsm8k(tmp_path, [json.dumps(GSM8K_RECORD), '{"question": "x", "answer": '])
    with pytest.raises(DataError, match=r"gsm8k/test\.jsonl:2: not valid JSON"):
        get_task("gsm8k").load_split("test", tmp_path)


def test_missing_field_names_file_line_and_field(tmp_path):
    _write_gsm8k(tmp_path, [json.dumps(GSM8K_RECORD), json.dumps({"question": "x"})])
    with pytest.raises(DataError, match=r"test\.jsonl:2: missing field 'answer'"):
        get_task("gsm8k").load_split("test", tmp_path)


def test_gsm8k_answer_without_hashes_names_line(tmp_path):
    _write_gsm8k(tmp_path, [json.dumps({"question": "x", "answer": "5"})])
    with pytest.raises(DataError, match=r"test\.jsonl:1: field 'answer' has no '#### <number>'"):
        get_task("gsm8k").load_split("test", tmp_path)


def test_math_file_missing_field_names_file_and_field(tmp_path):
    folder = tmp_path / "math" / "MATH" / "train" / "algebra"
    folder.mkdir(parents=True)
    (folder / "3.json").write_text(json.dumps({"problem": "x", "level": "Level 1"}))
    with pytest.raises(DataError, match=r"algebra/3\.json: missing field 'solution'"):
        get_task("math").load_split("train", tmp_path)
    (folder / "3.json").write_text('{"problem": "x",')
    with pytest.raises(DataError, match=r"algebra/3\.json:1: not valid JSON"):
        get_task("math").load_split("train", tmp_path)


def test_math500_and_mbpp_missing_fields(tmp_path):
    (tmp_path / "math").mkdir()
    (tmp_path / "math" / "math500_test.jsonl").write_text(json.dumps(MATH_RECORD) + "\n")
    with pytest.raises(DataError, match=r"math500_test\.jsonl:1: missing field 'answer'"):
        get_task("math").load_split("test", tmp_path)
    (tmp_path / "mbpp").mkdir()
    (tmp_path / "mbpp" / "mbpp.jsonl").write_text(json.dumps({"text": "x", "task_id": 11}) + "\n")
    with pytest.raises(DataError, match=r"mbpp\.jsonl:1: missing field 'code'"):
        get_task("mbpp").load_split("test", tmp_path)


def test_missing_data_file_says_so(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        get_task("gsm8k").load_split("train", tmp_path)
    with pytest.raises(DataError, match="MATH folder not found"):
        get_task("math").load_split("train", tmp_path)


# --- answer extraction ------------------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ("so $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
    ("first \\boxed{1} then \\boxed{\\left\\{ a, \\{b\\} \\right\\}} end", "\\left\\{ a, \\{b\\} \\right\\}"),
    ("nested \\boxed{\\sqrt{\\frac{a}{b}}}", "\\sqrt{\\frac{a}{b}}"),
    ("space form \\boxed 2$.", "2"),
    ("Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.", "\\frac{3}{4}"),
    ("The final answer is 12.", "12"),
    ("work\n#### 1,000", "1,000"),
    ("So the answer is $42$.\nThanks", "42"),
    ("\\boxed{7}\nThe final answer is 8\n#### 9", "7"),
    ("The final answer is 8\n#### 9", "8"),
    ("the final answer is 15 gallons * 8\n#### 120", "120"),  # Minerva's form starts with a capital T
    ("no answer here", None),
    ("", None),
])
def test_extract_answer_order(text, expected):
    assert answers.extract_answer(text) == expected


def test_unbalanced_last_boxed_falls_back_to_previous():
    assert answers.last_boxed("\\boxed{3} and \\boxed{4") == "3"


def test_adversarial_text_extracts_quickly():
    start = time.time()
    assert answers.last_boxed("\\boxed{" * 50_000) is None
    assert answers.last_boxed("\\boxed{1} " + "\\boxed{" + "x" * 5000 + "}") == "1"  # too long: skipped
    assert answers.extract_answer("1 " * 100_000, last_number_fallback=True) == "1"
    assert time.time() - start < 2


def test_last_number_fallback_only_when_asked():
    assert answers.extract_answer("she earns 12 then 18 dollars") is None
    assert answers.extract_answer("she earns 12 then 18 dollars", last_number_fallback=True) == "18"


@pytest.mark.parametrize("gold,pred,same", [
    ("\\frac{1}{2}", "0.5", True), ("0.5", "\\frac{1}{2}", True), ("1000", "1,000", True),
    ("1,000", "1000", True), ("18", "\\$18", True), ("18", "18.00", True), ("-3", "-3", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", True), ("x^2+2x+1", "(x+1)^2", True),
    ("\\dfrac{3}{4}", "\\frac34", True), ("2", "3", False), ("1000", "100", False), ("\\frac{1}{2}", "0.51", False),
    ("5", None, False), ("5", "", False), ("5", "5" * 2000, False),
])
def test_equivalence(gold, pred, same):
    assert answers.equivalent(gold, pred) is same


def test_pathological_answer_cannot_hang_grading(monkeypatch):
    monkeypatch.setattr(answers, "PARSE_TIMEOUT_S", 1)
    monkeypatch.setattr(answers, "VERIFY_TIMEOUT_S", 1)
    start = time.time()
    assert answers.equivalent("2", "9^{9^{9^{9}}}") is False
    assert time.time() - start < 8


def test_equivalence_works_outside_the_main_thread():
    out = []
    t = threading.Thread(target=lambda: out.append(answers.equivalent("\\frac{1}{2}", "0.5")))
    t.start()
    t.join(30)
    assert out == [True]


# --- grading per task --------------------------------------------------------------------------------
@pytest.mark.parametrize("completion,correct,extracted", [
    ("3 + 2 = 5\n#### 5", True, "5"), ("#### $5.00", True, "$5.00"), ("The answer is 5 apples.", True, "5 apples"),
    ("He has \\boxed{5}.", True, "5"), ("3+2 makes 5", True, "5"), ("#### 6", False, "6"), ("no idea", False, None),
])
def test_gsm8k_grade(completion, correct, extracted):
    task = get_task("gsm8k")
    assert task.grade(task.from_record(GSM8K_RECORD), completion) == Grade(correct, extracted)


@pytest.mark.parametrize("completion,correct", [
    ("so \\boxed{0.5}", True), ("The final answer is $\\frac12$. I hope it is correct.", True),
    ("#### 1/2", True), ("\\boxed{\\frac{1}{3}}", False), ("it is one half", False),
])
def test_math_grade(completion, correct):
    task = get_task("math")
    assert task.grade(task.from_record(MATH_RECORD), completion).correct is correct


def test_math_record_without_boxed_answer_is_a_data_error():
    with pytest.raises(DataError, match="no \\\\boxed"):
        get_task("math").from_record({"problem": "x", "solution": "it is 3"}, id="math/train/x/1")


def test_grade_many_pool_matches_the_loop():
    task = get_task("math")
    p = task.from_record(MATH_RECORD)
    completions = ["\\boxed{0.5}", "\\boxed{2}", "nothing", "#### 1/2"] * 3
    loop = task.grade_many([p] * 12, completions)
    assert task.grade_many([p] * 12, completions, workers=2) == loop
    assert [g.correct for g in loop[:4]] == [True, False, False, True]
    with pytest.raises(ValueError, match="2 problems but 1 completions"):
        task.grade_many([p, p], ["x"])


# --- MBPP extraction (the sandbox run is tested in test_gold.py) --------------------------------------
@pytest.mark.parametrize("completion,code", [
    ("Here:\n```python\ndef f():\n    return 1\n```\nDone.", "def f():\n    return 1"),
    ("```python\nx = 1\n```\nthen\n```\nprint(1)\n```\n```python\ny = 2\n```", "y = 2"),
    ("```\nz = 3\n```", "z = 3"),
    ("```python\ndef g():\n    return 2\n", "def g():\n    return 2"),
    ("def h():\n    return 3", "def h():\n    return 3"),
    ("", None), ("```python\n\n```", None),
])
def test_mbpp_extract_code(completion, code):
    assert extract_code(completion) == code


def test_mbpp_problem_and_program(data_dir):
    task = get_task("mbpp")
    p = task.load_split("test", data_dir)[0]
    assert "\r" not in p.reference and p.answer is None
    assert all(t in p.question for t in p.record["test_list"]) and "```python" in p.question
    program = build_program({"test_setup_code": "x = f()", "test_list": ["assert x == 1"]}, "def f(): return 1")
    assert program == "def f(): return 1\n\nx = f()\n\nassert x == 1\n"


def test_mbpp_grade_with_sandbox(data_dir):
    pytest.importorskip("sot.sandbox")
    task = get_task("mbpp", timeout=3.0)
    p = task.load_split("test", data_dir)[0]
    assert task.grade(p, f"```python\n{p.reference}\n```") == Grade(True, p.reference)
    assert task.grade(p, "```python\ndef nothing(): pass\n```").correct is False
    grades = task.grade_many([p, p, p], [p.reference, "", "while True: pass"])
    assert [g.correct for g in grades] == [True, False, False] and grades[1].extracted is None


# --- prompts --------------------------------------------------------------------------------------------
class FakeTokenizer:
    chat_template = "fake"

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        assert add_generation_prompt and not tokenize
        return f"<user>{messages[0]['content']}</user><assistant>"


def test_render_styles():
    assert prompts.render("Q?", "plain") == "Q?\nSolution:"
    assert prompts.render("Q?", "chat", FakeTokenizer()) == "<user>Q?</user><assistant>"
    with pytest.raises(ValueError, match="valid: plain, chat"):
        prompts.render("Q?", "fewshot")
    with pytest.raises(ValueError, match="needs a tokenizer"):
        prompts.render("Q?", "chat")


def test_chat_prompt_with_real_template(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    task = get_task("gsm8k")
    p = task.from_record(GSM8K_RECORD)
    text = task.prompt(p, "chat", tok)
    assert p.question in text and text.rstrip().endswith("assistant")
    assert task.messages(p) == [{"role": "user", "content": p.question}]


def test_questions_carry_the_answer_format_instruction(data_dir):
    assert prompts.GSM8K_INSTRUCTION in get_task("gsm8k").from_record(GSM8K_RECORD).question
    assert prompts.MATH_INSTRUCTION in get_task("math").from_record(MATH_RECORD).question
    assert "<answer>" in get_task("countdown").from_record({"nums": [1, 2, 3], "target": 6}).question
