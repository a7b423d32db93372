import math

import numpy as np
import pytest
from scipy import stats as sps

from lfe.core import fidelity

# [step, train_accuracy, val_accuracy, mean_loss]; the gate's rows have no validation value
CURVE = [[100, 0.1, 0.2, 2.0], [200, 0.3, 0.5, 1.5], [300, 0.35, 0.4, 1.4],
         [400, 0.4, 0.45, 1.3]]


def test_at_step_by_hand():
    assert fidelity.at_step(CURVE, 300, "val", "at") == 0.4
    assert fidelity.at_step(CURVE, 300, "val", "best") == 0.5
    assert fidelity.at_step(CURVE, 250, "val", "best") == 0.5  # rows up to 250
    assert fidelity.at_step(CURVE, 400, "train", "best") == 0.4
    assert fidelity.at_step([[100, 0.2, None, 1.0]], 100, "train", "at") == 0.2


def test_at_step_refuses_missing_values_and_names():
    with pytest.raises(ValueError, match="no val value at step 250"):
        fidelity.at_step(CURVE, 250, "val", "at")
    with pytest.raises(ValueError, match="up to step 50"):
        fidelity.at_step(CURVE, 50)
    with pytest.raises(ValueError, match="no val value"):
        fidelity.at_step([[100, 0.2, None, 1.0]], 100)
    with pytest.raises(ValueError, match="column"):
        fidelity.at_step(CURVE, 100, "accuracy")
    with pytest.raises(ValueError, match="reading"):
        fidelity.at_step(CURVE, 100, "val", "last")


def test_correlations_by_hand_and_against_scipy():
    c = fidelity.correlations([1, 2, 3, 4], [10, 20, 30, 40])
    assert (c.n, c.tau, c.rho) == (4, pytest.approx(1.0), pytest.approx(1.0))
    # one discordant pair of six: tau = (5 - 1) / 6
    c = fidelity.correlations([1, 2, 3, 4], [1, 2, 4, 3])
    assert c.tau == pytest.approx(4 / 6)
    assert c.rho == pytest.approx(sps.spearmanr([1, 2, 3, 4], [1, 2, 4, 3]).statistic)
    assert math.isnan(fidelity.correlations([1, 2], [2, 1]).tau)
    assert math.isnan(fidelity.correlations([1, 1, 1], [1, 2, 3]).rho)
    with pytest.raises(ValueError, match="same items"):
        fidelity.correlations([1, 2, 3], [1, 2])


def test_rerun_tau_limits():
    values = [0.40, 0.42, 0.45, 0.47, 0.50]
    assert fidelity.rerun_tau(values, 0.0, draws=5) == pytest.approx(1.0)
    # noise as large as the observed spread: no true spread left, reruns agree by chance only
    noisy = fidelity.rerun_tau(values, float(np.std(values, ddof=1)), draws=400)
    assert abs(noisy) < 0.1
    assert 0.1 < fidelity.rerun_tau(values, 0.01, draws=400) < 1.0
    assert math.isnan(fidelity.rerun_tau([0.1, 0.2], 0.01))


def test_auc_by_hand():
    assert fidelity.auc([3, 4], [1, 2]) == 1.0
    assert fidelity.auc([1, 2], [3, 4]) == 0.0
    # pairs: (2,1) win, (2,2) tie, (2,3) loss, (5, any) 3 wins -> (4 + 0.5) / 6
    assert fidelity.auc([2, 5], [1, 2, 3]) == pytest.approx(4.5 / 6)
    assert math.isnan(fidelity.auc([], [1]))


def test_confusion_counts():
    counts = fidelity.confusion([True, True, False, False, True], [True, False, True, False,
                                                                   True])
    assert counts == {"pass_good": 2, "pass_bad": 1, "reject_good": 1, "reject_bad": 1}
    with pytest.raises(ValueError, match="one decision per item"):
        fidelity.confusion([True], [True, False])
