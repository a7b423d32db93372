import math

import numpy as np
import pytest
from scipy import stats as sps

from lfe.core import stats

RNG = np.random.default_rng(0)
A, B = RNG.normal(58.7, 0.45, 30), RNG.normal(58.47, 0.57, 30)


def test_summary_is_mean_and_sample_std():
    s = stats.summarize([1.0, 2.0, 4.0])
    assert (s.n, s.mean) == (3, pytest.approx(7 / 3))
    assert s.std == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2
                                             + (4 - 7 / 3) ** 2) / 2))
    assert stats.summarize([5.0]).std == 0.0 and stats.summarize([]).n == 0


def test_welch_matches_scipy_both_sides():
    ref = sps.ttest_ind(A, B, equal_var=False)
    p_two_sided, p_greater = stats.welch(A, B), stats.welch(A, B, "greater")
    assert p_two_sided == pytest.approx(ref.pvalue)
    assert p_greater == pytest.approx(
        sps.ttest_ind(A, B, equal_var=False, alternative="greater").pvalue)
    # one-sided is half the two-sided p when t > 0
    assert p_greater == pytest.approx(p_two_sided / 2 if ref.statistic > 0
                                      else 1 - p_two_sided / 2)


def test_welch_by_hand():
    # a = [1, 2, 3] (var 1), b = [2, 4, 6] (var 4): t = -2 / sqrt(1/3 + 4/3) = -1.5492,
    # Welch-Satterthwaite df = (5/3)^2 / ((1/3)^2/2 + (4/3)^2/2) = 2.9412
    t, df = -2 / math.sqrt(5 / 3), (5 / 3) ** 2 / ((1 / 3) ** 2 / 2 + (4 / 3) ** 2 / 2)
    assert t == pytest.approx(-1.549193) and df == pytest.approx(2.941176, rel=1e-6)
    assert stats.welch([1, 2, 3], [2, 4, 6]) == pytest.approx(2 * sps.t.cdf(t, df))
    assert stats.welch([1, 2, 3], [2, 4, 6], "greater") == pytest.approx(sps.t.sf(t, df))
    assert math.isnan(stats.welch([1], [2, 3]))


def test_kendall_tau_matches_scipy_and_hand_count():
    x, y = RNG.normal(size=12), RNG.normal(size=12)
    tau, p = stats.kendall_tau(x, y)
    ref = sps.kendalltau(x, y)
    assert (tau, p) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))
    # by hand: rankings (1,2,3,4) vs (1,3,2,4): 5 concordant, 1 discordant pair -> 4/6
    assert stats.kendall_tau([1, 2, 3, 4], [10, 30, 20, 40])[0] == pytest.approx(4 / 6)
    assert stats.kendall_tau([1, 2, 3], [3, 2, 1])[0] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="same items"):
        stats.kendall_tau([1, 2], [1, 2, 3])


def test_bootstrap_ci_brackets_the_mean_and_is_reproducible():
    low, high = stats.bootstrap_ci(A)
    assert low < A.mean() < high
    ref = sps.bootstrap((A,), np.mean, n_resamples=2000, rng=np.random.default_rng(0))
    assert (low, high) == (pytest.approx(ref.confidence_interval.low),
                           pytest.approx(ref.confidence_interval.high))
    assert math.isnan(stats.bootstrap_ci([1.0, 1.0])[0])


def test_p_value_notation():
    assert stats.format_p(0.0004) == "p < 0.001" and stats.format_p(0.0471) == "p = 0.047"
    assert stats.format_p(None) == "-"


def test_paired_t_test_by_hand():
    # differences 1, 2, 3: mean 2, sample std 1, t = 2 / (1 / sqrt(3)) = 2 sqrt(3) with 2
    # degrees of freedom, whose CDF is 1/2 + t / (2 sqrt(2 + t^2)): p = 1 - t / sqrt(2 + t^2)
    t = 2 * math.sqrt(3)
    assert stats.paired([11.0, 12.0, 13.0], [10.0, 10.0, 10.0]) == pytest.approx(
        1 - t / math.sqrt(2 + t * t))
    assert stats.paired([1.0, 2.0], [1.0, 2.0]) == 1.0  # no difference at all
    assert stats.paired([2.0, 3.0], [1.0, 2.0]) == 0.0  # the same difference every time
    assert math.isnan(stats.paired([1.0], [0.0]))
    with pytest.raises(ValueError, match="matched"):
        stats.paired([1.0, 2.0], [1.0])
