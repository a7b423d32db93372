"""Statistics for comparing losses (paper §3.5, Tables 3, 4, 8–11), all through scipy.stats.

- ``summarize``: n, mean and sample standard deviation (ddof=1) — the paper's "mean ± std".
- ``welch``: Welch's unequal-variance t-test of a loss against cross-entropy;
  ``alternative="greater"`` is the one-sided test "mean(a) > mean(b)" of Tables 4 and 8.
- ``paired``: the paired t-test of two sets of runs matched by seed (a side note to Welch's:
  the paper's tests are unpaired).
- ``bootstrap_ci``: a bootstrap confidence interval of the mean (BCa, fixed seed).
- ``kendall_tau``: Kendall's τ-b between two scorings of the same losses (surrogate vs full,
  Table 3), with its p-value.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps


@dataclasses.dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample standard deviation (ddof=1), as the paper's "±"


def _array(values) -> np.ndarray:
    return np.asarray(list(values), np.float64)


def summarize(values) -> Summary:
    v = _array(values)
    if v.size == 0:
        return Summary(0, math.nan, math.nan)
    return Summary(int(v.size), float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0)


def welch(a, b, alternative: str = "two-sided") -> float:
    """p-value of Welch's t-test of mean(a) vs mean(b).

    ``alternative="greater"`` tests mean(a) > mean(b) (the paper's one-sided tests against
    cross-entropy). NaN when either side has fewer than two values.
    """
    a, b = _array(a), _array(b)
    if a.size < 2 or b.size < 2:
        return math.nan
    return float(sps.ttest_ind(a, b, equal_var=False, alternative=alternative).pvalue)


def paired(a, b) -> float:
    """Two-sided p-value of the paired t-test of ``a[i] - b[i]`` (runs matched by seed) against
    0. NaN with fewer than two pairs; 1.0 when every difference is the same zero, 0.0 when
    every difference is the same non-zero value (no spread: the t statistic is infinite)."""
    a, b = _array(a), _array(b)
    if a.shape != b.shape:
        raise ValueError(f"paired needs matched runs, got {a.size} and {b.size} values")
    if a.size < 2:
        return math.nan
    d = a - b
    if np.all(d == d[0]):
        return 1.0 if d[0] == 0 else 0.0
    return float(sps.ttest_rel(a, b).pvalue)


def bootstrap_ci(values, confidence: float = 0.95, n_resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """BCa bootstrap confidence interval of the mean; (nan, nan) with fewer than 2 distinct
    values (the interval is undefined)."""
    v = _array(values)
    if v.size < 2 or np.all(v == v[0]):
        return math.nan, math.nan
    res = sps.bootstrap((v,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                        rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Kendall's τ-b between two scorings of the same items and its two-sided p-value.

    ``x[i]`` and ``y[i]`` score item i (e.g. a loss's surrogate fitness and its full-protocol
    accuracy). NaN with fewer than two items.
    """
    a, b = _array(x), _array(y)
    if a.shape != b.shape:
        raise ValueError(f"kendall_tau needs two scorings of the same items, got {a.size} "
                         f"and {b.size} values")
    if a.size < 2:
        return math.nan, math.nan
    res = sps.kendalltau(a, b)
    return float(res.statistic), float(res.pvalue)


def format_p(p: float | None) -> str:
    """The paper's p-value notation: ``p < 0.001`` or ``p = 0.047``; ``-`` for none."""
    if p is None:
        return "-"
    return "n/a" if p != p else ("p < 0.001" if p < 0.001 else f"p = {p:.3f}")
