"""Accuracy intervals (Wilson), Tango's paired interval, exact McNemar, Holm and the trend test: hand-computed
values, an independent brute-force inversion, and seeded coverage simulations."""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from statsmodels.stats.proportion import proportion_confint

from sot.metrics import (accuracy_summary, as_bools, bootstrap_ci, holm, mcnemar_exact, paired_comparison,
                         proportion_ci, summarize, tango_ci, tango_statistic, trend_test)

Z = 1.959963984540054  # the 97.5 % normal quantile
Z2 = Z * Z


@dataclass(frozen=True)
class FakeGrade:  # same fields as sot.tasks.Grade
    correct: bool
    extracted: str | None


def wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    """The Wilson score interval from its closed form (independent of statsmodels)."""
    centre = (k + Z2 / 2) / (n + Z2)
    half = Z / (n + Z2) * math.sqrt(k * (n - k) / n + Z2 / 4)
    return centre - half, centre + half


# ---- one accuracy -----------------------------------------------------------------------------------------

def test_wilson_hand_values_for_0_and_1_of_10():
    assert proportion_ci(0, 10) == pytest.approx((0.0, Z2 / (10 + Z2)), abs=1e-12)     # [0, 27.8] %
    assert proportion_ci(0, 10)[1] == pytest.approx(0.277533, abs=1e-6)
    assert proportion_ci(1, 10) == pytest.approx(wilson_by_hand(1, 10), abs=1e-12)
    assert proportion_ci(1, 10) == pytest.approx((0.017876, 0.404150), abs=1e-6)       # [1.8, 40.4] %
    assert proportion_ci(10, 10) == pytest.approx((10 / (10 + Z2), 1.0), abs=1e-12)
    for k in range(0, 51, 7):
        assert proportion_ci(k, 50) == pytest.approx(wilson_by_hand(k, 50), abs=1e-12)
    lo90, hi90 = proportion_ci(5, 10, level=0.90)
    lo95, hi95 = proportion_ci(5, 10)
    assert lo95 < lo90 < 0.5 < hi90 < hi95
    with pytest.raises(ValueError, match="0 <= k <= n"):
        proportion_ci(3, 2)
    with pytest.raises(ValueError, match="level"):
        proportion_ci(1, 2, level=95)


def test_accuracy_summary_strict_and_authors_by_hand():
    # 10 problems: 7 right; the authors' scripts keep 8 (one right answer and one wrong one left out)
    correct = [True] * 7 + [False] * 3
    authors_correct = [True] * 7 + [False] * 3
    authors_parsed = [True] * 6 + [False] + [True, False, True]
    s = accuracy_summary(correct, authors_correct, authors_parsed)
    assert (s["n"], s["n_correct"], s["strict"]) == (10, 7, 0.7)
    assert (s["strict_lo"], s["strict_hi"]) == pytest.approx(wilson_by_hand(7, 10))
    assert (s["n_parsed"], s["n_authors_correct"], s["authors"]) == (8, 6, 0.75)
    assert (s["authors_lo"], s["authors_hi"]) == pytest.approx(wilson_by_hand(6, 8))
    assert (s["level"], s["interval"]) == (0.95, "wilson")
    nothing_kept = accuracy_summary([False] * 3, [False] * 3, [False] * 3)
    assert nothing_kept["authors"] is None and nothing_kept["authors_lo"] is None and nothing_kept["n_parsed"] == 0
    # a problem marked correct but left out of the denominator never counts in the numerator
    assert accuracy_summary([True], [True], [False])["n_authors_correct"] == 0


def test_accuracy_summary_rejects_bad_input():
    with pytest.raises(ValueError, match="no grades"):
        accuracy_summary([], [], [])
    with pytest.raises(ValueError, match="one of each per problem"):
        accuracy_summary([True], [True, False], [True])
    with pytest.raises(ValueError, match=r"item #1 is 'False' \(str\)"):
        accuracy_summary([True, "False"], [True, True], [True, True])
    assert as_bools([0, 1, True, np.bool_(False)], "x").tolist() == [False, True, True, False]
    with pytest.raises(ValueError, match="expected a boolean"):
        as_bools([0.5], "x")


def test_summarize_from_grades():
    strict = [FakeGrade(True, "1")] * 7 + [FakeGrade(False, "2")] * 2 + [FakeGrade(False, None)]
    authors = [FakeGrade(True, "1")] * 7 + [FakeGrade(False, None)] * 3
    s = summarize(strict, authors)
    assert s["strict"] == 0.7 and s["n_extracted"] == 9
    assert (s["n_parsed"], s["authors"]) == (7, 1.0)
    assert s["authors_lo"] == pytest.approx(wilson_by_hand(7, 7)[0]) and s["authors_hi"] == pytest.approx(1.0)
    with pytest.raises(KeyError, match="extracted"):
        summarize([{"correct": True}], [{"correct": True}])


