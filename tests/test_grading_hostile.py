"""Hostile-but-realistic endings, each with the verdict a careful human grader gives (strict grading).

Classes per task: self-corrections (a later answer overrides), expressions in the answer span, hypotheses
("whether the answer is"), Markdown (headers, bold labels), units, money, thousands separators, percent,
negative numbers, hedges with several candidate answers, verdicts after the answer, LaTeX variants. Every
class has right AND wrong cases. The rules these follow are the README's grading contract.
"""
from __future__ import annotations

import pytest

from sot.tasks import get_task

GSM8K, MATH, COUNTDOWN = get_task("gsm8k"), get_task("math"), get_task("countdown")


def gsm8k_problem(gold):
    return GSM8K.from_record({"question": "How many?", "answer": f"Some work.\n#### {gold}"})


def math_problem(gold):
    return MATH.from_record({"problem": "Find it.", "solution": f"So it is $\\boxed{{{gold}}}$."})


GSM8K_CASES = {
    "self-correction": [
        ("#### 84\n\nWait, I made a mistake: he also bought 5 more, 84 + 5 = 89.\nThe answer is 89.", 89, True),
        ("#### 84\n\nWait, I made a mistake: he also bought 5 more, 84 + 5 = 89.\nThe answer is 89.", 84, False),
        ("The answer is 80.\n\nHmm, let me recompute: 12 * 7 = 84, not 80. So the answer is 84.", 84, True),
        ("The answer is 80.\n\nHmm, let me recompute: 12 * 7 = 84, not 80. So the answer is 84.", 80, False),
        ("\\boxed{80}\n\nActually I miscounted: there are 7 boxes, so 7 * 12 = 84.\n#### 84", 84, True),
        ("So the final answer is 88.\nWait, that's wrong: 12 * 7 = 84.\n**Final Answer:** 84", 84, True),
        ("Final Answer: 84\n\nOn second thought, she gave 4 away, so the answer is 80.", 84, False),
        ("Final Answer: 84\n\nOn second thought, she gave 4 away, so the answer is 80.", 80, True),
    ],
    "expression in the span": [
        ("The answer is 84 * 7 = 588.", 588, True), ("The answer is 84 * 7 = 588.", 84, False),
        ("The answer is 83 + 1 = 84.", 84, True), ("The answer is 83 + 1 = 84.", 83, False),
        ("Answer: 12 * 7 = 84", 84, True), ("\\boxed{12 \\times 7 = 84}", 84, True), ("#### 12 * 7 = 84", 84, True),
        ("The answer is 89, because 84 + 5 = 89.", 89, True), ("The answer is 89, because 84 + 5 = 89.", 84, False),
        ("So the answer is 84 since 7 * 12 = 84.", 84, True),
    ],
    "hypothesis": [
        ("Let's check whether the answer is 84: 84 / 7 = 12, which matches.\n**Answer:** 88", 84, False),
        ("Let's check whether the answer is 84: 84 / 7 = 12, which matches.\n**Answer:** 88", 88, True),
        ("Suppose the answer is 84. Then each box holds 12, but 13 are given.\nAnswer: 91", 84, False),
        ("If the answer is 84, then each box has 12 apples.\n#### 91", 84, False),
        ("Maybe the answer is 84? No: 7 * 13 = 91.\nThe answer is 91.", 91, True),
        ("Maybe the answer is 84? No: 7 * 13 = 91.\nThe answer is 91.", 84, False),
        ("The answer is 84.\nVerification: if the answer is 84, each box holds 84 / 7 = 12.", 84, True),
    ],
    "verdict or negation after the answer": [
        ("#### 84\n\nLet me double-check: 7 * 12 = 84. Yes, the answer is correct.", 84, True),
        ("The answer is 84. I am confident the answer is right.", 84, True),
        ("The answer is not 84; 7 boxes of 13 make 91.", 91, True),
        ("The answer is not 84; 7 boxes of 13 make 91.", 84, False),
    ],
    "markdown": [
        ("#### Step 1: count the boxes\nThere are 7 boxes.\n#### Step 2: multiply\n7 * 12 = 84 apples.", 84, True),
        ("#### Step 1: count the boxes\nThere are 7 boxes.\n#### Step 2: multiply\n7 * 12 = 84 apples.", 2, False),
        ("#### 2. Multiply\n7 * 12 = 84", 2, False), ("#### 2. Multiply\n7 * 12 = 84", 84, True),
        ("### Final Answer\n84", 84, True), ("**Final Answer:** 84 apples", 84, True), ("**Answer:** $84", 84, True),
        ("## Answer\n\n**84**", 84, True), ("- **Answer:** 84", 84, True), ("The answer is **84**.", 84, True),
        ("#### **84**", 84, True), ("**Answer:** 85", 84, False),
    ],
    "units, money, separators, percent, negatives": [
        ("#### $1,234.50", "1234.5", True), ("The answer is 1,234 dollars.", 1234, True),
        ("The answer is 1.234", 1234, False), ("The total cost is $84.00.\n#### 84", 84, True),
        ("#### 84%", 84, True), ("The answer is 84\\%.", 84, True), ("The answer is 0.84", 84, False),
        ("The temperature is now -3 degrees.\n#### -3", -3, True), ("#### -3", 3, False),
        ("#### \u22123", -3, True), ("The answer is \\$84.", 84, True), ("The answer is 84 km/h.", 84, True),
        ("The answer is 84,000.", 84000, True), ("The answer is 84,000.", 84, False),
        ("He needs 84 more dollars.\n#### 84.00", 84, True), ("The answer is $85.", 84, False),
    ],
    "hedge with several candidates": [
        ("The answer is 84 or 88.", 84, False), ("The answer is either 84 or 88.", 88, False),
        ("So it's \\boxed{84} or \\boxed{88}.", 84, False), ("The answer is between 80 and 90.", 80, False),
        ("#### 84 or 85", 84, False), ("The answer is $84$ or $88$.", 84, False),
        ("\\boxed{84}, \\boxed{84}", 84, True), ("The answer is 84 (84.0 with decimals).", 84, True),
    ],
    "latex": [
        ("\\boxed{\\$84}", 84, True), ("\\boxed{84\\text{ apples}}", 84, True), ("$\\boxed{84}$", 84, True),
        ("\\boxed{\\frac{168}{2}}", 84, True), ("\\boxed{84.0}", 84, True), ("\\(\\boxed{84}\\)", 84, True),
        ("\\[ \\boxed{84} \\]", 84, True), ("\\boxed{85}", 84, False), ("\\boxed{\\frac{168}{3}}", 84, False),
    ],
}

