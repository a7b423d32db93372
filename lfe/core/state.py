"""The evolution controller's state, as typed plain data (``lfe.core.evolution`` runs on it).

Everything the controller knows is here, so a checkpoint is ``state.to_dict()`` (plain JSON,
the layout below: the first run directories' plus the optional ``attempts``) and a resume is
``State.from_dict``: a resumed run continues exactly as if it was never interrupted.

    format, seed, rng            PCG64 ``bit_generator.state`` (the only randomness)
    phase                        "initial" until every initial candidate is told, then "evolve"
                                 ("rescore" between them while the initial members are scored
                                 again on the surrogate, ``Params.rescore_initial``)
    next_id                      the next candidate id
    initial_sampled              whether the initial genomes have been drawn
    initial_queue                drawn initial candidates not yet asked
    in_flight                    asked, not yet told candidates (in ask order)
    retries                      iterations whose child failed: {iteration, parent, failed_children}
    evaluated                    told candidates (in tell order): candidate fields + ``record``
    population                   members {id, age, fitness}; the slots of a ring buffer
    iterations_started, iterations_done
    log                          one row per completed iteration (row 0: the initial population):
                                 {iteration, id, outcome, child, removed, best, mean, median}
    attempts                     failed attempts at evaluating candidates, in order: {id, error,
                                 lost} (``lfe.core.retry``); written only once a task has failed,
                                 so states without any keep the first runs' layout and those
                                 runs (which have none) load as they are
    rung_log                     with rungs (``lfe.core.rungs``; absent otherwise): each arrival
                                 of a child at a rung, in arrival order: {id, rung (index),
                                 score, promoted, steps, wall_time_s, gate_train_accuracy}

A candidate is ``{id, genome (genome.to_dict), sign, equation, stage ("initial" | "surrogate"),
iteration (None for initial), parent (None for initial), failed_children (failed children of its
iteration before it)}``; ``stage`` tells the caller which fitness protocol to run. A re-scoring of
an initial member is a ``surrogate`` candidate with iteration None and the member as parent. A
record is a ``FitnessRecord.to_dict()`` (``lfe.core.records``), kept as the JSON it was told as.
"""

from __future__ import annotations

import dataclasses
from typing import Any

FORMAT = "lfe-evolution-v1"


def _from(cls, d: dict):
    """``cls`` from its JSON dict; a ValueError names the type and the missing fields."""
    names = [f.name for f in dataclasses.fields(cls)]
    missing = [n for n in names if n not in d]
    if missing:
        raise ValueError(f"bad evolution state: a {cls.__name__} lacks {', '.join(missing)}")
    return cls(**{n: d[n] for n in names})


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A genome handed out for evaluation."""

    id: int
    genome: dict
    sign: int
    equation: str
    stage: str  # "initial" | "surrogate": which fitness protocol to run
    iteration: int | None  # None for the initial population
    parent: int | None
    failed_children: int  # failed children of its iteration before it

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Evaluated(Candidate):
    """A told candidate with its fitness record (plain JSON, as told)."""

    record: dict

    @property
    def fitness(self) -> float | None:
        return self.record.get("fitness")

    def candidate(self) -> Candidate:
        return _from(Candidate, self.to_dict())


@dataclasses.dataclass(frozen=True)
class Member:
    """A slot of the population: a candidate id, its age in iterations and its fitness."""

    id: int
    age: int
    fitness: float


@dataclasses.dataclass(frozen=True)
class Retry:
    """An iteration whose child failed: mutate ``parent`` again."""

    iteration: int
    parent: int
    failed_children: int


@dataclasses.dataclass(frozen=True)
class Attempt:
    """A failed attempt at evaluating candidate ``id``: its error, and whether its worker or host
    was lost (not charged to it). ``lfe.core.retry`` decides from these whether it runs again."""

    id: int
    error: str
    lost: bool


@dataclasses.dataclass(frozen=True)
class Arrival:
    """Child ``id`` reached rung ``rung`` (an index) with ``score``; ``promoted``: it trains on.
    ``steps``, ``wall_time_s``, ``gate_train_accuracy``: of the task that brought it there (the
    candidate's record sums its tasks, ``lfe.core.rungs.merge``)."""

    id: int
    rung: int
    score: float
    promoted: bool
    steps: int
    wall_time_s: float
    gate_train_accuracy: float | None


@dataclasses.dataclass(frozen=True)
class LogRow:
    """One completed iteration (iteration 0: the initial population) and the population's
    best / mean / median fitness after it (Figure 4)."""

    iteration: int
    id: int | None
    outcome: str  # initial | added | replaced | skipped_mutation | skipped_failed_children
    child: int | None
    removed: int | None
    best: float | None
    mean: float | None
    median: float | None


@dataclasses.dataclass
class State:
    """The whole controller state; ``ask``/``tell`` return new ones and never change theirs."""

    seed: int
    rng: dict
    phase: str = "initial"
    next_id: int = 0
    initial_sampled: bool = False
    initial_queue: list[Candidate] = dataclasses.field(default_factory=list)
    in_flight: list[Candidate] = dataclasses.field(default_factory=list)
    retries: list[Retry] = dataclasses.field(default_factory=list)
    evaluated: list[Evaluated] = dataclasses.field(default_factory=list)
    population: list[Member] = dataclasses.field(default_factory=list)
    iterations_started: int = 0
    iterations_done: int = 0
    log: list[LogRow] = dataclasses.field(default_factory=list)
    attempts: list[Attempt] = dataclasses.field(default_factory=list)
    rung_log: list[Arrival] = dataclasses.field(default_factory=list)

    def copy(self) -> State:
        """A copy safe to change: entries are frozen, so copying the lists is enough."""
        return dataclasses.replace(self, **{k: list(getattr(self, k)) for k in _LISTS})

    def entry(self, candidate_id: int) -> Evaluated:
        for e in self.evaluated:
            if e.id == candidate_id:
                return e
        raise ValueError(f"candidate {candidate_id} has not been evaluated")

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint's JSON (the layout of the module docstring)."""
        d = {"format": FORMAT}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _OPTIONAL and not value:
                continue
            d[f.name] = ([dataclasses.asdict(v) for v in value] if f.name in _LISTS
                         else value)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> State:
        """A state from its checkpoint JSON; a ValueError for anything else."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            found = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"not an evolution state (format {found!r}, expected {FORMAT!r})")
        scalars = [f.name for f in dataclasses.fields(cls) if f.name not in _LISTS]
        missing = [n for n in scalars + list(_LISTS) if n not in d and n not in _OPTIONAL]
        if missing:
            raise ValueError(f"bad evolution state: it lacks {', '.join(missing)}")
        return cls(**{n: d[n] for n in scalars},
                   **{n: [_from(t, v) for v in d.get(n, ())] for n, t in _LISTS.items()})


_LISTS = {"initial_queue": Candidate, "in_flight": Candidate, "retries": Retry,
          "evaluated": Evaluated, "population": Member, "log": LogRow, "attempts": Attempt,
          "rung_log": Arrival}
# newer than the first runs: absent there, and when empty
_OPTIONAL = frozenset({"attempts", "rung_log"})