def wilson_coverage(n: int, p: float, rng, reps: int = 4000) -> float:
    k, times = np.unique(rng.binomial(n, p, size=reps), return_counts=True)
    return sum(t * (proportion_ci(int(v), n)[0] <= p <= proportion_ci(int(v), n)[1]) for v, t in zip(k, times)) / reps


def test_wilson_coverage_simulation():
    """Seeded simulation, 4,000 replications per cell: the 95 % interval covers the true accuracy >= 90 % of
    the time at n = 10 and 50 for p = 0.02, 0.1, 0.5 (the README gives the measured values)."""
    rng = np.random.default_rng(15)
    for n, p in product((10, 50), (0.02, 0.1, 0.5)):
        assert wilson_coverage(n, p, rng) >= 0.90, (n, p)


# ---- paired differences -----------------------------------------------------------------------------------

def test_tango_hand_values():
    # no discordant problem: +- z^2 / (n + z^2); never [0, 0]
    assert tango_ci(0, 0, 10) == pytest.approx((-Z2 / (10 + Z2), Z2 / (10 + Z2)), abs=1e-9)
    # one discordant problem (b right, a wrong), n = 10: lower (1 - z^2) / (n + z^2), upper = Wilson upper of 1/10
    lo, hi = tango_ci(1, 0, 10)
    assert lo == pytest.approx((1 - Z2) / (10 + Z2), abs=1e-9) and lo == pytest.approx(-0.205286, abs=1e-6)
    assert hi == pytest.approx(wilson_by_hand(1, 10)[1], abs=1e-9)
    assert tango_ci(0, 1, 10) == pytest.approx((-hi, -lo), abs=1e-9)   # mirror image
    # all problems discordant one way: lower bound (n - z^2) / (n + z^2), upper bound 1
    assert tango_ci(10, 0, 10) == pytest.approx(((10 - Z2) / (10 + Z2), 1.0), abs=1e-9)
    with pytest.raises(ValueError, match="b_only \\+ a_only <= n"):
        tango_ci(6, 5, 10)


def test_paired_comparison_with_one_discordant_pair():
    a = [False] + [True] * 3 + [False] * 6   # H: the first problem wrong
    b = [True] + [True] * 3 + [False] * 6    # the set: it right; every other problem the same
    cmp = paired_comparison(a, b)
    assert (cmp["both"], cmp["neither"], cmp["b_only"], cmp["a_only"]) == (3, 6, 1, 0)
    assert cmp["diff"] == pytest.approx(0.1) and (cmp["acc_a"], cmp["acc_b"]) == (0.3, 0.4)
    assert (cmp["diff_lo"], cmp["diff_hi"]) == pytest.approx((-0.205286, 0.404150), abs=1e-6)
    assert cmp["mcnemar_p"] == 1.0 and (cmp["interval"], cmp["test"]) == ("tango", "mcnemar-exact")
    same = paired_comparison([True, False, True], [True, False, True])
    assert same["diff"] == 0 and same["diff_lo"] < -0.4 and same["diff_hi"] > 0.4
    with pytest.raises(ValueError, match="same problems"):
        paired_comparison([True], [True, False])


def _score_by_brute_force(d: float, b: int, c: int, n: int) -> float:
    """Tango's statistic with the constrained MLE found numerically (no closed form)."""
    lo_q, hi_q = max(0.0, -d) + 1e-12, (1 - d) / 2 - 1e-12   # p(a only) = q, p(b only) = q + d, both >= 0
    nll = lambda q: -(b * math.log(q + d) if b else 0) - (c * math.log(q) if c else 0) \
        - (n - b - c) * math.log(max(1 - 2 * q - d, 1e-300))
    q = minimize_scalar(nll, bounds=(lo_q, hi_q), method="bounded", options={"xatol": 1e-12}).x
    return (b - c - n * d) / math.sqrt(n * (2 * q + d * (1 - d)))


