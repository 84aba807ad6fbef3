"""Accuracy over graded test problems with intervals of known coverage, paired comparisons, Holm's correction
and a trend test over the flawed fraction.

Accuracy (`accuracy_summary`, `summarize`)
- strict  = correct / all problems; an output whose answer could not be parsed counts as wrong. The headline.
- authors = correct / problems kept by the paper authors' scripts, from `task.grade_authors` (their scoring
  rule; `extracted` is None exactly when their scripts leave the problem out of the denominator).
  `n_parsed` is that denominator, printed beside the authors' accuracy.

Interval for one accuracy: the Wilson score interval (statsmodels `proportion_confint(method="wilson")`).
Why Wilson rather than Clopper-Pearson: both are far from the percentile bootstrap, which prints 0/10 as
[0, 0] and covers 10 % of the time at n = 10. Clopper-Pearson never covers less than the nominal 95 % but is
conservative (mean coverage over p in [0.01, 0.99]: 98.4 % at n = 10, 96.9 % at n = 50), i.e. wider than
needed exactly where the demo's 10 problems already give intervals 28-53 points wide (1/10: [0.3, 44.5] % against
Wilson's [1.8, 40.4] %). Wilson's mean coverage is 95.4 % / 95.2 %
/ 95.1 % at n = 10 / 50 / 200; its worst case over that range of p is 84 % / 89.5 % / 93.3 % at isolated p
(exact binomial sums, computed for this docstring). Wilson is also the score interval: the same construction
(inverting the score test) as the paired interval below, so the accuracy intervals and the difference
intervals answer their questions the same way. 0/10 gives [0, 27.8] %, 1/10 [1.8, 40.4] %.
The authors' interval is Wilson on (authors' correct, n_parsed): conditional on which problems their scripts
kept, as their metric itself is.

Paired difference (`paired_comparison`: set b minus reference a on the same problems, aligned by the caller):
Tango's (1998) asymptotic score interval for a difference of paired proportions, implemented here from its
formula (statsmodels has no interval for paired proportions): the set of d for which the score statistic
T(d) = (b_only - a_only - n d) / sqrt(n (2 q(d) + d (1 - d))), with q(d) the maximum-likelihood P(a right, b
wrong) under difference d, satisfies |T(d)| <= z. It depends only on the discordant counts and n.
Why not Newcombe's method 10 (the square-and-add interval from the two Wilson intervals with a correlation
correction): when the two students agree on every problem and the accuracy is near 50 %, its correlation
term collapses the interval to [0, 0]; two near-identical students (p = 0.5, 2 % of problems solved by one
only) get 80 % coverage at n = 10 and 65 % at n = 30, where Tango's interval covers 100 % (exact enumeration
of all tables). With no discordant problem Tango gives +-z^2/(n + z^2) (+-27.8 points at n = 10), with one
(set right, H wrong, n = 10) [-20.5, +40.4] points.

Test: the exact McNemar test (statsmodels `mcnemar(exact=True)`: binomial test on the discordant pairs). The
Tango interval excludes 0 exactly when the asymptotic McNemar test (no continuity correction) rejects; the
exact test is the more conservative one, so an exact p < 0.05 always comes with a 95 % interval that excludes
0 (checked for every table with up to 3,000 discordant problems), but not conversely: with 0 vs 4 or 5,
1 vs 7, 2 vs 9 ... discordant problems the interval excludes 0 while the exact p is >= 0.05.

Multiple comparisons: `holm` (statsmodels `multipletests(method="holm")`), applied by sot.evaluate.panel
over every test of one (task, student) panel; the stars use the adjusted p.

Trend over the flawed fraction (`trend_test`): outcomes of the same problems after training at each pct.
The statistic is the Cochran-Mantel-Haenszel linear-trend (correlation) statistic with each problem as its
own stratum: sum over problems and levels of (pct - mean pct) x correct. Its p-value is a permutation test
within problems (each problem's outcomes shuffled across the levels: exact under "pct does not change which
problems are solved", whatever the problem difficulties), Monte Carlo with n_perm shuffles and a seed; the
normal approximation (z, p_asymptotic) is reported beside it. With two levels it is McNemar's test.
Chosen over Cochran-Armitage on the per-set accuracies, which treats the sets as independent samples although
they are the same problems (it ignores the pairing and loses power), and over a GEE / logistic model with
problem as cluster, whose sandwich errors are unreliable with few clusters (10 test problems in the demo) and
which fails when a set solves none or all problems (separation). `slope` is the least-squares change in
accuracy per 100 percentage points of flawed traces (a description; the test is the permutation p).

Bootstrap (`bootstrap_ci`): an optional extra (percentile bootstrap over problems), kept for comparison in
the evaluate summary; the table and figures never use it (it under-covers at small n, see issue #15).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.optimize import brentq
from scipy.stats import norm
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

_CHUNK_CELLS = 4_000_000  # resampled values held in memory at once (about 32 MB of int64 / float64)


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")


def _z(level: float) -> float:
    _check_level(level)
    return float(norm.ppf(0.5 + level / 2))


def as_bools(values: Sequence, what: str) -> np.ndarray:
    """A 1-d boolean array; only booleans (or the integers 0 and 1) are accepted, never e.g. the string "False"."""
    values = list(values)
    for i, v in enumerate(values):
        if not (isinstance(v, (bool, np.bool_)) or (isinstance(v, (int, np.integer)) and v in (0, 1))):
            raise ValueError(f"{what}: item #{i} is {v!r} ({type(v).__name__}); expected a boolean")
    return np.array(values, dtype=bool).reshape(-1)


def _field(grade, name: str):
    if isinstance(grade, Mapping):
        if name not in grade:
            raise KeyError(f"grade record {dict(grade)!r} has no field {name!r}; expected a Grade or a row "
                           "with 'correct' and 'extracted'")
        return grade[name]
    return getattr(grade, name)


def proportion_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of k successes in n trials (statsmodels), clipped to [0, 1]."""
    _check_level(level)
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"proportion_ci: need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    lo, hi = proportion_confint(k, n, alpha=1 - level, method="wilson")
    return max(0.0, float(lo)), min(1.0, float(hi))


