"""Statistics for comparing losses: mean ± std and Welch's t-test against a baseline (scipy)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats as sps


@dataclasses.dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample standard deviation (ddof=1), as the paper's "±"


def summarize(values) -> Summary:
    v = np.asarray(list(values), np.float64)
    if v.size == 0:
        return Summary(0, math.nan, math.nan)
    return Summary(int(v.size), float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0)


def welch(a, b, alternative: str = "two-sided") -> float:
    """p-value of Welch's t-test of mean(a) vs mean(b).

    ``alternative="greater"`` tests mean(a) > mean(b) (the paper's one-sided tests against
    cross-entropy). NaN when either side has fewer than two values.
    """
    a, b = np.asarray(list(a), np.float64), np.asarray(list(b), np.float64)
    if a.size < 2 or b.size < 2:
        return math.nan
    return float(sps.ttest_ind(a, b, equal_var=False, alternative=alternative).pvalue)