@pytest.mark.parametrize("b, c, n", [(1, 0, 10), (3, 1, 10), (2, 5, 20), (12, 2, 50), (0, 0, 30), (7, 7, 40)])
def test_tango_agrees_with_a_brute_force_inversion(b, c, n):
    lo, hi = tango_ci(b, c, n)
    grid = np.linspace(-0.998, 0.998, 999)   # step 2e-3: the accepted set is one interval, from lo to hi
    inside = [d for d in grid if abs(_score_by_brute_force(d, b, c, n)) <= Z]
    assert min(inside) == pytest.approx(lo, abs=2.1e-3) and max(inside) == pytest.approx(hi, abs=2.1e-3)
    assert all(lo <= d <= hi for d in inside)
    for bound, inward in ((lo, 1), (hi, -1)):   # the brute-force statistic crosses z right at each bound
        if abs(bound) < 0.999:
            assert abs(_score_by_brute_force(bound + inward * 1e-4, b, c, n)) < Z
            assert abs(_score_by_brute_force(bound - inward * 1e-4, b, c, n)) > Z
    assert abs(tango_statistic(lo, b, c, n)) == pytest.approx(Z, abs=1e-6)
    assert tango_statistic(0.0, b, c, n) == pytest.approx((b - c) / math.sqrt(b + c) if b + c else 0.0)


TANGO_SCENARIOS = [  # P(both right), P(only the set right), P(only H right)
    (0.0004, 0.0196, 0.0196),   # both 2 %, independent
    (0.01, 0.01, 0.01),         # both 2 %, correlated
    (0.05, 0.05, 0.05),         # both 10 %
    (0.25, 0.25, 0.25),         # both 50 %, independent
    (0.45, 0.05, 0.05),         # both 50 %, correlated
    (0.49, 0.02, 0.0),          # near-identical students at 50 %
    (0.05, 0.45, 0.05),         # 10 % vs 50 %
    (0.0, 0.1, 0.02),           # 10 % vs 2 %, never both right
]


def tango_coverage(n: int, scenario, rng, reps: int = 2000) -> float:
    p11, p10, p01 = scenario
    counts = rng.multinomial(n, [p11, p10, p01, 1 - p11 - p10 - p01], size=reps)[:, 1:3]
    tables, times = np.unique(counts, axis=0, return_counts=True)
    covered = 0
    for (b, c), t in zip(tables, times):
        lo, hi = tango_ci(int(b), int(c), n)
        covered += t * (lo <= p10 - p01 <= hi)
    return covered / reps


def test_tango_coverage_simulation():
    """Seeded simulation of paired tables, 2,000 per cell: coverage >= 90 % at n = 10 and 50 for accuracies
    0.02, 0.1, 0.5, including two near-identical students (where Newcombe's method 10 falls to 65-80 %)."""
    rng = np.random.default_rng(16)
    for n, scenario in product((10, 50), TANGO_SCENARIOS):
        assert tango_coverage(n, scenario, rng) >= 0.90, (n, scenario)


def test_mcnemar_exact_hand_examples():
    # discordant 8 vs 2: p = 2 * (C(10,0) + C(10,1) + C(10,2)) / 2**10 = 2 * 56 / 1024
    assert mcnemar_exact(8, 2) == pytest.approx(0.109375, abs=1e-12)
    assert mcnemar_exact(2, 8) == pytest.approx(0.109375, abs=1e-12)
    assert mcnemar_exact(10, 0) == pytest.approx(2 / 1024, abs=1e-15)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert 0 < mcnemar_exact(600, 400) < 1e-9
    with pytest.raises(ValueError, match=">= 0"):
        mcnemar_exact(-1, 2)


def test_exact_mcnemar_significance_implies_the_interval_excludes_zero():
    """The documented agreement: p_exact < 0.05 => 0 outside the 95 % Tango interval; not conversely."""
    for b in range(41):
        for c in range(41 - b):
            lo, hi = tango_ci(b, c, 60)
            if mcnemar_exact(b, c) < 0.05:
                assert not lo <= 0 <= hi, (b, c)
    lo, hi = tango_ci(0, 5, 10)           # the converse fails: 0 vs 5 discordant problems
    assert hi < 0 and mcnemar_exact(0, 5) == pytest.approx(0.0625)


# ---- multiple comparisons and the trend test ---------------------------------------------------------------

def test_holm_hand_example():
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, max(0.03, 2 * 0.03), max(0.06, 1 * 0.04), in the input order
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0]) and holm([0.02]) == [0.02] and holm([]) == []
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.1, 1.5])


def constructed_trend():
    """10 problems at 0 / 50 / 100 % flawed: 4 solved at 0 and 50 only, 2 at 0 only, 4 never."""
    return [[True, True, False]] * 4 + [[True, False, False]] * 2 + [[False, False, False]] * 4


