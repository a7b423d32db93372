"""Regularized evolution (paper §3.4, §3.8, §3.10, Algorithm 2) as an ask/tell controller.

The controller never trains and never does I/O: ``ask`` hands out candidates to evaluate and
``tell`` takes back their ``FitnessRecord.to_dict()``, so several candidates can be in flight at
once (asynchronous evolution, Real et al. 2019) and results may arrive in any order. Everything it
knows lives in a ``State`` of plain JSON data, so a checkpoint is ``json.dumps(state)`` and a
resume (``json.loads`` + ``rebuild_archive``) continues exactly as if never interrupted.

State layout (a dict; candidate ids are ints, given in archive order)::

    format, seed, rng            PCG64 ``bit_generator.state`` (the only randomness)
    phase                        "initial" until every initial candidate is told, then "evolve"
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

A candidate is ``{id, genome (genome.to_dict), sign, equation, stage ("initial" | "surrogate"),
iteration (None for initial), parent (None for initial), failed_children (failed children of its
iteration before it)}``; ``stage`` tells the caller which fitness protocol to run.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import statistics

import numpy as np

from lfe.core import equation as equation_lib
from lfe.core import genome as genome_lib
from lfe.core import integrity

FORMAT = "lfe-evolution-v1"
STATUSES = ("ok", "stopped_early", "gated", "diverged", "timed_out")
FAILED = ("gated", "diverged", "timed_out")  # timed_out: the executor cancelled the evaluation


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

    def __post_init__(self):
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


def replace_oldest(population: list[dict], child: dict, capacity: int
                   ) -> tuple[list[dict], int | None]:
    """Ages every member by one and puts ``child`` (age 0) in, returning the removed id.

    Below ``capacity`` (fewer initial genomes succeeded) the child is appended. Otherwise it takes
    the slot of the oldest member; among equally old ones the least fit goes (then the first
    slot), so the initial population, all of age 0, loses its weakest first.
    """
    members = _aged(population)
    entry = {"id": child["id"], "age": 0, "fitness": child["fitness"]}
    if len(members) < capacity:
        return members + [entry], None
    oldest = max(m["age"] for m in members)
    slot = min((i for i, m in enumerate(members) if m["age"] == oldest),
               key=lambda i: (members[i]["fitness"], i))
    removed = members[slot]["id"]
    members[slot] = entry
    return members, removed


def _aged(population: list[dict]) -> list[dict]:
    return [dict(m, age=m["age"] + 1) for m in population]


def population_stats(population: list[dict]) -> dict:
    """Best / mean / median fitness of the members (None when empty), as in Figure 4."""
    f = [m["fitness"] for m in population]
    if not f:
        return {"best": None, "mean": None, "median": None}
    return {"best": max(f), "mean": math.fsum(f) / len(f), "median": float(statistics.median(f))}


def is_failed(record: dict) -> bool:
    """A failed child (gated or diverged) — or any record without a finite fitness, which is the
    worst value and so may never enter the population or become best."""
    return record["status"] in FAILED or record.get("fitness") is None


def failure(record: dict) -> str:
    """How a failed record failed: its status, or "no_fitness" for an ok one without fitness."""
    return record["status"] if record["status"] in FAILED else "no_fitness"


def timed_out_record(message: str) -> dict:
    """The record of an evaluation the executor cancelled at its timeout (a failed child)."""
    return {"fitness": None, "status": "timed_out", "steps": 0, "wall_time_s": 0.0, "curve": [],
            "message": message}


def _normalise_record(record: dict) -> dict:
    """A plain-JSON copy (tuples → lists, numpy → Python), non-finite fitness → None.

    Storing exactly what ``json.loads(json.dumps(...))`` gives back is what makes a run with a
    JSON round trip between calls end in the identical state.
    """
    if not isinstance(record, dict) or record.get("status") not in STATUSES:
        raise ValueError(f"a fitness record needs a status in {STATUSES}, got {record!r:.200}")
    rec = json.loads(json.dumps(record, default=lambda o: o.tolist()))
    fit = rec.get("fitness")
    if fit is not None and not (isinstance(fit, int | float) and math.isfinite(fit)):
        rec["fitness"] = None
    return rec


# --------------------------------------------------------------------------- state plumbing

def init(params: Params, seed: int) -> dict:
    """A fresh state; nothing is drawn until the first ``ask`` (which needs the archive)."""
    del params  # the state depends only on the seed; kept for the evosax-style signature
    rng = np.random.Generator(np.random.PCG64(seed))
    return {"format": FORMAT, "seed": int(seed), "rng": rng.bit_generator.state,
            "phase": "initial", "next_id": 0, "initial_sampled": False, "initial_queue": [],
            "in_flight": [], "retries": [], "evaluated": [], "population": [],
            "iterations_started": 0, "iterations_done": 0, "log": []}


def _copy(state: dict) -> dict:
    """A copy safe to change: entries of the append-only lists are never modified in place, so
    copying the lists (not the entries) keeps ``ask``/``tell`` from touching their input."""
    if state.get("format") != FORMAT:
        raise ValueError(f"not an evolution state (format {state.get('format')!r}, "
                         f"expected {FORMAT!r})")
    new = dict(state)
    for key in ("initial_queue", "in_flight", "retries", "evaluated", "population", "log"):
        new[key] = list(state[key])
    return new


def _rng(state: dict) -> np.random.Generator:
    bit_generator = np.random.PCG64(0)
    bit_generator.state = state["rng"]
    return np.random.Generator(bit_generator)


def _candidate(state: dict, child: genome_lib.Genome, verdict: integrity.Verdict, stage: str,
               iteration: int | None, parent: int | None, failed_children: int) -> dict:
    cid = state["next_id"]
    state["next_id"] = cid + 1
    return {"id": cid, "genome": genome_lib.to_dict(child), "sign": verdict.sign,
            "equation": equation_lib.text(child, verdict.sign), "stage": stage,
            "iteration": iteration, "parent": parent, "failed_children": failed_children}


def _complete(state: dict, iteration: int, outcome: str, child: int | None = None,
              removed: int | None = None) -> None:
    """Ends an iteration: skipped ones age the population too (ages count iterations)."""
    if outcome.startswith("skipped"):
        state["population"] = _aged(state["population"])
    state["iterations_done"] += 1
    state["log"].append({"iteration": state["iterations_done"], "id": iteration,
                         "outcome": outcome, "child": child, "removed": removed,
                         **population_stats(state["population"])})


def _entry(state: dict, candidate_id: int) -> dict:
    for e in state["evaluated"]:
        if e["id"] == candidate_id:
            return e
    raise ValueError(f"candidate {candidate_id} has not been evaluated")


# --------------------------------------------------------------------------- ask

def _sample_initial(params: Params, state: dict, rng: np.random.Generator,
                    archive: integrity.Archive) -> None:
    """Draws the whole initial population at once (Algorithm 2, line 1), so its genomes do not
    depend on how many the caller takes per ``ask``."""
    found = integrity.sample_valid(rng, params.initial_population, archive,
                                   op_set=params.op_set, init=params.init)
    state["initial_queue"] = [_candidate(state, g, v, "initial", None, None, 0)
                              for g, v in found]
    state["initial_sampled"] = True


def mutate_valid(params: Params, rng: np.random.Generator, parent: genome_lib.Genome,
                 archive: integrity.Archive
                 ) -> tuple[genome_lib.Genome, integrity.Verdict] | None:
    """Mutates ``parent`` until a child passes the check, or None after
    ``max_mutation_attempts`` failures in a row (§3.4).

    Attempts are judged ``mutation_batch`` at a time (one jitted call), then the RNG is rewound
    to just after the first passing attempt: the draws consumed, hence the whole run, are the
    same as mutating one at a time, whatever the batch size.
    """
    left = params.max_mutation_attempts
    while left > 0:
        kids, after = [], []
        for _ in range(params.mutation_batch):  # always a full batch: one compiled shape
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


def _next_job(params: Params, state: dict, rng: np.random.Generator
              ) -> tuple[int, int, int] | None:
    """``(iteration, parent id, failed children so far)`` for the next child to mutate.

    A retry of an iteration whose child failed comes first (it was started within the budget);
    otherwise a new iteration runs its own tournament on the population as it is now.
    """
    if state["retries"]:
        r = state["retries"].pop(0)
        return r["iteration"], r["parent"], r["failed_children"]
    if state["iterations_started"] >= params.max_iterations or not state["population"]:
        return None
    state["iterations_started"] += 1
    fitness = [m["fitness"] for m in state["population"]]
    winner = tournament(rng, fitness, params.tournament_size)
    return state["iterations_started"], state["population"][winner]["id"], 0


def ask(params: Params, state: dict, archive: integrity.Archive, capacity: int
        ) -> tuple[dict, list[dict]]:
    """Up to ``capacity - len(in_flight)`` new candidates to evaluate, and the new state.

    Each chosen child joins ``archive`` (it has now been seen). An iteration whose mutations all
    fail is skipped here and another is started in its place, within ``max_iterations``.
    """
    state = _copy(state)
    rng = _rng(state)
    new = []
    if state["phase"] == "initial":
        if not state["initial_sampled"]:
            _sample_initial(params, state, rng, archive)
        while state["initial_queue"] and len(state["in_flight"]) < capacity:
            new.append(state["initial_queue"].pop(0))
            state["in_flight"].append(new[-1])
    else:
        while len(state["in_flight"]) < capacity:
            job = _next_job(params, state, rng)
            if job is None:
                break
            iteration, parent, failed = job
            found = mutate_valid(params, rng, genome_lib.from_dict(_entry(state, parent)["genome"]),
                                 archive)
            if found is None:
                _complete(state, iteration, "skipped_mutation")
                continue
            child, verdict = found
            archive.add(verdict.phenotype, verdict.equation)
            new.append(_candidate(state, child, verdict, "surrogate", iteration, parent, failed))
            state["in_flight"].append(new[-1])
    state["rng"] = rng.bit_generator.state
    return state, [dict(c) for c in new]


# --------------------------------------------------------------------------- tell

def _form_population(params: Params, state: dict) -> None:
    """The best ``population_size`` initial genomes that did not fail (§3.8), all of age 0."""
    ok = [e for e in state["evaluated"] if e["stage"] == "initial" and not is_failed(e["record"])]
    ok.sort(key=lambda e: (-e["record"]["fitness"], e["id"]))
    state["population"] = [{"id": e["id"], "age": 0, "fitness": e["record"]["fitness"]}
                           for e in ok[: params.population_size]]
    state["phase"] = "evolve"
    state["log"].append({"iteration": 0, "id": None, "outcome": "initial", "child": None,
                         "removed": None, **population_stats(state["population"])})


def tell(params: Params, state: dict, archive: integrity.Archive, candidate_id: int,
         record: dict) -> dict:
    """Records one finished evaluation (any order) and returns the new state.

    A failed child queues a retry from the same winner until ``max_failed_children`` failed,
    then the iteration is skipped; a successful one replaces the oldest member. Telling an id
    that is not in flight (unknown, or told already) raises ValueError.
    """
    del archive  # children join the archive when asked; kept for a symmetric signature
    pos = next((i for i, c in enumerate(state["in_flight"]) if c["id"] == candidate_id), None)
    if pos is None:
        told = any(e["id"] == candidate_id for e in state["evaluated"])
        raise ValueError(f"candidate {candidate_id} was {'already told' if told else 'never asked'}"
                         "; only in-flight candidates can be told")
    rec = _normalise_record(record)
    state = _copy(state)
    cand = state["in_flight"].pop(pos)
    state["evaluated"].append({**cand, "record": rec})
    if cand["stage"] == "initial":
        if not state["initial_queue"] and not state["in_flight"]:
            _form_population(params, state)
    elif is_failed(rec):
        failed = cand["failed_children"] + 1
        if failed >= params.max_failed_children:
            _complete(state, cand["iteration"], "skipped_failed_children")
        else:
            state["retries"].append({"iteration": cand["iteration"], "parent": cand["parent"],
                                     "failed_children": failed})
    else:
        full = len(state["population"]) >= params.population_size
        state["population"], removed = replace_oldest(
            state["population"], {"id": cand["id"], "fitness": rec["fitness"]},
            params.population_size)
        _complete(state, cand["iteration"], "replaced" if full else "added", cand["id"], removed)
    return state


# --------------------------------------------------------------------------- queries

def rebuild_archive(state: dict, chunk: int = 256) -> integrity.Archive:
    """The novelty archive of the run, recomputed from the genomes in the state.

    Every candidate ever drawn (initial ones included) joined the archive in id order, and
    phenotypes are a pure function of the genome, so this equals the live archive.
    """
    seen = sorted(state["evaluated"] + state["in_flight"] + state["initial_queue"],
                  key=lambda c: c["id"])
    archive = integrity.Archive()
    for start in range(0, len(seen), chunk):
        genomes = [genome_lib.from_dict(c["genome"]) for c in seen[start: start + chunk]]
        for c, v in zip(seen[start: start + chunk],
                        integrity.check_batch(genomes, integrity.Archive()), strict=True):
            if v.phenotype is None:
                raise ValueError(f"candidate {c['id']} in the state fails the check ({v.reason})")
            archive.add(v.phenotype, v.equation)
    return archive


def in_flight(state: dict) -> list[dict]:
    """Asked, not yet told candidates, to re-submit after a restart."""
    return [dict(c) for c in state["in_flight"]]


def iterations_done(state: dict) -> int:
    return state["iterations_done"]


def is_done(params: Params, state: dict) -> bool:
    """All ``max_iterations`` completed (so nothing is in flight), or no population to evolve."""
    if state["phase"] != "evolve":
        return False
    return not state["population"] or state["iterations_done"] >= params.max_iterations


def evaluated(state: dict) -> list[dict]:
    """Every told candidate with its fitness record, in tell order."""
    return [dict(e) for e in state["evaluated"]]


def history(state: dict) -> list[dict]:
    """Population best / mean / median after each completed iteration (row 0: the initial
    population; rows of an empty population, which cannot be drawn, are left out) — the rows of
    Figure 4. ``state["log"]`` keeps every row."""
    return [dict(r) for r in state["log"] if r["best"] is not None]


def best(state: dict, k: int, stage: str | None = None) -> list[dict]:
    """The top-``k`` evaluated genomes of the run (optionally of one ``stage``), fittest first;
    failed ones never appear. Note initial and surrogate fitness come from different protocols."""
    ok = [e for e in state["evaluated"] if not is_failed(e["record"])
          and (stage is None or e["stage"] == stage)]
    ok.sort(key=lambda e: (-e["record"]["fitness"], e["id"]))
    return [{"id": e["id"], "fitness": e["record"]["fitness"], "sign": e["sign"],
             "equation": e["equation"], "genome": e["genome"], "stage": e["stage"],
             "iteration": e["iteration"], "status": e["record"]["status"]} for e in ok[:k]]


def count_above(state: dict, threshold: float) -> dict[str, int]:
    """How many evaluated genomes of each stage have a fitness above ``threshold`` (say,
    cross-entropy's mean on the same protocol), out of how many have a fitness at all:
    ``{"initial": k, "initial_scored": n, "surrogate": k, "surrogate_scored": n}``."""
    counts = {"initial": 0, "initial_scored": 0, "surrogate": 0, "surrogate_scored": 0}
    for e in state["evaluated"]:
        if not is_failed(e["record"]):
            counts[f"{e['stage']}_scored"] += 1
            counts[e["stage"]] += int(e["record"]["fitness"] > threshold)
    return counts


def summary(state: dict) -> dict:
    """Counts of the run so far and the population's fitness statistics."""
    ev = state["evaluated"]
    children = [e for e in ev if e["stage"] == "surrogate"]
    failed = collections.Counter(failure(e["record"]) for e in children if is_failed(e["record"]))
    failed_initial = collections.Counter(failure(e["record"]) for e in ev
                                         if e["stage"] == "initial" and is_failed(e["record"]))
    outcomes = collections.Counter(r["outcome"] for r in state["log"])
    fitted = [e["record"]["fitness"] for e in ev if not is_failed(e["record"])]
    return {"phase": state["phase"], "iterations": state["iterations_done"],
            "iterations_started": state["iterations_started"], "evaluated": len(ev),
            "initial_evaluated": len(ev) - len(children), "children_evaluated": len(children),
            "successful_children": outcomes["replaced"] + outcomes["added"],
            "failed_children": dict(sorted(failed.items())),
            "failed_initial": dict(sorted(failed_initial.items())),
            "skipped_iterations": {"mutation": outcomes["skipped_mutation"],
                                   "failed_children": outcomes["skipped_failed_children"]},
            "in_flight": len(state["in_flight"]), "population": len(state["population"]),
            **population_stats(state["population"]),
            "best_evaluated": max(fitted) if fitted else None}
