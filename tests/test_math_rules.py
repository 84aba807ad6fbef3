"""Issue 26: `#### <LaTeX answer>` is an answer, a header that starts like math but goes on as prose is not;
money and numbers with LaTeX thousands separators (`\\$32,\\!348`, `10{,}000`, `10\\,000`) match a gold of
any of these forms. README "Grading contract", rules 1 and 6."""
from __future__ import annotations

import time

import pytest

from sot.tasks import get_task
from sot.tasks.answers import extract_answer, is_math_line
from sot.tasks.equivalence import normalize, numbers_in, plain_separators

MATH, GSM8K = get_task("math"), get_task("gsm8k")


def math_problem(gold: str):
    return MATH.from_record({"problem": "?", "solution": f"So it is $\\boxed{{{gold}}}$.", "answer": gold,
                             "unique_id": "test/algebra/1.json"})


def gsm8k_problem(gold: str):
    return GSM8K.from_record({"question": "How many?", "answer": f"Some work.\n#### {gold}"})


# --- what follows "####": a math expression or a header ----------------------------------------------------
@pytest.mark.parametrize("line", [
    "72", "$18", "\\$32,\\!348", "**72**", "-3", "\u22123", ".5", "10\\%", "72 dollars", "5 dollars per hour",
    "\\left( 3, \\frac{\\pi}{2} \\right)", "\\frac{1}{2}", "-\\frac{1}{3}", "\\(\\frac{1}{2}\\)", "$\\sqrt{3}$",
    "x = 5", "y = 2x + 3", "(3, -2)", "[-2, 7)", "\\{1, 2\\}", "2\\sqrt{5}", "\\pi", "\\text{Evelyn}", "\\text{(C)}",
    "18 \\text{ degrees}", "\\mathbf{v} = (1, 2)", "\\textbf{42}", "**\\dfrac{7}{2}**", "a",
])
def test_a_math_expression_after_hashes_is_an_answer(line):
    assert is_math_line(" " + line)


@pytest.mark.parametrize("line", [
    "Step 2: compute", "**Step 2: compute the sum**", "2. Add them", "3) Multiply", "Solution", "Conclusion",
    "A note on units", "I think so",
    # starts with a LaTeX command, a number or math, then goes on as prose
    "\\textbf{Step 2}: compute the area", "\\textbf{Solution}", "\\underline{\\textbf{Case 1}}",
    "\\underline{Case 1}: $x \\ge 0$", "\\section*{Solution}", "\\emph{Final step}", "\\text{Step 2: simplify}",
    "\\text{Case 1: } x \\geq 0", "\\frac{1}{2} of the pizza is left over for later",
    "$x$-intercepts of the parabola and its vertex", "$f(x)$ is increasing on the whole line",
    "2 Simplify the whole expression first", "",
])
def test_a_header_after_hashes_is_no_answer(line):
    assert not is_math_line(" " + line)


@pytest.mark.parametrize("completion,gold,correct", [
    ("The point is at distance 3, angle $\\pi/2$.\n#### \\left( 3, \\frac{\\pi}{2} \\right)",
     "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("The point is at distance 3, angle $\\pi/3$.\n#### \\left( 3, \\frac{\\pi}{3} \\right)",
     "\\left( 3, \\frac{\\pi}{2} \\right)", False),
    ("So the ratio is\n\n#### \\frac{1}{2}", "\\frac12", True), ("#### \\frac{1}{3}", "\\frac12", False),
    ("#### $\\frac{\\sqrt{3}}{2}$", "\\frac{\\sqrt{3}}{2}", True), ("#### **\\dfrac{7}{2}**", "\\frac{7}{2}", True),
    ("Solving, we get\n#### x = 5", "5", True), ("#### x = -5", "5", False),
    ("#### (3, -2)", "(3,-2)", True), ("#### (-2, 3)", "(3,-2)", False),
    ("#### 2\\sqrt{5}", "2\\sqrt{5}", True), ("#### \\sqrt{20}", "2\\sqrt{5}", True),
    ("#### 2\\sqrt{3}", "2\\sqrt{5}", False),
    ("#### \\text{Evelyn}", "\\text{Evelyn}", True), ("#### \\text{(C)}", "\\text{(C)}", True),
    ("#### \\text{(B)}", "\\text{(C)}", False), ("#### 18 \\text{ degrees}", "18^\\circ", True),
    # a later answer overrides an earlier one; a header after the answer changes nothing
    ("#### \\frac{1}{3}\nWait, I divided wrong.\n#### \\frac{1}{2}", "\\frac12", True),
    ("The final answer is $\\frac{1}{2}$.\n#### \\textbf{Step 3}: check the result\nIt works.", "\\frac12", True),
    ("The final answer is $\\frac{1}{2}$.\n#### \\frac{1}{3} of the rest is shaded, as a check", "\\frac12", True),
])
def test_math_answer_after_hashes(completion, gold, correct):
    assert MATH.grade(math_problem(gold), completion).correct is correct


@pytest.mark.parametrize("completion", [
    "#### \\textbf{Step 2}: compute the area\nIt is $\\frac{1}{2}$.",
    "#### \\text{Step 2: simplify}\n$x = \\frac{1}{2}$",
    "#### \\underline{Case 1}: $x \\ge 0$\nthen $\\frac12$",
    "#### \\frac{1}{2} of the pizza is left over for later",
    "#### $x$-intercepts of the parabola and its vertex",
])
def test_math_header_starting_like_math_is_no_answer(completion):
    g = MATH.grade(math_problem("\\frac12"), completion)
    assert (g.correct, g.extracted) == (False, None)