MATH_CASES = {
    "answer markers": [
        ("\\frac{1}{2}", "So, the final answer is $\\frac{1}{2}$.", True),
        ("\\frac{1}{2}", "so the final answer is $\\frac{1}{3}$.", False),
        ("\\frac{1}{2}", "**Final Answer:** $\\frac{1}{2}$", True),
        ("\\frac{1}{2}", "**Final Answer**\n\n$$\\frac{1}{2}$$", True),
        ("\\frac{1}{2}", "Answer: 1/2", True), ("\\frac{1}{2}", "Answer: \\(\\dfrac{1}{2}\\)", True),
        ("\\frac{1}{2}", "Final Answer: The final answer is $0.5$. I hope it is correct.", True),
        ("\\frac{1}{2}", "We find that $x = \\frac{1}{2}$.", False),  # MATH: no statement, no answer
    ],
    "several boxes": [
        ("2, 3", "\\boxed{2} and \\boxed{3}", True), ("2, 3", "$x = \\boxed{2}$ or $x = \\boxed{3}$", True),
        ("2, 3", "\\boxed{2}", False), ("2", "\\boxed{2} and \\boxed{3}", False),
        ("(-2,18), (8,38)", "The points are $\\boxed{(-2,18)}$ and $\\boxed{(8,38)}$.", True),
        ("\\frac{1}{2}", "It is either $\\boxed{\\frac{1}{2}}$ or $\\boxed{\\frac{1}{3}}$.", False),
    ],
    "self-correction": [
        ("-5", "\\boxed{5}\n\nWait, I dropped a sign: so the final answer is $\\boxed{-5}$.", True),
        ("5", "\\boxed{5}\n\nWait, I dropped a sign: so the final answer is $\\boxed{-5}$.", False),
        ("4", "The final answer is $\\boxed{3}$.\n\nHmm, actually I mis-added: the answer is $4$.", True),
        ("3", "The final answer is $\\boxed{3}$.\n\nHmm, actually I mis-added: the answer is $4$.", False),
    ],
    "hypothesis and verdict": [
        ("6", "Let's check whether the answer is $5$: $5^2 = 25 \\neq 36$. So the answer is $6$.", True),
        ("5", "Let's check whether the answer is $5$: $5^2 = 25 \\neq 36$. So the answer is $6$.", False),
        ("6", "The answer is $\\boxed{6}$. Checking: $6^2 = 36$, so the answer is correct.", True),
        ("6", "The answer is $\\boxed{6}$. The answer is positive, as required.", True),
    ],
    "markdown headers": [
        ("2", "#### Step 2: Simplify\nWe get $x = 4$.", False), ("2", "#### 2. Simplify\nWe get $x = 4$.", False),
        ("4", "#### Step 2: Simplify\nWe get $x = 4$.\n\n**Answer:** $x = 4$", True),
    ],
    "degrees, repeating decimals, choices": [
        ("90", "The angle measures $\\boxed{90^\\circ}$.", True), ("90", "The answer is $90°$.", True),
        ("90^\\circ", "\\boxed{90}", True), ("90", "\\boxed{45^\\circ}", False),
        ("\\frac{1}{3}", "The answer is $0.\\overline{3}$.", True), ("\\frac{7}{9}", "\\boxed{0.\\overline{7}}", True),
        ("\\frac{1}{3}", "\\boxed{0.\\overline{6}}", False), ("\\frac{1}{3}", "\\boxed{0.33}", False),
        ("\\text{(C)}", "\\boxed{\\text{(C) Plane}}", True),
        ("\\text{(C)}", "The answer is $\\text{(C) Plane}$.", True),
        ("\\text{(C)}", "The answer is (C).", True), ("\\text{(C)}", "\\boxed{C}", True),
        ("\\text{(C)}", "\\boxed{\\text{(D) Cylinder}}", False), ("\\text{(C)}", "\\boxed{\\text{(C) or (D)}}", False),
    ],
    "units and percent": [
        ("10", "The final answer is 10 cm.", True), ("10", "\\boxed{10\\text{ cm}}", True),
        ("10", "\\boxed{10 \\text{ centimeters}}", True), ("10", "The final answer is 11 cm.", False),
        ("64", "\\boxed{64\\%}", True), ("64\\%", "\\boxed{64}", True), ("64\\%", "\\boxed{0.64}", False),
    ],
    "equations and hedges": [
        ("5", "The answer is $x = 5$.", True), ("y = 2x + 3", "\\boxed{y = 2x + 3}", True),
        ("y = 2x + 3", "\\boxed{y = 2x - 3}", False), ("588", "The answer is $84 \\cdot 7 = 588$.", True),
        ("84", "The answer is $84 \\cdot 7 = 588$.", False), ("2", "The answer is $2$ or $3$.", False),
        ("2", "\\boxed{2 \\text{ or } 3}", False), ("2, 3", "The answer is $2$ or $3$.", True),
    ],
}

