"""sot.tasks and sot.prompts: registry, splits, answer extraction, equivalence, prompts, bad input."""
from __future__ import annotations

import json
import threading
import time

import pytest

from sot import prompts
from sot.io import DataError
from sot.tasks import TASK_NAMES, Grade, Problem, get_task
from sot.tasks import answers, equivalence
from sot.tasks.mbpp import build_program, extract_code, functions_under_test

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
    # the message names the missing file, the setting it came from, the layout, and both fixes
    with pytest.raises(DataError, match=r"gsm8k/train\.jsonl is missing.*data_dir.*gsm8k/\{train,test\}\.jsonl"
                                        r".*SOT_DATA_DIR.*data_dir: null"):
        get_task("gsm8k").load_split("train", tmp_path)
    with pytest.raises(DataError, match=r"math train: .*math/MATH/\{train,test\}.*data_dir: null"):
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
    # the last statement by position wins, whatever its marker
    ("\\boxed{7}\nThe final answer is 8\n#### 9", "9"),
    ("#### 9\nThe final answer is 8", "8"),
    ("The answer is 8. Final Answer: 9\nthen \\boxed{7}", "7"),
    ("the final answer is 15 gallons * 8\n#### 120", "120"),
    ("So, the final answer is $x$.", "x"),                      # lowercase, mid-line
    ("**Final Answer:** $\\frac{1}{2}$", "\\frac{1}{2}"),
    ("**Final Answer**\n\n$$\\frac{1}{2}$$", "\\frac{1}{2}"),    # label, answer on the next line
    ("Answer: 7", "7"), ("- **Answer:** 7 apples", "7 apples"),
    ("\\boxed{2} and \\boxed{3}", "2, 3"), ("$x = \\boxed{2}$ or $x = \\boxed{-3}$", "2, -3"),
    ("\\boxed{x+11} or \\boxed{11+x}", "11+x"),                  # one answer written two ways
    ("\\boxed{2}. Wait, that is wrong.\n\\boxed{3}", "3"),        # text between: a correction, not a list
    ("The answer is $2$ or $3$.", "2 or 3"),
    ("Let's check whether the answer is 5: it is not.", None),  # a hypothesis
    ("The answer is 5. Checking: yes, the answer is correct.", "5"),  # a verdict is no answer
    ("#### Step 2: add\nthen 5", None), ("#### 2. Add them\nthen", None),  # Markdown headers
    ("The answer is 5 because 2 + 3 = 5.", "5"),
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
    assert answers.extract_answer("the answer is " * 20_000) is None       # 20,000 empty statements
    assert answers.extract_answer("The answer is " + "x" * 200_000) is None  # one huge span
    assert answers.extract_answer("\\boxed{1} " * 20_000) == "1"
    assert time.time() - start < 3


def test_last_number_fallback_only_when_asked():
    assert answers.extract_answer("she earns 12 then 18 dollars") is None
    assert answers.extract_answer("she earns 12 then 18 dollars", last_number_fallback=True) == "18"
    # numbers in Markdown header lines are not answers
    assert answers.extract_answer("#### Step 1: count\n12 apples\n#### Step 2: done", last_number_fallback=True) == "12"


def test_last_boxed_answer_joins_a_run_of_boxes():
    assert answers.last_boxed_answer("are $\\boxed{(-2,18)}$ and $\\boxed{(8,38)}$.") == "(-2,18), (8,38)"
    assert answers.last_boxed_answer("so \\boxed{1}. Another way: ... \\boxed{1}.") == "1"
    assert answers.last_boxed_answer("\\boxed{} nothing") is None


@pytest.mark.parametrize("span,gold,expected", [
    ("84 * 7 = 588", "588", "588"), ("83 + 1 = 84", "84", "84"), ("x = 5", "5", "5"),
    ("x = 2 or x = 3", "2, 3", "2, 3"), ("y = 2x + 3", "y=2x+3", "y = 2x + 3"),  # gold an equation: whole
    ("x \\le 5", "5", "x \\le 5"), ("a <= 5", "5", "a <= 5"), ("12", "12", "12"),
])
def test_after_equals(span, gold, expected):
    assert equivalence.after_equals(span, gold) == expected