def accuracy_summary(correct: Sequence, authors_correct: Sequence, authors_parsed: Sequence,
                     level: float = 0.95) -> dict:
    """Strict and authors' accuracy with Wilson intervals from three per-problem boolean lists.

    Returns {"n", "n_correct", "strict", "strict_lo", "strict_hi", "n_parsed", "n_authors_correct",
    "authors", "authors_lo", "authors_hi", "level", "interval"}; the authors' fields are None when their
    scripts kept no problem. The authors' numerator counts kept problems only.
    """
    c = as_bools(correct, "correct")
    ac = as_bools(authors_correct, "authors_correct")
    ap = as_bools(authors_parsed, "authors_parsed")
    if not c.size == ac.size == ap.size:
        raise ValueError(f"accuracy_summary: {c.size} strict grades, {ac.size} authors' grades and "
                         f"{ap.size} parsed flags; give one of each per problem")
    if c.size == 0:
        raise ValueError("accuracy_summary: no grades given (empty test set?)")
    n, k = int(c.size), int(c.sum())
    n_parsed, k_authors = int(ap.sum()), int((ac & ap).sum())
    out = {"n": n, "n_correct": k, "strict": k / n}
    out["strict_lo"], out["strict_hi"] = proportion_ci(k, n, level)
    out.update(n_parsed=n_parsed, n_authors_correct=k_authors,
               authors=k_authors / n_parsed if n_parsed else None)
    out["authors_lo"], out["authors_hi"] = proportion_ci(k_authors, n_parsed, level) if n_parsed else (None, None)
    out.update(level=level, interval="wilson")
    return out


