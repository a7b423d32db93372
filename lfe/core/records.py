"""What an evaluation tells the search: one status vocabulary and the fitness record.

A record is plain data in ``events.jsonl`` and ``state.json`` (``FitnessRecord.to_dict()``), so
its JSON is the contract between workers, the controller and run directories of older versions.

Statuses: ``ok`` (trained to the end), ``stopped_early`` (a stop rule ended the run; its best
validation accuracy so far is still its fitness, paper §3.7), and the failed children, which
never enter the population and have no fitness: ``gated`` (below the gate's training accuracy),
``filtered`` (rejected before any training by the training-free filter, ``fitness.filter``),
``diverged`` (a non-finite loss), ``timed_out`` (the executor cancelled it at its time limit),
``error`` (it raised, or its worker kept dying, on every attempt the failure policy allows:
``lfe.core.retry``; the message holds the last error).

With rungs (``lfe.core.rungs``; off by default) a child trains in tasks that stop at rungs: a
task that stops there returns ``paused`` (its best validation accuracy so far and ``rung``, the
rung's index), which the controller keeps in its state and never stores as an evaluation; a
child not promoted at a rung is told as ``stopped_at_rung`` with that record's fitness and
``rung``. Both are scored, not failed. ``rung`` is absent from every other record, so runs
without rungs write the records they always did.

What a scored run (not the gate) that hits a non-finite loss becomes is the fitness config's
``on_diverged`` (``ON_DIVERGED``): ``best_so_far`` (the default, the authors' code: Keras'
TerminateOnNaN stops it like any stop rule and ``nanmax`` of its validation accuracies is the
fitness) makes it ``stopped_early`` with the best validation accuracy of the evaluations before
the divergence, its message saying so (a run that diverged before its first evaluation stays
``diverged``); ``failed`` makes every such run a failed child (``diverged``). The gate treats a
non-finite loss as a failure either way.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any


class Status(enum.StrEnum):
    """How an evaluation ended; a ``str`` so records stay plain JSON (``"ok"``)."""

    OK = "ok"
    STOPPED_EARLY = "stopped_early"
    GATED = "gated"
    FILTERED = "filtered"  # rejected by the training-free filter (fitness.filter), untrained
    DIVERGED = "diverged"
    TIMED_OUT = "timed_out"
    ERROR = "error"
    PAUSED = "paused"  # trained to a rung; the controller decides whether it goes on
    STOPPED_AT_RUNG = "stopped_at_rung"  # not promoted at a rung: scored there

    @property
    def failed(self) -> bool:
        return self in FAILED


FAILED = frozenset({Status.GATED, Status.FILTERED, Status.DIVERGED, Status.TIMED_OUT, Status.ERROR})
STATUSES = tuple(s.value for s in Status)


@dataclasses.dataclass(frozen=True)
class FitnessRecord:
    """One finished evaluation. ``fitness`` is None for failed children (and a non-finite
    fitness is stored as None: it is the worst value and can never become best)."""

    fitness: float | None
    status: Status
    steps: int  # training steps run, gate included
    wall_time_s: float
    curve: tuple = ()  # the scored run's (step, train_acc, val_acc, loss) rows
    gate_train_accuracy: float | None = None
    best_train_accuracy: float = 0.0
    best_val_accuracy: float = 0.0  # also kept for diverged runs, for inspection
    message: str = ""
    rung: int | None = None  # paused / stopped_at_rung: the rung's index (else absent)

    def __post_init__(self):
        object.__setattr__(self, "status", Status(self.status))

    @property
    def failed(self) -> bool:
        return self.status.failed or self.fitness is None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["status"] = self.status.value
        d["curve"] = [list(row) for row in self.curve]
        if d["rung"] is None:
            del d["rung"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FitnessRecord:
        """A record from its JSON; raises ValueError naming what is wrong."""
        if not isinstance(d, dict) or d.get("status") not in STATUSES:
            raise ValueError(f"a fitness record needs a status in {STATUSES}, got {d!r:.200}")
        fields = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in d.items() if k in fields}
        fit = known.get("fitness")
        if fit is not None and not (isinstance(fit, int | float) and math.isfinite(fit)):
            known["fitness"] = None
        known.setdefault("steps", 0)
        known.setdefault("wall_time_s", 0.0)
        known["curve"] = tuple(tuple(row) for row in known.get("curve", ()))
        return cls(**known)


ON_DIVERGED = ("best_so_far", "failed")


def check_on_diverged(value: str) -> str:
    """``value`` if it is one of ``ON_DIVERGED``, else a one-line ValueError."""
    if value not in ON_DIVERGED:
        raise ValueError(f"fitness.on_diverged must be one of {', '.join(ON_DIVERGED)}, "
                         f"got {value!r}")
    return value


def timed_out(message: str) -> FitnessRecord:
    """The record of an evaluation the executor cancelled at its timeout (a failed child)."""
    return FitnessRecord(None, Status.TIMED_OUT, 0, 0.0, message=message)


def errored(message: str) -> FitnessRecord:
    """The record of an evaluation that failed on every attempt it was given (a failed child)."""
    return FitnessRecord(None, Status.ERROR, 0, 0.0, message=message)


def is_failed(record: dict[str, Any]) -> bool:
    """A record (as JSON) of a failed child, or without a finite fitness: never in the
    population, never best."""
    return record["status"] in {s.value for s in FAILED} or record.get("fitness") is None
