"""Regularized evolution (paper §3.4, §3.8, §3.10, Algorithm 2) as an ask/tell controller.

The controller never trains and never does I/O: ``ask`` hands out candidates to evaluate and
``tell`` takes back their ``FitnessRecord.to_dict()``, so several candidates can be in flight at
once (asynchronous evolution, Real et al. 2019) and results may arrive in any order. Everything it
knows lives in a ``State`` (``lfe.core.state``: typed plain data whose ``to_dict()`` is the
checkpoint JSON), so a resume (``State.from_dict`` + ``archive.rebuild``) continues exactly as if
never interrupted. ``ask`` and ``tell`` are pure: they return a new state and leave theirs (and
the novelty archive) as they were; ``ask`` also returns the phenotypes it admitted, for the
caller to add to its archive.

Two choices the paper's text and the authors' code settle (``Params``; ``fitness.on_diverged``,
what a run that hits a non-finite loss scores, is the third: ``lfe.core.records``):

* ``novelty``: a child's novelty (integrity step 4) is checked against the **current
  population** and the children in flight (``"population"``, Alg. 1, §3.3, the authors'
  ``self.gen``: a copy may return once its original aged out) or every candidate ever drawn
  (``"archive"``, lfe's first rule); the population scope is a ``subset`` of the caller's
  archive (row = id), so a resume is exact.
* ``rescore_initial`` (on in ``configs/surrogate.py``): the best initial genomes are scored
  again on the surrogate before evolution starts (phase ``"rescore"``, as the authors' code);
  a re-scored member keeps its slot under the re-scoring candidate's id, and a failed
  re-scoring leaves it fitness 0 until it ages out.

``rungs`` (off by default, the paper's schedule): children train in rungs with asynchronous
promotion, and tournaments compare members at the same fidelity (``lfe.core.rungs``).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import statistics

import numpy as np

from lfe.core import archive as archive_lib
from lfe.core import equation as equation_lib
from lfe.core import genome as genome_lib
from lfe.core import integrity, records, rungs
from lfe.core.state import Attempt, Candidate, Evaluated, LogRow, Member, Retry, State

NOVELTY_SCOPES = archive_lib.SCOPES


@dataclasses.dataclass(frozen=True)
class Params:
    """Static settings; the paper's values are the defaults (§3.4, §3.10, App. B)."""

    population_size: int = 100
    initial_population: int = 1000
    tournament_size: int = 20
    max_mutation_attempts: int = 2500
    max_failed_children: int = 7
    max_iterations: int = 2000
    op_set: str = "paper"
    init: str = "authors"
    mutation_batch: int = 64  # mutations judged per jitted integrity call; never changes results
    novelty: str = "population"  # or "archive" (module docstring)
    rescore_initial: bool = False  # the authors' code re-scores; on where protocols differ
    rungs: tuple[int, ...] = ()  # steps of a child's surrogate run; () = the paper's schedule
    rung_fraction: float = 1 / 3
    rung_score: str = "train"

    @property
    def schedule(self) -> rungs.Schedule:
        return rungs.Schedule(self.rungs, self.rung_fraction, self.rung_score)

    def __post_init__(self):
        object.__setattr__(self, "rungs", self.schedule.steps)  # checked, as ints
        if self.novelty not in NOVELTY_SCOPES:
            raise ValueError(f"evolution novelty must be one of {', '.join(NOVELTY_SCOPES)}, "
                             f"got {self.novelty!r}")
        for name in ("population_size", "initial_population", "tournament_size",
                     "max_mutation_attempts", "max_failed_children", "mutation_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"evolution {name} must be at least 1, got {getattr(self, name)}")
        if self.max_iterations < 0:
            raise ValueError(f"evolution max_iterations must be >= 0, got {self.max_iterations}")


# --------------------------------------------------------------------------- pure pieces

def select_winner(fitness: list[float], sampled) -> int:
    """The fittest of the ``sampled`` population indices; ties go to the earliest sampled."""
    best = int(sampled[0])
    for i in sampled[1:]:
        if fitness[int(i)] > fitness[best]:
            best = int(i)
    return best


def tournament(rng: np.random.Generator, fitness: list[float], size: int) -> int:
    """Tournament selection: ``size`` members drawn **with replacement**, the fittest wins."""
    return select_winner(fitness, rng.integers(len(fitness), size=size))


def replace_oldest(population: list[Member], child: Member, capacity: int
                  ) -> tuple[list[Member], int | None]:
    """Ages every member by one and puts ``child`` (age 0) in, returning the removed id.

    Below ``capacity`` (fewer initial genomes succeeded) the child is appended. Otherwise it takes
    the slot of the oldest member; among equally old ones the least fit goes (then the first
    slot), so the initial population, all of age 0, loses its weakest first.
    """
    members = _aged(population)
    entry = dataclasses.replace(child, age=0)
    if len(members) < capacity:
        return members + [entry], None
    oldest = max(m.age for m in members)
    slot = min((i for i, m in enumerate(members) if m.age == oldest),
               key=lambda i: (members[i].fitness, i))
    removed = members[slot].id
    members[slot] = entry
    return members, removed


def _aged(population: list[Member]) -> list[Member]:
    return [dataclasses.replace(m, age=m.age + 1) for m in population]


def population_stats(population: list[Member]) -> dict:
    """Best / mean / median fitness of the members (None when empty), as in Figure 4."""
    f = [m.fitness for m in population]
    if not f:
        return {"best": None, "mean": None, "median": None}
    return {"best": max(f), "mean": math.fsum(f) / len(f), "median": float(statistics.median(f))}


is_failed = records.is_failed


def failure(record: dict) -> str:
    """How a failed record failed: its status, or "no_fitness" for an ok one without fitness."""
    return record["status"] if record["status"] in _FAILED else "no_fitness"


_FAILED = {s.value for s in records.FAILED}


def _normalise_record(record: dict) -> dict:
    """A plain-JSON copy (tuples → lists, numpy → Python), non-finite fitness → None.

    Storing exactly what ``json.loads(json.dumps(...))`` gives back is what makes a run with a
    JSON round trip between calls end in the identical state.
    """
    if not isinstance(record, dict) or record.get("status") not in records.STATUSES:
        raise ValueError(f"a fitness record needs a status in {records.STATUSES}, "
                         f"got {record!r:.200}")
    rec = json.loads(json.dumps(record, default=lambda o: o.tolist()))
    fit = rec.get("fitness")
    if fit is not None and not (isinstance(fit, int | float) and math.isfinite(fit)):
        rec["fitness"] = None
    return rec


# --------------------------------------------------------------------------- state plumbing

def init(params: Params, seed: int) -> State:
    """A fresh state; nothing is drawn until the first ``ask`` (which needs the archive)."""
    del params  # the state depends only on the seed; kept for the evosax-style signature
    rng = np.random.Generator(np.random.PCG64(seed))
    return State(seed=int(seed), rng=rng.bit_generator.state)


def _rng(state: State) -> np.random.Generator:
    bit_generator = np.random.PCG64(0)
    bit_generator.state = state.rng
    return np.random.Generator(bit_generator)


def _candidate(state: State, child: genome_lib.Genome, verdict: integrity.Verdict, stage: str,
               iteration: int | None, parent: int | None, failed_children: int) -> Candidate:
    cid = state.next_id
    state.next_id = cid + 1
    return Candidate(cid, genome_lib.to_dict(child), verdict.sign,
                     equation_lib.text(child, verdict.sign), stage, iteration, parent,
                     failed_children)


def _complete(state: State, iteration: int, outcome: str, child: int | None = None,
              removed: int | None = None) -> None:
    """Ends an iteration: skipped ones age the population too (ages count iterations)."""
    if outcome.startswith("skipped"):
        state.population = _aged(state.population)
    state.iterations_done += 1
    state.log.append(LogRow(state.iterations_done, iteration, outcome, child, removed,
                            **population_stats(rungs.at_top(state, state.population))))


# --------------------------------------------------------------------------- ask

def _sample_initial(params: Params, state: State, rng: np.random.Generator,
                    archive: integrity.Archive) -> None:
    """Draws the whole initial population at once (Algorithm 2, line 1), so its genomes do not
    depend on how many the caller takes per ``ask``."""
    found = integrity.sample_valid(rng, params.initial_population, archive,
                                   op_set=params.op_set, init=params.init)
    state.initial_queue = [_candidate(state, g, v, "initial", None, None, 0) for g, v in found]
    state.initial_sampled = True


def mutate_valid(params: Params, rng: np.random.Generator, parent: genome_lib.Genome,
                 archive: integrity.Archive
                 ) -> tuple[genome_lib.Genome, integrity.Verdict] | None:
    """Mutates ``parent`` until a child passes the check, or None after
    ``max_mutation_attempts`` failures in a row (§3.4).

    Attempts are judged ``mutation_batch`` at a time (one batched check), then the RNG is
    rewound to just after the first passing attempt: the draws consumed, hence the whole run,
    are the same as mutating one at a time, whatever the batch size.
    """
    left = params.max_mutation_attempts
    while left > 0:
        kids, after = [], []
        for _ in range(params.mutation_batch):  # always a full batch
            kids.append(genome_lib.mutate(rng, parent))
            after.append(rng.bit_generator.state)
        verdicts = integrity.check_batch(kids, archive, commit=False)
        usable = min(left, params.mutation_batch)
        for i in range(usable):
            if verdicts[i].ok:
                rng.bit_generator.state = after[i]
                return kids[i], verdicts[i]
        rng.bit_generator.state = after[usable - 1]
        left -= usable
    return None


def _next_job(params: Params, state: State, rng: np.random.Generator
              ) -> tuple[int, int, int] | None:
    """``(iteration, parent id, failed children so far)`` for the next child to mutate.

    A retry of an iteration whose child failed comes first (it was started within the budget);
    otherwise a new iteration runs its own tournament on the population as it is now.
    """
    if state.retries:
        r = state.retries.pop(0)
        return r.iteration, r.parent, r.failed_children
    if state.iterations_started >= params.max_iterations or not state.population:
        return None
    state.iterations_started += 1
    keys = rungs.sort_keys(state, state.population, len(params.rungs))
    winner = tournament(rng, keys, params.tournament_size)
    return state.iterations_started, state.population[winner].id, 0


Admitted = list[tuple[np.ndarray, str]]  # (normalised phenotype, equation) of admitted genomes


def ask(params: Params, state: State, archive: integrity.Archive, capacity: int
        ) -> tuple[State, list[Candidate], Admitted]:
    """Up to ``capacity - len(in_flight)`` new candidates to evaluate, the new state, and the
    phenotypes admitted by this call (initial genomes when they are drawn, children), which the
    caller adds to its archive (``archive.extend``): the archive given is not changed.

    An iteration whose mutations all fail is skipped here and another is started in its place,
    within ``max_iterations``.
    """
    state, rng = state.copy(), _rng(state)
    seen = archive_lib.scope(params.novelty, state, archive)
    before, new = len(seen), []
    if state.phase == "initial":
        if not state.initial_sampled:
            _sample_initial(params, state, rng, seen)
        while state.initial_queue and len(state.in_flight) < capacity:
            new.append(state.initial_queue.pop(0))
            state.in_flight.append(new[-1])
    elif state.phase == "rescore":
        _ask_rescores(state, seen, capacity, new)
    else:
        while len(state.in_flight) < capacity:
            job = _next_job(params, state, rng)
            if job is None:
                break
            iteration, parent, failed = job
            found = mutate_valid(params, rng, genome_lib.from_dict(state.entry(parent).genome),
                                 seen)
            if found is None:
                _complete(state, iteration, "skipped_mutation")
                continue
            child, verdict = found
            seen.add(verdict.phenotype, verdict.equation)
            new.append(_candidate(state, child, verdict, "surrogate", iteration, parent, failed))
            state.in_flight.append(new[-1])
    state.rng = rng.bit_generator.state
    return state, new, seen.added_since(before)


def is_rescore(c: Candidate) -> bool:
    """A re-scoring of an initial member on the surrogate (not a child)."""
    return c.stage == "surrogate" and c.iteration is None


def _ask_rescores(state: State, seen: integrity.Archive, capacity: int, new: list) -> None:
    """Hands out re-scorings of the members still holding their initial score, in population
    order, up to ``capacity`` in flight; their phenotypes join ``seen`` (row = id)."""
    asked = {c.parent for c in state.in_flight + state.evaluated if is_rescore(c)}
    initial = {e.id: e for e in state.evaluated if e.stage == "initial"}
    todo = [initial[m.id] for m in state.population if m.id in initial and m.id not in asked]
    todo = todo[: max(0, capacity - len(state.in_flight))]
    for e, (phenotype, eq) in zip(todo, archive_lib.phenotypes(todo), strict=True):
        seen.add(phenotype, eq)
        new.append(Candidate(state.next_id, e.genome, e.sign, e.equation, "surrogate", None,
                             e.id, 0))
        state.next_id += 1
        state.in_flight.append(new[-1])


# --------------------------------------------------------------------------- tell

def _form_population(params: Params, state: State) -> None:
    """The best ``population_size`` initial genomes that did not fail (§3.8), all of age 0."""
    ok = [e for e in state.evaluated if e.stage == "initial" and not is_failed(e.record)]
    ok.sort(key=lambda e: (-e.fitness, e.id))
    state.population = [Member(e.id, 0, e.fitness) for e in ok[: params.population_size]]
    if params.rescore_initial and state.population:
        state.phase = "rescore"
    else:
        _start_evolution(state)


def _start_evolution(state: State) -> None:
    state.phase = "evolve"
    state.log.append(LogRow(0, None, "initial", None, None,
                            **population_stats(state.population)))


def _rescored(state: State, cand: Candidate, rec: dict) -> None:
    """A member's re-scoring came back: it takes the new id and fitness (0 if it failed)."""
    fitness = 0.0 if is_failed(rec) else rec["fitness"]
    state.population = [Member(cand.id, m.age, fitness) if m.id == cand.parent else m
                        for m in state.population]
    initial = {e.id for e in state.evaluated if e.stage == "initial"}
    if not state.in_flight and not any(m.id in initial for m in state.population):
        _start_evolution(state)


def tell(params: Params, state: State, candidate_id: int, record: dict) -> State:
    """Records one finished evaluation (any order) and returns the new state.

    A failed child queues a retry from the same winner until ``max_failed_children`` failed,
    then the iteration is skipped; a successful one replaces the oldest member. Telling an id
    that is not in flight (unknown, or told already) raises ValueError.
    """
    pos = next((i for i, c in enumerate(state.in_flight) if c.id == candidate_id), None)
    if pos is None:
        told = any(e.id == candidate_id for e in state.evaluated)
        raise ValueError(f"candidate {candidate_id} was {'already told' if told else 'never asked'}"
                         "; only in-flight candidates can be told")
    rec = _normalise_record(record)
    state = state.copy()
    if params.rungs or rec["status"] == "paused":  # a child's task (lfe.core.rungs)
        rec = rungs.settle(params.schedule, state, candidate_id, rec)
        if rec is None:  # promoted at a rung: it trains on
            return state
    cand = state.in_flight.pop(pos)
    state.evaluated.append(Evaluated(**cand.to_dict(), record=rec))
    if cand.stage == "initial":
        if not state.initial_queue and not state.in_flight:
            _form_population(params, state)
    elif is_rescore(cand):
        _rescored(state, cand, rec)
    elif is_failed(rec):
        failed = cand.failed_children + 1
        if failed >= params.max_failed_children:
            _complete(state, cand.iteration, "skipped_failed_children")
        else:
            state.retries.append(Retry(cand.iteration, cand.parent, failed))
    else:
        full = len(state.population) >= params.population_size
        state.population, removed = replace_oldest(
            state.population, Member(cand.id, 0, rec["fitness"]), params.population_size)
        _complete(state, cand.iteration, "replaced" if full else "added", cand.id, removed)
    return state


def record_attempt(state: State, candidate_id: int, error: str, lost: bool) -> State:
    """Records a failed attempt at evaluating an in-flight candidate (it stays in flight: the
    caller submits it again, or tells it failed, as ``lfe.core.retry`` decides from
    ``attempts_of``); returns the new state."""
    if not any(c.id == candidate_id for c in state.in_flight):
        raise ValueError(f"candidate {candidate_id} is not in flight; only an in-flight "
                         "candidate has attempts")
    state = state.copy()
    state.attempts.append(Attempt(candidate_id, str(error), bool(lost)))
    return state


def attempts_of(state: State, candidate_id: int) -> list[bool]:
    """The failed attempts at candidate ``candidate_id``, in order (``True``: its worker was
    lost), as ``lfe.core.retry`` reads them."""
    return [a.lost for a in state.attempts if a.id == candidate_id]


# --------------------------------------------------------------------------- queries

def is_done(params: Params, state: State) -> bool:
    """All ``max_iterations`` completed (so nothing is in flight), or no population to evolve."""
    if state.phase != "evolve":
        return False
    return not state.population or state.iterations_done >= params.max_iterations


def history(state: State) -> list[dict]:
    """Population best / mean / median after each completed iteration (row 0: the initial
    population; rows of an empty population, which cannot be drawn, are left out) — the rows of
    Figure 4. ``state.log`` keeps every row."""
    return rungs.annotate(state, [dataclasses.asdict(r) for r in state.log if r.best is not None])


def best(state: State, k: int, stage: str | None = None) -> list[dict]:
    """The top-``k`` evaluated genomes of the run (optionally of one ``stage``), fittest first,
    each equation once (its best evaluation: a re-scored initial genome, or a copy that returned
    after its original aged out, is evaluated again); failed ones never appear. Note initial
    and surrogate fitness come from different protocols."""
    ok = [e for e in state.evaluated if not is_failed(e.record)
          and (stage is None or e.stage == stage)]
    ok.sort(key=lambda e: (-e.fitness, e.id))
    firsts = {}
    for e in ok:
        firsts.setdefault(e.equation, e)
    ok = list(firsts.values())
    return [{"id": e.id, "fitness": e.fitness, "sign": e.sign, "equation": e.equation,
             "genome": e.genome, "stage": e.stage, "iteration": e.iteration,
             "status": e.record["status"], "rung": e.record.get("rung")} for e in ok[:k]]


def count_above(state: State, threshold: float) -> dict[str, int]:
    """How many evaluated genomes of each stage have a fitness above ``threshold`` (say,
    cross-entropy's mean on the same protocol), out of how many have a fitness at all:
    ``{"initial": k, "initial_scored": n, "surrogate": k, "surrogate_scored": n, "rescored": k,
    "rescored_scored": n}`` (children under ``surrogate``, re-scorings under ``rescored``)."""
    counts = {f"{k}{s}": 0 for k in ("initial", "surrogate", "rescored") for s in ("", "_scored")}
    for e in state.evaluated:
        if not is_failed(e.record):
            kind = "rescored" if is_rescore(e) else e.stage
            counts[f"{kind}_scored"] += 1
            counts[kind] += int(e.fitness > threshold)
    return counts


def summary(state: State) -> dict:
    """Counts of the run so far and the population's fitness statistics. ``failed_attempts``:
    evaluations that raised or crashed (``error``) or whose worker was lost (``lost``), each
    followed by another attempt or, once ``lfe.core.retry`` gave up, an ``error`` child."""
    ev = state.evaluated
    children = [e for e in ev if e.stage == "surrogate" and not is_rescore(e)]
    failed = collections.Counter(failure(e.record) for e in children if is_failed(e.record))
    failed_initial = collections.Counter(failure(e.record) for e in ev
                                         if e.stage == "initial" and is_failed(e.record))
    outcomes = collections.Counter(r.outcome for r in state.log)
    fitted = [e.fitness for e in ev if not is_failed(e.record)]
    return {"phase": state.phase, "iterations": state.iterations_done,
            "iterations_started": state.iterations_started, "evaluated": len(ev),
            "initial_evaluated": sum(e.stage == "initial" for e in ev),
            "rescored": sum(is_rescore(e) for e in ev), "children_evaluated": len(children),
            "successful_children": outcomes["replaced"] + outcomes["added"],
            "failed_children": dict(sorted(failed.items())),
            "failed_initial": dict(sorted(failed_initial.items())),
            "skipped_iterations": {"mutation": outcomes["skipped_mutation"],
                                   "failed_children": outcomes["skipped_failed_children"]},
            "failed_attempts": {"error": sum(not a.lost for a in state.attempts),  # retried
                                "lost": sum(a.lost for a in state.attempts)},  # or gave up
            "in_flight": len(state.in_flight), "population": len(state.population),
            **population_stats(rungs.at_top(state, state.population)),
            **rungs.summary(state),
            "best_evaluated": max(fitted) if fitted else None}
