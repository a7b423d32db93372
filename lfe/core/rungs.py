"""Rungs: asynchronous successive halving's promotion rule, and an offline replay of it.

A rung schedule stops a candidate's training at given steps (the rungs) unless it ranks well
among the candidates that reached the same rung before it (ASHA, Li et al. 2020, without
waiting: the decision is taken when the candidate arrives and never revised).

``promoted``: a candidate with ``score`` at a rung, where ``n - 1`` candidates arrived before
it, is promoted when its rank (1 + the number of earlier scores strictly above it; ties favour
the newcomer) is at most ``ceil(fraction * n)``. So the first arrival is always promoted, the
second only if it is the better of two at fraction 1/2 or 1/3, and so on.

``replay`` applies a schedule to candidates whose whole training curve is already known (a
finished evolution run): per rung, in the candidates' order of arrival there, which are
stopped, and the steps they would not have trained. It cannot tell how the run itself would
have gone on: in a real run a stopped candidate changes the population and so the children
that follow. Plain data and the standard library only (no NumPy, no JAX).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence


def check_fraction(fraction: float) -> None:
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"promotion fraction must be in (0, 1], got {fraction!r}")


def promoted(score: float, earlier: Sequence[float], fraction: float) -> bool:
    """Whether a candidate scoring ``score`` at a rung is promoted, given the scores of the
    candidates that reached that rung before it (see the module docstring)."""
    check_fraction(fraction)
    n = len(earlier) + 1
    rank = 1 + sum(1 for s in earlier if s > score)
    return rank <= math.ceil(fraction * n - 1e-9)


def check_rungs(rungs: Sequence[int], steps: int) -> None:
    if not rungs or list(rungs) != sorted(set(rungs)) or rungs[0] <= 0 or rungs[-1] >= steps:
        raise ValueError(f"rungs must be increasing steps between 0 and the full run's {steps}, "
                         f"got {list(rungs)}")


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A finished candidate as the replay sees it.

    ``score(step)``: its score at a rung (e.g. best validation accuracy so far);
    ``arrival(step)``: when it reached that step (any sortable value: a time, a told index);
    ``steps``: the steps it trained in full (the part rungs can cut, e.g. the surrogate run)."""

    id: int
    score: Callable[[int], float]
    arrival: Callable[[int], float]
    steps: int


@dataclasses.dataclass(frozen=True)
class Stop:
    """Where the replay stops a candidate: the rung (``None``: trained in full), and the
    steps it trains then."""

    id: int
    rung: int | None
    steps_run: int
    steps_saved: int


def replay(candidates: Sequence[Candidate], rungs: Sequence[int],
           fraction: float) -> dict[int, Stop]:
    """Each candidate's ``Stop`` under the schedule ``rungs`` with promotion ``fraction``.

    Rung by rung, the candidates still running are taken in their order of arrival at the
    rung (ties: by id) and each is promoted or stopped against those that arrived before it."""
    check_fraction(fraction)
    running = list(candidates)
    for c in running:
        check_rungs(rungs, c.steps)
    if len({c.id for c in running}) != len(running):
        raise ValueError("replay needs distinct candidate ids")
    stops: dict[int, Stop] = {}
    for rung in rungs:
        arrived: list[float] = []
        still = []
        for c in sorted(running, key=lambda c: (c.arrival(rung), c.id)):
            score = c.score(rung)
            if promoted(score, arrived, fraction):
                still.append(c)
            else:
                stops[c.id] = Stop(c.id, rung, rung, c.steps - rung)
            arrived.append(score)
        running = still
    for c in running:
        stops[c.id] = Stop(c.id, None, c.steps, 0)
    return stops