def test_trend_test_on_a_constructed_example():
    out = trend_test(constructed_trend(), [0, 50, 100], n_perm=20000, seed=3)
    # centred scores -50, 0, 50: T = 4 * (-50) + 2 * (-50) = -300; each informative problem has variance
    # s (J - s) / (J - 1) * sum(xc^2) / J = 1 * 5000 / 3, six of them: 10000 -> z = -300 / 100 = -3
    assert out["z"] == pytest.approx(-3.0) and out["p_asymptotic"] == pytest.approx(0.0026998, abs=1e-6)
    assert out["accuracy"] == pytest.approx([0.6, 0.4, 0.0]) and out["slope"] == pytest.approx(-0.6)
    assert (out["n"], out["n_informative"], out["n_perm"], out["seed"]) == (10, 6, 20000, 3)
    # exact permutation p: each informative problem's pattern lands on one of 3 equally likely positions
    patterns = [(1, 1, 0)] * 4 + [(1, 0, 0)] * 2
    shifts = {pat: sorted({tuple(np.roll(pat, r)) for r in range(3)}) for pat in set(patterns)}
    xc = np.array([-50, 0, 50])
    hits = total = 0
    for choice in product(*[shifts[p] for p in patterns]):
        total += 1
        hits += abs(sum(np.dot(xc, c) for c in choice)) >= 300 - 1e-9
    assert out["p"] == pytest.approx(hits / total, abs=0.005)
    assert trend_test(constructed_trend(), [0, 50, 100], n_perm=500, seed=3) == \
        trend_test(constructed_trend(), [0, 50, 100], n_perm=500, seed=3)          # seeded


def test_trend_test_with_two_levels_is_mcnemar_and_rejects_bad_input():
    # 3 problems right only at 100 %, 1 only at 0 %
    y = [[False, True]] * 3 + [[True, False]] + [[True, True]] * 2 + [[False, False]] * 4
    out = trend_test(y, [0, 100], n_perm=20000, seed=0)
    assert out["z"] == pytest.approx((3 - 1) / math.sqrt(4))
    assert out["p"] == pytest.approx(mcnemar_exact(3, 1), abs=0.01)   # the permutation law is Binomial(4, 1/2)
    flat = trend_test([[True, True], [False, False]], [0, 100], n_perm=10)
    assert flat["z"] == 0.0 and flat["p"] == 1.0 and flat["n_informative"] == 0
    with pytest.raises(ValueError, match="one column per level"):
        trend_test([[True, False]], [0, 50, 100])
    with pytest.raises(ValueError, match="distinct"):
        trend_test([[True, False]], [50, 50])
    with pytest.raises(ValueError, match="expected a boolean"):
        trend_test([["False", True]], [0, 100])


def test_trend_test_holds_its_level_when_pct_has_no_effect():
    """Problems of very different difficulty, no effect of pct: the 5 % test rejects about 5 % of the time."""
    rng = np.random.default_rng(7)
    difficulty = rng.uniform(0.02, 0.98, size=30)
    rejections = sum(trend_test(rng.random((30, 5)) < difficulty[:, None], [0, 25, 50, 75, 100],
                                n_perm=199, seed=i)["p"] < 0.05 for i in range(300))
    assert rejections / 300 <= 0.08


# ---- the optional bootstrap --------------------------------------------------------------------------------

def test_bootstrap_ci_is_the_percentile_bootstrap_and_is_seeded():
    n, k = 200, 140
    lo, hi = bootstrap_ci([True] * k + [False] * (n - k), n_boot=10000, seed=0)
    assert lo == pytest.approx(0.636, abs=0.01) and hi == pytest.approx(0.764, abs=0.01)
    assert bootstrap_ci([True, False] * 10, seed=3) == bootstrap_ci([True, False] * 10, seed=3)
    assert bootstrap_ci([False] * 10) == (0.0, 0.0)   # why the table does not use it (issue #15)
    with pytest.raises(ValueError, match="no values"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci([True], n_boot=0)


def test_bootstrap_chunking_covers_every_resample(monkeypatch):
    import sot.metrics as m
    monkeypatch.setattr(m, "_CHUNK_CELLS", 7)  # forces many tiny chunks, the last one partial
    stats = m._bootstrap_means(np.array([0.0, 1.0, 1.0]), n_boot=10, seed=0)
    assert stats.shape == (10,) and set(np.round(stats * 3).astype(int)) <= {0, 1, 2, 3}


def test_statsmodels_wilson_is_what_proportion_ci_returns():
    assert proportion_ci(3, 17) == pytest.approx(proportion_confint(3, 17, alpha=0.05, method="wilson"))