def summarize(grades: Sequence, authors_grades: Sequence, level: float = 0.95) -> dict:
    """accuracy_summary() from Grades (or row-like mappings): strict from `grades`, authors' from `authors_grades`.

    Adds "n_extracted": problems where our strict parser found an answer.
    """
    out = accuracy_summary([bool(_field(g, "correct")) for g in grades],
                           [bool(_field(g, "correct")) for g in authors_grades],
                           [_field(g, "extracted") is not None for g in authors_grades], level)
    out["n_extracted"] = sum(_field(g, "extracted") is not None for g in grades)
    return out


def mcnemar_exact(b_only: int, a_only: int) -> float:
    """Exact two-sided McNemar p-value (statsmodels): binomial(b_only + a_only, 1/2) test on the discordant pairs."""
    if b_only < 0 or a_only < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b_only}, {a_only}")
    if b_only + a_only == 0:
        return 1.0
    return float(mcnemar([[0, a_only], [b_only, 0]], exact=True).pvalue)


def tango_statistic(d: float, b_only: int, a_only: int, n: int) -> float:
    """Tango's score statistic for H0: P(b right) - P(a right) = d, from the discordant counts and n."""
    A = 2 * n
    B = -b_only - a_only + (2 * n - b_only + a_only) * d
    C = -a_only * d * (1 - d)
    root = math.sqrt(max(B * B - 4 * A * C, 0.0))
    q = (root - B) / (2 * A) if B <= 0 else -2 * C / (B + root)  # the positive root, without cancellation
    var = n * (2 * q + d * (1 - d))
    num = b_only - a_only - n * d
    if var <= 0:
        return 0.0 if num == 0 else math.copysign(math.inf, num)
    return num / math.sqrt(var)