@pytest.mark.parametrize("gold,pred,same", [
    ("\\frac{1}{2}", "0.5", True), ("0.5", "\\frac{1}{2}", True), ("1000", "1,000", True),
    ("1,000", "1000", True), ("18", "\\$18", True), ("18", "18.00", True), ("-3", "-3", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", True), ("x^2+2x+1", "(x+1)^2", True),
    ("\\dfrac{3}{4}", "\\frac34", True), ("2", "3", False), ("1000", "100", False), ("\\frac{1}{2}", "0.51", False),
    ("5", None, False), ("5", "", False), ("5", "5" * 2000, False),
    ("90", "90^\\circ", True), ("90", "90°", True), ("90^\\circ", "90", True), ("90", "91^\\circ", False),
    ("\\frac{1}{3}", "0.\\overline{3}", True), ("\\frac{1}{6}", "0.1\\overline{6}", True),
    ("\\frac{1}{3}", "0.\\overline{6}", False),
    ("\\text{(C)}", "\\text{(C) Plane}", True), ("\\text{(C)}", "C", True), ("C", "(C)", True),
    ("\\text{(C)}", "\\text{(D) Cylinder}", False), ("\\text{(C)}", "(C) or (D)", False),
    ("\\text{(C)}", "Plane", False),
    ("64\\%", "64", True), ("64", "64\\%", True), ("64\\%", "0.64", False),
    ("-2 \\text{ or } -12", "-12 or -2", True), ("2, 3", "2 and 3", True), ("2", "2 or 3", False),
    ("10", "10 cm", True), ("10", "10\\text{ cm}", True), ("10", "11 cm", False),
])
def test_equivalence(gold, pred, same):
    assert answers.equivalent(gold, pred) is same


def test_pathological_answer_cannot_hang_grading(monkeypatch):
    monkeypatch.setattr(equivalence, "PARSE_TIMEOUT_S", 1)
    monkeypatch.setattr(equivalence, "VERIFY_TIMEOUT_S", 1)
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
    ("The answer is 3 + 2 = 5.", True, "5"), ("#### 5\nWait, he ate one. The answer is 4.", False, "4"),
    ("The answer is 5 or 6.", False, "5 or 6"), ("The answer is \\boxed{5\\%}", True, "5\\%"),
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
    # the block that defines the tested function f, not the last block
    ("```python\ndef f():\n    return 1\n```\nUsage:\n```python\nprint(f())\n```", "def f():\n    return 1"),
    ("```python\ndef f():\n    return 0\n```\nFixed:\n```python\ndef f():\n    return 1\n```\n```python\nf()\n```",
     "def f():\n    return 1"),
    # with the imports and helpers it needs from other blocks
    ("```python\nimport math\n```\n```python\ndef f():\n    return math.pi\n```",
     "import math\n\ndef f():\n    return math.pi"),
    ("```python\ndef g():\n    return 1\n```\n```python\ndef f():\n    return g()\n```",
     "def g():\n    return 1\n\ndef f():\n    return g()"),
    # no block defines f: all Python blocks joined
    ("```python\nx = 1\n```\nthen\n```\nprint(1)\n```\n```python\ny = 2\n```", "x = 1\n\nprint(1)\n\ny = 2"),
    ("```\nz = 3\n```", "z = 3"), ("```python\n  def f():\n      return 1\n```", "def f():\n    return 1"),
    ("```python\ndef g():\n    return 2\n", "def g():\n    return 2"),
    ("def h():\n    return 3", "def h():\n    return 3"),
    ("Here is the code:\ndef f():\n    return 3\nIt returns three.", "def f():\n    return 3"),
    ("", None), ("```python\n\n```", None),
])
def test_mbpp_extract_code(completion, code):
    assert extract_code(completion, {"f"}) == code


def test_mbpp_functions_under_test():
    tests = ["assert math.isclose(area(2), 3.14)", "assert set(sim((3, 4), (5, 4))) == set((4,))"]
    assert functions_under_test(tests) == {"area", "sim"}


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


