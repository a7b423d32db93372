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

**Rungs inside the search** (``mode: evolve``'s ``rungs``; off by default, the paper's fixed
schedule): a ``Schedule`` of steps of the child's surrogate run. A child trains (gate, then
the surrogate run) to the first rung, where its task pauses (status ``paused``, its checkpoint
kept) and returns; the controller (``settle``, called by ``lfe.core.evolution.tell``) books
the arrival in the state's ``rung_log`` and promotes it when ``promoted`` says so against the
children that reached that rung before it: promoted, it stays in flight and its next task
continues to the next rung (or to the end); not promoted, it is told as ``stopped_at_rung``
with its fitness there. No worker waits. The score a rung ranks by is the best **training**
accuracy so far by default (``score="train"``: at 100-1,200 steps it ranked the CPU
evolution's children far better than validation accuracy, results/fidelity), or the
validation accuracy (``"val"``); the fitness is always the best validation accuracy at the
highest rung reached.

How the population compares candidates of different fidelity (``fidelity``, ``sort_key``): a
member scored at a higher rung beats one scored at a lower rung, and members of the same rung
compare by fitness. That is a total order (a tournament's winner does not depend on the order
of its draws), compares accuracies only between runs of the same length (a 400-step run's
validation accuracy is lower than a 2,000-step run's whatever the loss), and follows the rung
decisions: a child that got further had ranked in the top fraction at every rung below. Figure
4's population statistics are over the members scored at the top fidelity (every member,
without rungs), which are comparable with a run without rungs.
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


# --------------------------------------------------------------------------- rungs in a search

SCORES = ("train", "val")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """``steps``: the rungs, steps of a child's surrogate run (() = none, the paper's schedule);
    ``fraction``: the share promoted at each rung; ``score``: what ranks at a rung (``SCORES``).
    """

    steps: tuple[int, ...] = ()
    fraction: float = 1 / 3
    score: str = "train"

    def __post_init__(self):
        object.__setattr__(self, "steps", tuple(int(s) for s in self.steps))
        check_fraction(self.fraction)
        if self.score not in SCORES:
            raise ValueError(f"rung_score must be one of {', '.join(SCORES)}, got {self.score!r}")
        if list(self.steps) != sorted(set(self.steps)) or any(s <= 0 for s in self.steps):
            raise ValueError(f"rungs must be increasing positive steps, got {list(self.steps)}")

    @property
    def top(self) -> int:
        """The fidelity of a child trained to the end (and of every non-child)."""
        return len(self.steps)

    def until(self, index: int) -> int:
        """Where task ``index`` of a child pauses: its rung's step, 0 (to the end) past the last."""
        return self.steps[index] if index < len(self.steps) else 0


def check_schedule(steps: Sequence[int], protocol) -> None:
    """Refuses rungs that are not evaluation steps of ``protocol`` below its last: every
    ``eval_every`` steps, a stop rule's step or a phase's end (``lfe.training.loop.eval_steps``)."""
    total = int(protocol["steps"])
    every = int(protocol.get("eval_every", 100))
    points = set(range(every, total, every)) | {int(s) for s, _ in protocol.get("stop_rules") or ()}
    end = 0
    for phase in protocol.get("phases") or ():
        end += int(phase["steps"])
        points.add(end)
    bad = [s for s in steps if s not in points or not 0 < s < total]
    if bad:
        raise ValueError(f"rungs {bad} are not evaluation steps of the surrogate run below its "
                         f"{total} steps (every {every} steps, a stop rule's or a phase end)")


def score_of(record: dict, score: str) -> float:
    return float(record["best_train_accuracy" if score == "train" else "best_val_accuracy"] or 0)


def next_rung(state, candidate_id: int) -> int:
    """The index of the rung the in-flight candidate trains to next (its promotions so far)."""
    return sum(1 for a in state.rung_log if a.id == candidate_id)


def settle(schedule: Schedule, state, candidate_id: int, record: dict) -> dict | None:
    """A child's task came back (``record``, plain JSON). A ``paused`` one is booked as an
    arrival in ``state.rung_log`` (changed in place: the caller's copy): promoted, None is
    returned (it stays in flight); otherwise its final record, ``stopped_at_rung``. Any other
    record is the child's last: returned with its earlier tasks merged in (``merge``)."""
    earlier_tasks = [a for a in state.rung_log if a.id == candidate_id]
    if record["status"] != "paused":
        return merge(earlier_tasks, record)
    k = len(earlier_tasks)
    if record.get("rung") != k or k >= schedule.top:
        raise ValueError(f"candidate {candidate_id} paused at rung {record.get('rung')!r}, but "
                         f"its next rung is {k} of {schedule.top}")
    score = score_of(record, schedule.score)
    before = [a.score for a in state.rung_log if a.rung == k]
    up = promoted(score, before, schedule.fraction)
    state.rung_log.append(_arrival(candidate_id, k, score, up, record))
    if up:
        return None
    rank = 1 + sum(1 for s in before if s > score)
    message = (f"stopped at rung {k + 1} of {schedule.top} (step {schedule.steps[k]}): rank "
               f"{rank} of {len(before) + 1} by best {schedule.score} accuracy "
               f"{score:.4f}")
    return merge(earlier_tasks, {**record, "status": "stopped_at_rung", "message": message})


def _arrival(candidate_id: int, k: int, score: float, up: bool, record: dict):
    from lfe.core.state import Arrival

    return Arrival(candidate_id, k, score, up, int(record.get("steps") or 0),
                   float(record.get("wall_time_s") or 0.0), record.get("gate_train_accuracy"))


def merge(earlier_tasks: Sequence, record: dict) -> dict:
    """A child's record from its last task's and the earlier tasks' arrivals: steps and wall
    time summed over its tasks (what it cost), the gate's accuracy from its first task."""
    if not earlier_tasks:
        return record
    return {**record, "steps": sum(a.steps for a in earlier_tasks) + int(record.get("steps") or 0),
            "wall_time_s": math.fsum([a.wall_time_s for a in earlier_tasks]
                                     + [float(record.get("wall_time_s") or 0.0)]),
            "gate_train_accuracy": earlier_tasks[0].gate_train_accuracy}


def fidelity(record: dict, top: int) -> int:
    """The rung a told record was scored at: its ``rung`` if it stopped at one, else ``top``."""
    return int(record["rung"]) if record.get("status") == "stopped_at_rung" else top


def sort_keys(state, members, top: int) -> list:
    """Tournament keys of ``members`` (module docstring): their fitness without rungs
    (``top`` 0), else (fidelity, fitness)."""
    if not top:
        return [m.fitness for m in members]
    records = {e.id: e.record for e in state.evaluated}
    return [(fidelity(records[m.id], top) if m.id in records else top, m.fitness)
            for m in members]


def at_top(state, members) -> list:
    """The members scored at the top fidelity (all of them in a run without rungs)."""
    stopped = {e.id for e in state.evaluated if e.record.get("status") == "stopped_at_rung"}
    return [m for m in members if m.id not in stopped]


def summary(state) -> dict:
    """With rungs (``{}`` without): ``rung_arrivals`` and ``rung_promoted`` per rung index, and
    ``stopped_at_rung`` (told children per rung they stopped at)."""
    if not state.rung_log:
        return {}
    top = 1 + max(a.rung for a in state.rung_log)
    stopped = [0] * top
    for e in state.evaluated:
        if e.record.get("status") == "stopped_at_rung":
            stopped[int(e.record["rung"])] += 1
    return {"rung_arrivals": [sum(a.rung == k for a in state.rung_log) for k in range(top)],
            "rung_promoted": [sum(a.rung == k and a.promoted for a in state.rung_log)
                              for k in range(top)],
            "stopped_at_rung": stopped}


def annotate(state, rows: list[dict]) -> list[dict]:
    """Figure 4's rows (``evolution.history``) with, in a run with rungs, each iteration's
    scored child: ``child_fitness`` and ``child_rung`` (the rung index it stopped at; None:
    trained in full). Rows of a run without rungs are returned as they are."""
    if not state.rung_log:
        return rows
    records = {e.id: e.record for e in state.evaluated}
    for row in rows:
        record = records.get(row.get("child"))
        if record is not None and record.get("fitness") is not None:
            row["child_fitness"] = record["fitness"]
            row["child_rung"] = (record["rung"] if record["status"] == "stopped_at_rung"
                                 else None)
    return rows
