"""sot.steps: finding arithmetic steps in traces and checking them exactly."""
from fractions import Fraction

import pytest

from sot.steps import evaluate, find_steps, parse_number, step_validity


def summary(text, task="gsm8k"):
    return [(s.text, s.valid) for s in find_steps(text, task)]


def test_gsm8k_annotations_valid_and_invalid_counted_once():
    text = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
            "Natalia sold 48+24 = <<48+24=73>>73 clips altogether.\n#### 73")
    steps = find_steps(text, "gsm8k")
    assert [(s.kind, s.text, s.valid) for s in steps] == [("annotation", "48/2=24", True),
                                                          ("annotation", "48+24=73", False)]
    assert steps[1].computed == 72 and steps[1].claimed == 73
    assert text[steps[1].result_start:steps[1].result_end] == "73"


def test_chains_with_several_operators_currency_and_commas():
    assert summary("Betty needs 100 - 50 - 30 - 15 = $5 more.") == [("100 - 50 - 30 - 15 = $5", True)]
    assert summary("In all $1,200 + 300 = $1,500, and 2,000 * 3 = 6,001.") == [
        ("1,200 + 300 = $1,500", True), ("2,000 * 3 = 6,001", False)]
    assert summary("She earns 12 x 2 = 24 dollars and (3 + 4) × 2 = 14.") == [("12 x 2 = 24", True),
                                                                             ("(3 + 4) × 2 = 14", True)]


def test_running_chain_and_plain_chain():
    assert summary("5 * 3 = 15 + 2 = 17") == [("5 * 3 = 15 + 2", True), ("15 + 2 = 17", True)]
    assert summary("5 * 3 = 15 + 2 = 18") == [("5 * 3 = 15 + 2", True), ("15 + 2 = 18", False)]
    assert summary("2 + 3 = 1 + 4 = 5") == [("2 + 3 = 1 + 4", True), ("1 + 4 = 5", True)]


def test_decimal_rounding_tolerance_and_integers_exact():
    assert summary("10/3 = 3.33 and 2/3 = 0.67 and 2/3 = 0.66 and 2/3 = 0.65") == [
        ("10/3 = 3.33", True), ("2/3 = 0.67", True), ("2/3 = 0.66", True), ("2/3 = 0.65", False)]
    assert summary("7/2 = 3") == [("7/2 = 3", False)]
    assert summary("0.2 * 50 = 10.0 and 10 x .5 = 5") == [("0.2 * 50 = 10.0", True), ("10 x .5 = 5", True)]
    assert summary("100/3 ≈ 33.3 and 100/3 ≈ 35 and 200 * 3 ≈ 605") == [
        ("100/3 ≈ 33.3", True), ("100/3 ≈ 35", False), ("200 * 3 ≈ 605", True)]
    assert summary("It grows to 1000 * 1.01^5 = 1051 dollars, to the nearest dollar.") == [
        ("1000 * 1.01^5 = 1051", True)]


def test_percent_read_both_ways():
    assert summary("25% * 80 = 20 and 20/80*100 = 25% and 30% * 80 = 20") == [
        ("25% * 80 = 20", True), ("20/80*100 = 25%", True), ("30% * 80 = 20", False)]


def test_algebra_and_units_are_not_arithmetic_steps():
    assert summary("So 2a=-6 and x - 3 = 5, and 3x + 2 = 11, 20% of 50 = 10, 2 + 3 = 5x.", "math") == []
    assert summary("**Total:** **5 + 3 = 8**") == [("5 + 3 = 8", True)]


def test_latex_math():
    text = r"We get $\frac{1}{2} \cdot 4 = 2$, $2^3 = 8$, $3(4+1) = 15$, $a+b=-3+3=\boxed{1}$, $\sqrt{16} = 4$."
    assert summary(text, "math") == [(r"\frac{1}{2} \cdot 4 = 2", True), ("2^3 = 8", True),
                                     ("3(4+1) = 15", True), (r"-3+3=\boxed{1}", False)]


def test_latex_mixed_numbers_thousands_line_breaks_and_custom_operators():
    text = (r"So $4\cdot 32\frac{1}{3}=\boxed{129\frac{1}{3}}$ and $942\times 76=71,\!592$ and "
            "$2(12) - 2(2) = 24\n- 4 = \\boxed{20}$.")
    assert summary(text, "math") == [(r"4\cdot 32\frac{1}{3}=\boxed{129\frac{1}{3}}", True),
                                     (r"942\times 76=71,\!592", True), ("2(12) - 2(2) = 24\n- 4", True),
                                     ("24\n- 4 = \\boxed{20}", True)]
    # user-defined operations are not arithmetic the checker can judge
    assert summary(r"We have $3\oplus 1 = 3\cdot 3 + 4\cdot 1 = \boxed{13}$ and $7@4=7\cdot4-2\cdot7=14$.",
                   "math") == [(r"3\cdot 3 + 4\cdot 1 = \boxed{13}", True), (r"7\cdot4-2\cdot7=14", True)]
    # in GSM8K a line break ends an equation (bullets start with "-")
    assert summary("48 + 24 = 72\n- 72 - 2 = 70", "gsm8k") == [("48 + 24 = 72", True), ("72 - 2 = 70", True)]


def test_countdown_steps_and_mbpp_has_none():
    trace = "Step 1: 25 + 5 = 30\nStep 2: 30 * 2 = 61\n<answer>(25 + 5) * 2</answer>"
    assert summary(trace, "countdown") == [("25 + 5 = 30", True), ("30 * 2 = 61", False)]
    assert find_steps("x = 1 + 2 == 3", "mbpp") == []


def test_task_objects_are_accepted():
    class T:
        name = "gsm8k"
    assert summary("1 + 1 = 2", T()) == [("1 + 1 = 2", True)]
    with pytest.raises(TypeError):
        find_steps("1 + 1 = 2", 3)


def test_evaluate_is_safe_and_exact():
    assert evaluate("(1/3)+(1/6)") == Fraction(1, 2)
    assert evaluate("2**10") == 1024
    for bad in ("__import__('os').system('true')", "(1).__class__", "2**1000", "10**10**10", "1/0", "a+1", ""):
        assert evaluate(bad) is None
    assert parse_number("1,000.50") == Fraction(2001, 2)
    assert parse_number("50%") == Fraction(1, 2) and parse_number("50%", False) == 50


def test_step_validity_counts():
    records = [{"completion": "1 + 1 = 2 and 2 * 3 = 7"}, {"completion": "no arithmetic here"},
               {"completion": "<<4/2=2>>2"}]
    m = step_validity(records, "gsm8k")
    assert m["n_traces"] == 3 and m["n_steps"] == 3 and m["n_valid"] == 2
    assert m["frac_valid"] == pytest.approx(2 / 3)
    assert m["traces_without_steps"] == 1 and m["frac_traces_all_valid"] == 0.5
    assert step_validity([], "gsm8k")["frac_valid"] is None


def test_real_gsm8k_human_traces_are_almost_all_valid(data_dir):
    from sot.tasks import get_task

    problems = get_task("gsm8k").load_split("train", data_dir=data_dir, limit=200, seed=1)
    m = step_validity([p.reference for p in problems], "gsm8k")
    assert m["n_steps"] > 500 and m["frac_valid"] > 0.98  # the few invalid ones are real slips in GSM8K