# --- the authors' rules (sot.tasks.authors) ------------------------------------------------------------
@pytest.mark.parametrize("name,record,completion,correct,counted", [
    ("gsm8k", GSM8K_RECORD, "3 + 2 = 5 apples.\n#### 5", True, True),
    ("gsm8k", GSM8K_RECORD, "The answer is $6$.", False, True),
    ("gsm8k", GSM8K_RECORD, "I do not know.", False, False),       # nothing parses: left out
    ("gsm8k", GSM8K_RECORD, "", False, False),
    ("math", MATH_RECORD, "so \\boxed{0.5}", True, True),
    ("math", MATH_RECORD, "Final Answer: The final answer is $\\frac{1}{3}$. I hope it is correct.", False, True),
    ("math", MATH_RECORD, "it is one half", False, False),
])
def test_grade_authors_math_verify_rule(name, record, completion, correct, counted):
    task = get_task(name)
    g = task.grade_authors(task.from_record(record), completion)
    assert (g.correct, g.extracted is not None) == (correct, counted)


def test_grade_authors_counts_a_verify_error_as_wrong(monkeypatch):
    import math_verify

    def broken(*args, **kwargs):
        raise RuntimeError("verify failed")

    monkeypatch.setattr(math_verify, "verify", broken)
    task = get_task("math")
    g = task.grade_authors(task.from_record(MATH_RECORD), "\\boxed{0.5}")
    assert g.correct is False and g.extracted is not None  # in their denominator, and wrong


def test_grade_authors_many_checks_lengths_and_loops():
    task = get_task("gsm8k")
    p = task.from_record(GSM8K_RECORD)
    assert [g.correct for g in task.grade_authors_many([p, p], ["#### 5", "#### 6"])] == [True, False]
    with pytest.raises(ValueError, match="2 problems but 1 completions"):
        task.grade_authors_many([p, p], ["x"])


def test_mbpp_authors_code_and_runner():
    from sot.tasks import authors

    assert authors.mbpp_code("Sure:\n```python\ndef f():\n    return 1\n```\nDone") == (
        "Sure:\n\ndef f():\n    return 1\n\nDone")  # fences dropped, the prose stays
    assert authors.mbpp_code("python\nx = 1") == "x = 1"
    assert not authors.mbpp_compiles(authors.mbpp_code("Sure:\n```python\ndef f():\n    return 1\n```\nDone"))
    runner = authors.mbpp_runner("def f():\n    return 1", {"test_setup_code": "", "test_list": ["assert f() == 1"]})
    assert "    def f():\n        return 1" in runner and "import re" in runner
    compile(runner, "runner", "exec")
    with pytest.raises(SyntaxError):  # their defect, kept: a non-empty setup is pasted unindented
        compile(authors.mbpp_runner("x = 1", {"test_setup_code": "y = 2", "test_list": []}), "runner", "exec")


def test_mbpp_grade_authors_in_the_sandbox(data_dir):
    pytest.importorskip("sot.sandbox")
    task = get_task("mbpp")
    p = task.load_split("test", data_dir)[0]
    completions = [f"```python\n{p.reference}\n```",               # fenced code: passes
                   p.reference + "\nprint('done')",                 # prints: their stdout check fails it
                   f"Here is the code:\n```python\n{p.reference}\n```",  # the prose stays: syntax error
                   "", "def f(:\n  pass", p.reference + "\nraise SystemExit(0)"]
    grades = task.grade_authors_many([p] * len(completions), completions, workers=2)
    assert [g.correct for g in grades] == [True, False, False, False, False, False]
    assert all(g.extracted is not None for g in grades)  # MBPP: every item is in their denominator
    assert task.grade_authors(p, p.reference) == Grade(True, p.reference.strip())
    strict = task.grade_many([p] * 3, completions[:3], workers=2)
    assert [g.correct for g in strict] == [True, True, True]


# --- prompts --------------------------------------------------------------------------------------------
class FakeTokenizer:
    chat_template = "fake"

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        assert add_generation_prompt and not tokenize
        return f"<user>{messages[0]['content']}</user><assistant>"


def test_render_styles():
    assert prompts.render("Q?", "plain") == "Problem:\nQ?\n\nSolution:\n"
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