# nums [64, 3, 99, 48], target 10: 64 - (3 + 99 - 48) = 10
COUNTDOWN_CASES = [
    ("<answer>64 - (3 + 99 - 48) = 11</answer>", False), ("<answer>64 - (3 + 99 - 48) = 10</answer>", True),
    ("<answer>64 - (3 + 99 - 48)</answer>", True), ("<answer>64 - 3 - 99 + 48</answer>", True),
    ("<answer>64 + 3 - 99 + 48</answer>\nWait, that gives 16, not 10.\n<answer>64 - (3 + 99 - 48)</answer>", True),
    ("<answer>64 - (3 + 99 - 48)</answer>\nLet me try another.\n<answer>64 + 3 - 99 + 48</answer>", False),
    ("<answer>64 - (3 + 99 - 48) or 48 - 99 + 64 - 3</answer>", False),
    ("<answer>$64 - (3 + 99 - 48)$</answer>", True), ("<answer>64 \u2212 (3 + 99 \u2212 48)</answer>", True),
    ("<answer>64 - 54</answer>", False), ("<answer>64 - (3 + 99 - 48) + 0</answer>", False),
    ("The equation is 64 - (3 + 99 - 48) = 10.", False), ("<answer>(99 + 1) / 10</answer>", False),
    ("**Answer:** <answer>64 - (3 + 99 - 48)</answer>", True), ("<answer>\n64 - (3 + 99 - 48)\n</answer>", True),
    ("<answer>64 - (3 + 99 - 48) = 10</answer> = 10", True), ("<answer>(64 - 3 + 99) / 48</answer>", False),
]

