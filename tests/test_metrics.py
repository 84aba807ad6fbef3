"""Accuracy (strict and authors'), bootstrap intervals, exact McNemar and paired comparisons."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from sot.metrics import (accuracy, authors_ci, bootstrap_ci, correct_and_parsed, mcnemar_exact,
                         paired_comparison, summarize)


@dataclass(frozen=True)
class FakeGrade:  # same fields as sot.tasks.Grade
    correct: bool
    extracted: str | None


def ten_grades() -> list[FakeGrade]:
    """7 correct, 2 parsed but wrong, 1 unparseable."""
    return ([FakeGrade(True, "1")] * 7 + [FakeGrade(False, "2")] * 2 + [FakeGrade(False, None)])


def binomial_quantile(n: int, p: float, q: float) -> float:
    """Exact q-quantile of Binomial(n, p) / n: the bootstrap distribution of a mean of n booleans."""
    cdf = 0.0
    for k in range(n + 1):
        cdf += math.comb(n, k) * p ** k * (1 - p) ** (n - k)
        if cdf >= q:
            return k / n
    return 1.0


def test_accuracy_strict_and_authors_by_hand():
    acc = accuracy(ten_grades())
    assert acc == {"strict": 0.7, "authors": 7 / 9, "n": 10, "n_parsed": 9, "n_correct": 7}


def test_accuracy_accepts_row_dicts_and_handles_nothing_parsed():
    rows = [{"correct": g.correct, "extracted": g.extracted} for g in ten_grades()]
    assert accuracy(rows) == accuracy(ten_grades())
    none_parsed = accuracy([FakeGrade(False, None)] * 3)
    assert none_parsed["strict"] == 0.0 and none_parsed["authors"] is None and none_parsed["n_parsed"] == 0
    with pytest.raises(ValueError, match="no grades"):
        accuracy([])
    with pytest.raises(KeyError, match="extracted"):
        accuracy([{"correct": True}])


def test_authors_numerator_counts_parsed_problems_only():
    # a grade marked correct without an extracted answer must not push the authors' metric above 1
    acc = accuracy([FakeGrade(True, None), FakeGrade(True, "3"), FakeGrade(False, "4")])
    assert acc["strict"] == pytest.approx(2 / 3) and acc["authors"] == pytest.approx(1 / 2)


def test_bootstrap_ci_matches_exact_binomial_quantiles():
    n, k = 200, 140
    correct = [True] * k + [False] * (n - k)
    lo, hi = bootstrap_ci(correct, n_boot=10000, level=0.95, seed=0)
    assert lo == pytest.approx(binomial_quantile(n, k / n, 0.025), abs=1.5 / n)
    assert hi == pytest.approx(binomial_quantile(n, k / n, 0.975), abs=1.5 / n)
    # and close to the normal approximation 0.7 +- 1.96 * sqrt(0.7 * 0.3 / 200) = [0.636, 0.764]
    assert lo == pytest.approx(0.636, abs=0.01) and hi == pytest.approx(0.764, abs=0.01)


def test_bootstrap_ci_is_seeded_contains_estimate_and_narrows_with_n():
    small = [True] * 35 + [False] * 15
    large = small * 16
    assert bootstrap_ci(small, seed=3) == bootstrap_ci(small, seed=3)
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s <= 0.7 <= hi_s and lo_l <= 0.7 <= hi_l
    assert (hi_l - lo_l) < 0.5 * (hi_s - lo_s)  # 16x the problems: about 1/4 of the width
    assert bootstrap_ci([True] * 20) == (1.0, 1.0)
    assert bootstrap_ci(small, level=0.5)[1] - bootstrap_ci(small, level=0.5)[0] < hi_s - lo_s


def test_bootstrap_ci_rejects_bad_input():
    with pytest.raises(ValueError, match="no values"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([True, False], level=95)
    with pytest.raises(ValueError, match="booleans"):
        bootstrap_ci([0.5, 1.0])


def test_bootstrap_chunking_covers_every_resample(monkeypatch):
    import sot.metrics as m
    monkeypatch.setattr(m, "_CHUNK_CELLS", 7)  # forces many tiny chunks, the last one partial
    stats = m._bootstrap_means(np.array([0.0, 1.0, 1.0]), n_boot=10, seed=0)
    assert stats.shape == (10,) and set(np.round(stats * 3).astype(int)) <= {0, 1, 2, 3}


def test_authors_ci_resamples_parsed_problems_only():
    grades = ten_grades()
    correct, parsed = correct_and_parsed(grades)
    assert authors_ci(grades, seed=1) == bootstrap_ci(correct[parsed], seed=1)
    assert authors_ci([FakeGrade(False, None)]) == (None, None)


def test_mcnemar_exact_hand_examples():
    # discordant 8 vs 2: p = 2 * (C(10,0) + C(10,1) + C(10,2)) / 2**10 = 2 * 56 / 1024
    assert mcnemar_exact(8, 2) == 0.109375
    assert mcnemar_exact(2, 8) == 0.109375
    assert mcnemar_exact(10, 0) == 2 / 1024
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 0) == 1.0
    assert 0 < mcnemar_exact(600, 400) < 1e-9  # large counts stay exact integers, no overflow


def test_paired_comparison_hand_example():
    # 5 both right, 5 both wrong, 8 only b right, 2 only a right
    a = [True] * 5 + [False] * 5 + [False] * 8 + [True] * 2
    b = [True] * 5 + [False] * 5 + [True] * 8 + [False] * 2
    cmp = paired_comparison(a, b, seed=0)
    assert (cmp["both"], cmp["neither"], cmp["b_only"], cmp["a_only"]) == (5, 5, 8, 2)
    assert cmp["n"] == 20 and cmp["acc_a"] == 0.35 and cmp["acc_b"] == 0.65
    assert cmp["diff"] == pytest.approx(0.3)
    assert cmp["mcnemar_p"] == 0.109375
    assert cmp["diff_lo"] < 0.3 < cmp["diff_hi"]
    # the paired bootstrap sd of the mean difference: sqrt(var(d) / n) with d in {-1, 0, 1}
    d = np.array(b, float) - np.array(a, float)
    half = 1.96 * d.std() / math.sqrt(len(d))
    assert cmp["diff_hi"] - cmp["diff_lo"] == pytest.approx(2 * half, rel=0.2)


def test_paired_comparison_identical_and_mismatched():
    same = paired_comparison([True, False, True], [True, False, True])
    assert same["diff"] == 0 and (same["diff_lo"], same["diff_hi"]) == (0.0, 0.0) and same["mcnemar_p"] == 1.0
    with pytest.raises(ValueError, match="same problems"):
        paired_comparison([True], [True, False])


def test_summarize_has_every_field():
    s = summarize(ten_grades(), n_boot=2000, seed=0)
    assert s["strict"] == 0.7 and s["authors"] == pytest.approx(7 / 9)
    assert s["strict_lo"] <= 0.7 <= s["strict_hi"] and s["authors_lo"] <= 7 / 9 <= s["authors_hi"]
    assert (s["level"], s["n_boot"], s["seed"]) == (0.95, 2000, 0)