@pytest.mark.parametrize("completion,gold,correct", [
    ("3 * 24 = 72\n#### 72", 72, True), ("3 * 24 = 72\n#### 73", 72, False), ("#### $72", 72, True),
    ("#### **72**", 72, True), ("#### 72 clips in all", 72, True), ("#### \\$72", 72, True),
    ("#### \\frac{144}{2}", 72, True), ("#### \\frac{146}{2}", 72, False),
    # Markdown headers, also ones that start with a LaTeX command, are no answers: the last number counts
    ("#### Step 2: compute\n3 * 24 = 72", 72, True), ("#### Step 2: compute\n3 * 24 = 72", 2, False),
    ("#### \\textbf{Step 2}: compute\n3 * 24 = 72", 72, True),
    ("#### \\textbf{Step 2}: compute\n3 * 24 = 72", 2, False),
    ("#### \\text{Step 2: multiply by 3}\n3 * 24 = 72", 3, False),
    ("#### 2. Multiply\n3 * 24 = 72", 72, True),
])
def test_gsm8k_hashes(completion, gold, correct):
    assert GSM8K.grade(gsm8k_problem(gold), completion).correct is correct


# --- money and LaTeX thousands separators --------------------------------------------------------------------
MONEY = "\\$32,\\!348"   # MATH-500's gold for test/algebra/2626 (compound interest), as the dataset writes it


@pytest.mark.parametrize("completion", [
    "so it grows to $\\boxed{\\$32,\\!348}$.", "The final answer is \\$32,\\!348.",
    "Final Answer: The final answer is $\\$32,\\!348$. I hope it is correct.", "**Final Answer:** $\\$32,\\!348$",
    "**Final Answer:**\n\n$$\\$32,\\!348$$", "#### \\$32,\\!348", "The answer is $\\$32{,}348$.",
    "The answer is \\$32\\,348.", "\\boxed{32348}", "\\boxed{\\$32,348}", "The answer is \\$32,\\! 348 dollars.",
    "\\boxed{\\$32,\\!348 \\text{ dollars}}", "The final answer is $\\$ 32,\\!348$, to the nearest dollar.",
])
def test_money_with_thin_space_separators_right(completion):
    g = MATH.grade(math_problem(MONEY), completion)
    assert g.correct, g.extracted


@pytest.mark.parametrize("completion", [
    "\\boxed{\\$32,\\!349}", "The final answer is $\\$32,\\!348$ or $\\$32,\\!349$.", "#### \\$3,\\!234",
    "Final Answer: The final answer is $\\$32.348$. I hope it is correct.", "The answer is \\$32,\\!348.50.",
    "**Final Answer:** $\\$24,\\!000$", "The answer is \\$.",
])
def test_money_with_thin_space_separators_wrong(completion):
    assert not MATH.grade(math_problem(MONEY), completion).correct


@pytest.mark.parametrize("gold,completion,correct", [
    ("10,\\!000", "\\boxed{10000}", True), ("10,\\!000", "\\boxed{10{,}000}", True),
    ("10,\\!000", "The final answer is $10\\,000$.", True), ("10000", "The final answer is $10,\\!000$.", True),
    ("10,\\!000", "\\boxed{1000}", False), ("10,\\!000", "\\boxed{100,\\!000}", False),
    ("1{,}000", "\\boxed{1000}", True), ("1{,}000", "\\boxed{1001}", False),
])
def test_math_thousands_separators(gold, completion, correct):
    assert MATH.grade(math_problem(gold), completion).correct is correct


@pytest.mark.parametrize("completion,correct", [
    ("The answer is \\$32,\\!348.", True), ("#### \\$32,\\! 348", True), ("\\boxed{\\$32{,}348}", True),
    ("He ends with $\\$32,\\!348$ in total.", True), ("The answer is \\$32,\\!349.", False),
    ("The answer is \\$32,\\!348 or \\$32,\\!349.", False),
])
def test_gsm8k_money_with_separators(completion, correct):
    assert GSM8K.grade(gsm8k_problem(32348), completion).correct is correct


def test_separator_helpers():
    assert plain_separators("\\$32,\\!348") == "\\$32,348"
    assert plain_separators("1{,}000{,}000 and 10\\,000") == "1,000,000 and 10000"
    assert plain_separators("(1,\\!2)") == "(1,\\!2)"               # not a thousands group: left alone
    assert numbers_in("\\$32,\\!348 or 5") == ["32348", "5"]
    assert normalize("\\$32,\\!348") == normalize("32{,}348") == "32,348"


def test_extracted_span_keeps_escaped_dollars():
    assert extract_answer("The final answer is $\\$32,\\!348$. I hope it is correct.") == "\\$32,\\!348"
    assert extract_answer("The answer is $\\$5$ or $\\$6$.") == "\\$5 or \\$6"


def test_hashes_stay_fast_on_adversarial_text():
    start = time.time()
    assert extract_answer("#### x " * 30_000) == "x"
    assert extract_answer("#### \\textbf{Step}: go on " * 20_000) is None
    assert extract_answer("#### " + "\\frac" * 100_000) is None  # longer than any answer
    assert time.time() - start < 3
