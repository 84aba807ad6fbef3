"""Countdown: generator, solver, solver-written reference traces, and the ast-based checker."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sot.io import DataError
from sot.tasks import Grade, get_task
from sot.tasks.countdown import (SPLIT_SIZES, check_expression, generate_problems, reference_trace, solve)

TASK = get_task("countdown")


@settings(max_examples=100, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1))
def test_generated_problems_are_solvable_and_references_grade_correct(seed):
    # 100 examples x 10 problems = 1,000 generated problems
    for i, rec in enumerate(generate_problems(10, seed)):
        assert 10 <= rec["target"] <= 100 and len(rec["nums"]) in (3, 4)
        assert all(1 <= x <= 100 for x in rec["nums"])
        expression = solve(rec["nums"], rec["target"])
        assert expression is not None and check_expression(expression, rec["nums"], rec["target"])
        p = TASK.from_record(rec, id=f"countdown/test/{i}")
        assert TASK.grade(p, p.reference) == Grade(True, p.answer)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(nums=st.lists(st.integers(1, 30), min_size=2, max_size=4), target=st.integers(-50, 200))
def test_solver_answers_are_always_valid(nums, target):
    expression = solve(nums, target)
    if expression is not None:
        assert check_expression(expression, nums, target)


def test_reference_trace_format():
    trace = reference_trace([75, 12, 2], 126)
    lines = trace.splitlines()
    assert lines[0].startswith("Step 1: ") and lines[1].startswith("Step 2: ")
    assert lines[-1].startswith("<answer>") and lines[-1].endswith("</answer>")
    assert check_expression(lines[-1][8:-9], [75, 12, 2], 126)
    with pytest.raises(ValueError, match="no solution"):
        reference_trace([1, 1, 1], 97)
    with pytest.raises(DataError, match="no solution"):
        TASK.from_record({"nums": [1, 1, 1], "target": 97})


def test_solver_prefers_whole_steps_but_finds_fraction_solutions():
    assert solve([4, 4, 4, 4], 16) is not None
    expression = solve([1, 3, 4, 6], 24)  # the classic one needs 6 / (1 - 3/4)
    assert expression is not None and check_expression(expression, [1, 3, 4, 6], 24)


@pytest.mark.parametrize("expression,ok", [
    ("(75 - 12) * 2", True), ("2 * (75 - 12)", True), ("(75-12)*2 = 126", True), (" ( 75 - 12 )\n* 2 ", True),
    ("(75 - 12) * 2 = 126.0", True), ("(75 - 12) * 2 = 999", False), ("(75 - 12) * 2 = 63", False),  # a claimed
    ("(75 - 12) * 2 = 126 = 126", False), ("75 - 12 = 63 * 2 = 126", False),  # value must be the target
    ("(75 - 12) × 2", True), ("$(75 - 12) \\times 2$", True), ("(75 \u2212 12) \\cdot 2", True),  # notation
    ("\\left(75 - 12\\right) * 2", True), ("(75 - 12) ÷ 2", False), ("(75 - 12) x 2", False),
    ("75 - 12 * 2", False), ("(75 - 12) * 2 + 0", False), ("(75 - 12) * 2 * 1", False), ("75 * 2", False),
    ("(75 - 12) * 2 - 12 + 12", False), ("-(12 - 75) * 2", False), ("+75 - 12 + 2", False),
    ("(75 - 12) ** 2", False), ("(75 - 12) // 2", False), ("(75.0 - 12) * 2", False), ("(0x4b - 12) * 2", False),
    ("(75 - 1_2) * 2", False), ("__import__('os').system('true')", False), ("abs(75 - 12) * 2", False),
    ("", False), ("(" * 300 + "75" + ")" * 300, False),
])
def test_check_expression(expression, ok):
    assert check_expression(expression, [75, 12, 2], 126) is ok


def test_division_is_exact_and_division_by_zero_is_wrong():
    assert check_expression("6 / (1 - 3 / 4)", [6, 1, 3, 4], 24)
    assert not check_expression("7 / 2", [7, 2], 3)
    assert not check_expression("5 / (3 - 3)", [5, 3, 3], 0)


def test_grade_uses_the_last_answer_tag():
    p = TASK.from_record({"nums": [75, 12, 2], "target": 126})
    assert TASK.grade(p, "<answer>75 + 12</answer> no wait <answer>(75 - 12) * 2</answer>").correct
    assert TASK.grade(p, "<answer>(75 - 12) * 2</answer> no <answer>75 * 2</answer>") == Grade(False, "75 * 2")
    assert TASK.grade(p, "(75 - 12) * 2") == Grade(False, None)
    assert TASK.grade(p, "<answer> </answer>") == Grade(False, None)


def test_splits_are_deterministic_disjoint_and_sized():
    test = TASK.load_split("test")
    train = TASK.load_split("train", limit=2000, seed=3)
    assert len(test) == SPLIT_SIZES["test"] and len(train) == 2000
    assert [p.to_dict() for p in test[:50]] == [p.to_dict() for p in TASK.load_split("test", limit=None)[:50]]
    key = lambda p: (tuple(sorted(p.record["nums"])), p.record["target"])  # noqa: E731
    assert not {key(p) for p in test} & {key(p) for p in train}
    all_train = {(tuple(sorted(r["nums"])), r["target"]) for r in TASK.generated_split("train")}
    assert len(all_train) == SPLIT_SIZES["train"] and not all_train & {key(p) for p in test}
    assert test[5].id == "countdown/test/5"


def test_generate_respects_its_arguments():
    recs = generate_problems(50, seed=1, n_numbers=4, num_range=(1, 10), target_range=(20, 30))
    assert all(len(r["nums"]) == 4 and max(r["nums"]) <= 10 and 20 <= r["target"] <= 30 for r in recs)
    assert recs == generate_problems(50, seed=1, n_numbers=4, num_range=(1, 10), target_range=(20, 30))
    with pytest.raises(ValueError, match="widen"):
        generate_problems(5, seed=0, n_numbers=3, num_range=(1, 1), target_range=(50, 60))


def test_a_supplied_file_replaces_generation(tmp_path):
    (tmp_path / "countdown").mkdir()
    path = tmp_path / "countdown" / "test.jsonl"
    path.write_text(json.dumps({"nums": [3, 5], "target": 8}) + "\n" + json.dumps({"nums": [3], "target": 3}) + "\n")
    problems = TASK.load_split("test", tmp_path)
    assert [p.record for p in problems] == [{"nums": [3, 5], "target": 8}, {"nums": [3], "target": 3}]
    path.write_text(json.dumps({"nums": [3, 5], "target": "8"}) + "\n")
    with pytest.raises(DataError, match=r"test\.jsonl:1: field 'target' must be an integer"):
        TASK.load_split("test", tmp_path)
    path.write_text(json.dumps({"nums": [3, 5]}) + "\n")
    with pytest.raises(DataError, match=r"test\.jsonl:1: missing field 'target'"):
        TASK.load_split("test", tmp_path)


# --- the authors' rule (eval_countdown.py), sot.tasks.authors.countdown_grade --------------------------
@pytest.mark.parametrize("completion,correct,counted", [
    ("Step 1: 75 - 12 = 63\n<answer>(75 - 12) * 2</answer>", True, True),
    ("<answer> (75 - 12) * 2 </answer>", True, True),
    ("<answer>(75 - 12) * 2 = 126</answer>", False, True),     # "= 126" adds a number: wrong, but counted
    ("<answer>(75 - 12) * 2</answer>\nThis uses every number once.", False, False),  # only the last line is read
    ("<answer>75 * 2</answer> <answer>(75 - 12) * 2</answer>", True, True),  # the last tag on that line
    ("<answer>(75 - 12) * 2 + 0</answer>", False, True),        # numbers differ (0 is extra)
    ("<answer>(75 - 12) × 2</answer>", False, True),           # × is not an allowed character there
    ("<answer>-(12 - 75) * 2</answer>", True, True),           # unary minus evaluates under their eval
    ("<answer>(75 - 12) ** 2 // 2</answer>", False, True),     # ** and // are allowed characters
    ("<answer>2 ** 75 ** 12</answer>", False, True),           # a huge power is an evaluation error, counted
    ("<answer>(75 - 12) / (2 - 2)</answer>", False, True),     # ZeroDivisionError: counted, wrong
    ("<answer></answer>", False, True),                         # empty tag: numbers differ, counted
    ("The equation is (75 - 12) * 2.", False, False), ("", False, False), ("  \n ", False, False),
])
def test_grade_authors(completion, correct, counted):
    p = TASK.from_record({"nums": [75, 12, 2], "target": 126})
    g = TASK.grade_authors(p, completion)
    assert (g.correct, g.extracted is not None) == (correct, counted)


def test_grade_authors_float_tolerance_and_references():
    p = TASK.from_record({"nums": [6, 1, 3, 4], "target": 24})
    assert TASK.grade_authors(p, "<answer>6 / (1 - 3 / 4)</answer>").correct
    for rec in generate_problems(50, seed=7):
        q = TASK.from_record(rec)
        assert TASK.grade_authors(q, q.reference) == Grade(True, q.answer)