def tango_ci(b_only: int, a_only: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Tango's score interval for the paired difference (b_only - a_only) / n (see the module docstring)."""
    z = _z(level)
    if n < 1 or b_only < 0 or a_only < 0 or b_only + a_only > n:
        raise ValueError(f"tango_ci: need 0 <= b_only + a_only <= n, got {b_only}, {a_only}, n={n}")
    est, eps = (b_only - a_only) / n, 1e-12
    lo = -1.0 if est <= -1 + eps else brentq(lambda d: tango_statistic(d, b_only, a_only, n) - z,
                                              -1 + eps, est, xtol=1e-12)
    hi = 1.0 if est >= 1 - eps else brentq(lambda d: tango_statistic(d, b_only, a_only, n) + z,
                                            est, 1 - eps, xtol=1e-12)
    return float(lo), float(hi)


def paired_comparison(a: Sequence, b: Sequence, level: float = 0.95) -> dict:
    """Compare b against a on the same problems (same order).

    Returns {"n", "acc_a", "acc_b", "diff" (= acc_b - acc_a), "diff_lo", "diff_hi" (Tango), "b_only" (b right,
    a wrong), "a_only", "both", "neither", "mcnemar_p" (exact), "level", "interval", "test"}.
    """
    xa, xb = as_bools(a, "paired_comparison a"), as_bools(b, "paired_comparison b")
    if xa.size != xb.size:
        raise ValueError(f"paired_comparison: a has {xa.size} problems and b has {xb.size}; "
                         "both must be graded on the same problems in the same order")
    if xa.size == 0:
        raise ValueError("paired_comparison: no problems given")
    n, b_only, a_only = int(xa.size), int((xb & ~xa).sum()), int((xa & ~xb).sum())
    lo, hi = tango_ci(b_only, a_only, n, level)
    return {"n": n, "acc_a": float(xa.mean()), "acc_b": float(xb.mean()), "diff": (b_only - a_only) / n,
            "diff_lo": lo, "diff_hi": hi, "b_only": b_only, "a_only": a_only, "both": int((xa & xb).sum()),
            "neither": int((~xa & ~xb).sum()), "mcnemar_p": mcnemar_exact(b_only, a_only), "level": level,
            "interval": "tango", "test": "mcnemar-exact"}


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (statsmodels multipletests), same order; the family is the whole list."""
    p = np.asarray(list(p_values), dtype=float)
    if p.size == 0:
        return []
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError(f"holm: p-values must lie in [0, 1], got {p.tolist()}")
    return [float(v) for v in multipletests(p, method="holm")[1]]


def trend_test(outcomes, levels: Sequence[float], n_perm: int = 2000, seed: int = 0) -> dict:
    """Trend of correctness over `levels` (% flawed) on the same problems; see the module docstring.

    outcomes: (problems x levels) booleans; column j = graded after training at levels[j].
    Returns {"n", "levels", "accuracy", "slope" (accuracy change per 100 pct points), "z", "p_asymptotic",
    "p" (permutation within problems: (1 + #|T*| >= |T|) / (1 + n_perm)), "n_perm", "seed", "n_informative"}.
    """
    y = np.asarray(outcomes)
    if y.ndim != 2 or y.shape[1] != len(levels) or y.shape[1] < 2 or y.shape[0] == 0:
        raise ValueError(f"trend_test: outcomes must be (problems x levels) with >= 2 levels and one column per "
                         f"level; got shape {y.shape} for levels {list(levels)}")
    y = np.vstack([as_bools(row, f"trend_test row #{i}") for i, row in enumerate(y.tolist())]).astype(float)
    x = np.asarray(levels, dtype=float)
    if len(set(x.tolist())) != x.size:
        raise ValueError(f"trend_test: levels must be distinct, got {list(levels)}")
    if n_perm < 1:
        raise ValueError(f"trend_test: n_perm must be >= 1, got {n_perm}")
    xc, n_levels = x - x.mean(), x.size
    acc = y.mean(axis=0)
    s = y.sum(axis=1)
    informative = y[(s > 0) & (s < n_levels)]  # problems solved at every level or none carry no information
    stat = float((informative @ xc).sum())   # sum of (pct - mean pct) x correct; its null mean is 0
    k = informative.sum(axis=1)
    var = float((k * (n_levels - k) / (n_levels - 1)).sum() * (xc @ xc) / n_levels)
    z = stat / math.sqrt(var) if var > 0 else 0.0
    count = 0
    if informative.size:
        rng = np.random.default_rng(seed)
        per_chunk = max(1, _CHUNK_CELLS // informative.size)
        for start in range(0, n_perm, per_chunk):
            m = min(per_chunk, n_perm - start)
            shuffled = rng.permuted(np.broadcast_to(informative, (m, *informative.shape)), axis=-1)
            count += int((np.abs((shuffled @ xc).sum(axis=1)) >= abs(stat) - 1e-9).sum())
    else:
        count = n_perm  # nothing to permute: every shuffle equals the observed table
    return {"n": int(y.shape[0]), "levels": [float(v) for v in x], "accuracy": [float(v) for v in acc],
            "slope": float(100 * (xc @ acc) / (xc @ xc)), "z": z, "p_asymptotic": float(2 * norm.sf(abs(z))),
            "p": (1 + count) / (1 + n_perm), "n_perm": int(n_perm), "seed": int(seed),
            "n_informative": int(informative.shape[0])}


def _bootstrap_means(x: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Means of n_boot resamples (with replacement) of x; rows of indices drawn in memory-bounded chunks."""
    rng = np.random.default_rng(seed)
    n = x.size
    rows_per_chunk = max(1, _CHUNK_CELLS // n)
    out = np.empty(n_boot, dtype=float)
    for start in range(0, n_boot, rows_per_chunk):
        stop = min(n_boot, start + rows_per_chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = x[idx].mean(axis=1)
    return out


def bootstrap_ci(correct: Sequence, n_boot: int = 10000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `correct` (optional extra; under-covers at small n)."""
    _check_level(level)
    x = as_bools(correct, "bootstrap_ci").astype(float)
    if x.size == 0:
        raise ValueError("bootstrap_ci: no values given")
    if n_boot < 1:
        raise ValueError(f"bootstrap_ci: n_boot must be >= 1, got {n_boot}")
    alpha = (1 - level) / 2
    lo, hi = np.quantile(_bootstrap_means(x, n_boot, seed), [alpha, 1 - alpha])
    return float(lo), float(hi)
