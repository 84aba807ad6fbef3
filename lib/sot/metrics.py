"""Accuracy, bootstrap intervals and paired comparisons over graded test problems.

Two accuracies are reported for every evaluation:
- strict  = correct / all problems. An output whose answer could not be parsed counts as wrong.
  This is the number we report.
- authors = correct / problems whose answer parsed (Grade.extracted is not None). The authors' public
  evaluation code leaves unparseable outputs out of the denominator; we report it beside strict so the
  two can be compared with the paper. Its numerator counts only parsed problems.

Intervals are percentile bootstraps over problems (resampling test problems with replacement). The
authors' interval (`authors_ci`) resamples the parsed problems only, i.e. it treats which problems parsed
as fixed; it therefore ignores the uncertainty in the parse rate and is a little narrower than a
bootstrap of the ratio over all problems would be.

`paired_comparison` compares two students on the same problems (same order): difference b - a with a
paired bootstrap interval (the same resampled problems for both) and the exact two-sided McNemar test
(a binomial test on the discordant pairs, computed with integer arithmetic, no scipy).

Grades may be `sot.tasks.Grade` objects or mappings with keys "correct" and "extracted" (the rows that
`sot.evaluate.evaluate` writes), so metrics can be recomputed from stored rows.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

_CHUNK_CELLS = 4_000_000  # resampled values held in memory at once (about 32 MB of int64 indices)


def _field(grade, name: str):
    if isinstance(grade, Mapping):
        if name not in grade:
            raise KeyError(f"grade record {dict(grade)!r} has no field {name!r}; expected a Grade or a row "
                           "with 'correct' and 'extracted'")
        return grade[name]
    return getattr(grade, name)


def _as_bool_array(values: Sequence, what: str) -> np.ndarray:
    arr = np.asarray(list(values))
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a flat list of booleans, got shape {arr.shape}")
    if arr.size and not np.isin(arr, (0, 1, True, False)).all():
        raise ValueError(f"{what}: expected booleans (or 0/1), got values {sorted(set(arr.tolist()))[:5]}")
    return arr.astype(bool)


def correct_and_parsed(grades: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Two boolean arrays (correct, parsed) from Grades or row dicts; parsed = extracted is not None."""
    correct = np.array([bool(_field(g, "correct")) for g in grades], dtype=bool)
    parsed = np.array([_field(g, "extracted") is not None for g in grades], dtype=bool)
    return correct, parsed


def accuracy(grades: Sequence) -> dict:
    """{"strict", "authors", "n", "n_parsed", "n_correct"}; authors is None when nothing parsed."""
    correct, parsed = correct_and_parsed(grades)
    n = int(correct.size)
    if n == 0:
        raise ValueError("accuracy: no grades given (empty test set?)")
    n_parsed = int(parsed.sum())
    n_correct = int(correct.sum())
    n_correct_parsed = int((correct & parsed).sum())
    return {
        "strict": n_correct / n,
        "authors": n_correct_parsed / n_parsed if n_parsed else None,
        "n": n,
        "n_parsed": n_parsed,
        "n_correct": n_correct,
    }


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


def _percentiles(stats: np.ndarray, level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    alpha = (1 - level) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return float(lo), float(hi)


def bootstrap_ci(correct: Sequence[bool], n_boot: int = 10000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `correct`, resampling problems with replacement."""
    x = _as_bool_array(correct, "bootstrap_ci").astype(float)
    if x.size == 0:
        raise ValueError("bootstrap_ci: no values given")
    if n_boot < 1:
        raise ValueError(f"bootstrap_ci: n_boot must be >= 1, got {n_boot}")
    return _percentiles(_bootstrap_means(x, n_boot, seed), level)


def authors_ci(grades: Sequence, n_boot: int = 10000, level: float = 0.95,
               seed: int = 0) -> tuple[float | None, float | None]:
    """Bootstrap interval of the authors' accuracy: resamples the parsed problems only ((None, None) if none)."""
    correct, parsed = correct_and_parsed(grades)
    if not parsed.any():
        return None, None
    return bootstrap_ci(correct[parsed], n_boot=n_boot, level=level, seed=seed)


def mcnemar_exact(b_only: int, a_only: int) -> float:
    """Exact two-sided McNemar p-value: binomial(b_only + a_only, 1/2) test on the discordant pairs."""
    if b_only < 0 or a_only < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b_only}, {a_only}")
    n = b_only + a_only
    if n == 0:
        return 1.0
    k = min(b_only, a_only)
    tail = sum(math.comb(n, i) for i in range(k + 1))  # P(X <= k) * 2**n, exact integers
    return min(1.0, (2 * tail) / 2 ** n)


def paired_comparison(a: Sequence[bool], b: Sequence[bool], n_boot: int = 10000, level: float = 0.95,
                      seed: int = 0) -> dict:
    """Compare b against a on the same problems (same order).

    Returns {"n", "acc_a", "acc_b", "diff" (= acc_b - acc_a), "diff_lo", "diff_hi", "b_only" (b right,
    a wrong), "a_only", "both", "neither", "mcnemar_p", "level", "n_boot", "seed"}.
    """
    xa = _as_bool_array(a, "paired_comparison a")
    xb = _as_bool_array(b, "paired_comparison b")
    if xa.size != xb.size:
        raise ValueError(f"paired_comparison: a has {xa.size} problems and b has {xb.size}; "
                         "both must be graded on the same problems in the same order")
    if xa.size == 0:
        raise ValueError("paired_comparison: no problems given")
    d = xb.astype(float) - xa.astype(float)  # per-problem difference; its bootstrap is the paired one
    lo, hi = _percentiles(_bootstrap_means(d, n_boot, seed), level)
    b_only = int((xb & ~xa).sum())
    a_only = int((xa & ~xb).sum())
    return {
        "n": int(xa.size),
        "acc_a": float(xa.mean()),
        "acc_b": float(xb.mean()),
        "diff": float(d.mean()),
        "diff_lo": lo,
        "diff_hi": hi,
        "b_only": b_only,
        "a_only": a_only,
        "both": int((xa & xb).sum()),
        "neither": int((~xa & ~xb).sum()),
        "mcnemar_p": mcnemar_exact(b_only, a_only),
        "level": level,
        "n_boot": n_boot,
        "seed": seed,
    }


def summarize(grades: Sequence, n_boot: int = 10000, level: float = 0.95, seed: int = 0) -> dict:
    """accuracy() plus strict_lo/strict_hi (bootstrap_ci) and authors_lo/authors_hi (authors_ci)."""
    acc = accuracy(grades)
    correct, _ = correct_and_parsed(grades)
    acc["strict_lo"], acc["strict_hi"] = bootstrap_ci(correct, n_boot=n_boot, level=level, seed=seed)
    acc["authors_lo"], acc["authors_hi"] = authors_ci(grades, n_boot=n_boot, level=level, seed=seed)
    acc.update(level=level, n_boot=n_boot, seed=seed)
    return acc