ADD = "def add(a, b):\n    return a + b"
MBPP_RECORD = {"text": "Add two numbers.", "code": ADD, "task_id": 1, "test_setup_code": "",
               "test_list": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"], "challenge_test_list": []}
MBPP_CASES = [
    (f"```python\n{ADD}\n```\nExample:\n```python\nprint(add(1, 2))\n```", True),          # usage block last
    ("```python\ndef add(a, b):\n    return a - b\n```\nOops, fixed:\n```python\n" + ADD + "\n```", True),
    (f"```python\n{ADD}\n```\nShorter:\n```python\ndef add(a, b):\n    return a * b\n```", False),
    ("```python\nimport operator\n```\n```python\ndef add(a, b):\n    return operator.add(a, b)\n```", True),
    (f"Here is the function:\n{ADD}\nIt adds the two numbers.", True),                      # no fences
    (f"```python\n{ADD}\n", True),                                                          # cut off, unclosed
    ("```python\ndef plus(a, b):\n    return a + b\n```", False),                           # not the tested name
    (f"```python\n{ADD}\n```\nTests:\n```python\nassert add(1, 2) == 4\n```", True),        # its own bad test
    ("```python\nprint(add(1, 2))\n```", False),
    (f"```python\n{ADD}\n\nif __name__ == '__main__':\n    print(add(1, 2))\n```", True),
]


def _flat(cases):
    return [(cls, *case) for cls, items in cases.items() for case in items]


@pytest.mark.parametrize("cls,completion,gold,human", _flat(GSM8K_CASES))
def test_gsm8k_hostile_endings(cls, completion, gold, human):
    assert GSM8K.grade(gsm8k_problem(gold), completion).correct is human, cls


@pytest.mark.parametrize("cls,gold,completion,human", _flat(MATH_CASES))
def test_math_hostile_endings(cls, gold, completion, human):
    assert MATH.grade(math_problem(gold), completion).correct is human, cls


@pytest.mark.parametrize("completion,human", COUNTDOWN_CASES)
def test_countdown_hostile_endings(completion, human):
    p = COUNTDOWN.from_record({"nums": [64, 3, 99, 48], "target": 10})
    assert COUNTDOWN.grade(p, completion).correct is human


def test_mbpp_hostile_endings():
    pytest.importorskip("sot.sandbox")
    task = get_task("mbpp", timeout=5.0)
    p = task.from_record(MBPP_RECORD)
    grades = task.grade_many([p] * len(MBPP_CASES), [c for c, _ in MBPP_CASES], workers=2)
    assert [g.correct for g in grades] == [human for _, human in MBPP_CASES]
