"""Fidelity: how well a short look at a training run predicts its final fitness.

A fitness record's curve holds rows ``[step, train_accuracy, val_accuracy, mean_loss]`` (every
``eval_every`` steps, plus any step where a stop rule was checked). ``at_step`` reads one
column at a step in one of two ways:

- ``"at"``: the value of the row at exactly that step (what the run shows at that moment);
- ``"best"``: the best value of the rows up to that step (best-so-far; at the last step of a
  run this is the fitness, the best validation accuracy).

``correlations`` ranks candidates by their value at a step and by their final fitness and
gives Kendall's τ-b and Spearman's ρ (scipy.stats) with p-values; ``auc`` is the probability
that a random positive scores above a random negative (ties count half), the Mann–Whitney
statistic scaled to [0, 1]. NumPy/SciPy only, no JAX.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

COLUMNS = {"train": 1, "val": 2, "loss": 3}
READINGS = ("at", "best")


def at_step(curve: Sequence[Sequence], step: int, column: str = "val",
            reading: str = "best") -> float:
    """``column`` of ``curve`` at ``step`` (``reading`` ``"at"`` or ``"best"``, module
    docstring). A curve without that step (``"at"``) or without a value up to it raises."""
    if column not in COLUMNS:
        raise ValueError(f"unknown curve column {column!r}; available: {', '.join(COLUMNS)}")
    if reading not in READINGS:
        raise ValueError(f"unknown reading {reading!r}; available: {', '.join(READINGS)}")
    col = COLUMNS[column]
    if reading == "at":
        values = [row[col] for row in curve if row[0] == step and row[col] is not None]
    else:
        values = [row[col] for row in curve if row[0] <= step and row[col] is not None]
    if not values:
        raise ValueError(f"the curve has no {column} value "
                         f"{'at' if reading == 'at' else 'up to'} step {step}")
    return float(values[-1] if reading == "at" else max(values))


@dataclasses.dataclass(frozen=True)
class Correlation:
    n: int
    tau: float
    tau_p: float
    rho: float
    rho_p: float


def correlations(x: Sequence[float], y: Sequence[float]) -> Correlation:
    """Kendall's τ-b and Spearman's ρ of two scorings of the same items (NaN for fewer than
    three items or a constant scoring)."""
    a, b = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"correlations need two scorings of the same items, got shapes "
                         f"{a.shape} and {b.shape}")
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return Correlation(int(a.size), math.nan, math.nan, math.nan, math.nan)
    tau = sps.kendalltau(a, b)
    rho = sps.spearmanr(a, b)
    return Correlation(int(a.size), float(tau.statistic), float(tau.pvalue),
                       float(rho.statistic), float(rho.pvalue))


def rerun_tau(values: Sequence[float], noise_std: float, draws: int = 2000,
              seed: int = 0) -> float:
    """The mean Kendall's τ between two reruns of the same items, when each run's score is the
    item's true value plus independent N(0, ``noise_std``²) seed noise, and the true values
    are ``values`` shrunk toward their mean so that true spread + noise = their observed
    spread (values observed once, with that noise). Zero when the noise explains all of the
    observed spread: how far two runs of the same items agree in their ranking."""
    v = np.asarray(values, np.float64)
    if v.size < 3:
        return math.nan
    shrink = math.sqrt(max(0.0, 1.0 - noise_std ** 2 / v.var(ddof=1)))
    true = v.mean() + shrink * (v - v.mean())
    rng = np.random.default_rng(seed)
    taus = [sps.kendalltau(true + rng.normal(0, noise_std, v.size),
                           true + rng.normal(0, noise_std, v.size)).statistic
            for _ in range(draws)]
    return float(np.mean(taus))


def auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """P(a positive's score > a negative's), ties counting half; NaN if a side is empty."""
    p, n = np.asarray(positives, np.float64), np.asarray(negatives, np.float64)
    if p.size == 0 or n.size == 0:
        return math.nan
    greater = (p[:, None] > n[None, :]).sum()
    ties = (p[:, None] == n[None, :]).sum()
    return float((greater + 0.5 * ties) / (p.size * n.size))


def confusion(passed: Sequence[bool], good: Sequence[bool]) -> dict[str, int]:
    """Counts of a pass/reject decision against the truth (``good``: should pass)."""
    if len(passed) != len(good):
        raise ValueError(f"confusion needs one decision per item, got {len(passed)} "
                         f"decisions for {len(good)} items")
    pairs = list(zip(map(bool, passed), map(bool, good), strict=True))
    return {"pass_good": pairs.count((True, True)), "pass_bad": pairs.count((True, False)),
            "reject_good": pairs.count((False, True)), "reject_bad": pairs.count((False, False))}
