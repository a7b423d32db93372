"""Tests of the regularized-evolution controller with a fake, deterministic fitness."""

import collections
import hashlib
import json
import random

import numpy as np
import pytest

from lfe.core import archive as archive_lib
from lfe.core import evolution, integrity, records
from lfe.core import genome as genome_lib
from lfe.core.state import Member, Retry, State

SMALL = evolution.Params(population_size=5, initial_population=10, tournament_size=3,
                         max_iterations=12, mutation_batch=16)


def _digest(candidate) -> bytes:
    return hashlib.sha256(json.dumps(candidate.genome, sort_keys=True).encode()).digest()


def fake_record(candidate, fail=None) -> dict:
    """Fitness from a hash of the genome; about one surrogate child in four is gated."""
    d = _digest(candidate)
    failed = fail(candidate) if fail else candidate.stage == "surrogate" and d[5] % 4 == 0
    u = int.from_bytes(d[:4], "little") / 2**32
    fit = None if failed else round(0.3 + 0.3 * u, 6)
    # A tuple curve, as FitnessRecord has before to_dict: the state must store plain JSON.
    return {"fitness": fit, "status": "gated" if failed else "ok", "steps": 10,
            "wall_time_s": 0.0, "curve": ((10, 0.5, fit or 0.0, 1.0),)}


def json_trip(state):
    """The state after a checkpoint's JSON round trip."""
    return State.from_dict(json.loads(json.dumps(state.to_dict())))


def ask(params, state, archive, capacity):
    """``evolution.ask``, adding what it admits to ``archive`` as the evolve mode does."""
    state, new, admitted = evolution.ask(params, state, archive, capacity)
    for phenotype, equation in admitted:
        archive.add(phenotype, equation)
    return state, new


def _fifo(pending, rnd):
    return [pending[0]]


def _reversed(pending, rnd):
    return pending[::-1]


def _shuffled(pending, rnd):
    chosen = pending[: rnd.randint(1, len(pending))]
    rnd.shuffle(chosen)
    return chosen


def drive(params=SMALL, seed=0, capacity=1, pick=_fifo, fail=None, roundtrip=False,
          resume_every=0, stop_after=None, check=True):
    """Runs ask/tell to the end (or ``stop_after`` tells); returns state, archive, asked, told."""
    state = evolution.init(params, seed)
    archive = archive_lib.rebuild(state)
    rnd, asked, told, pending, calls = random.Random(seed), [], [], [], 0
    while True:
        calls += 1
        if roundtrip:
            state = json_trip(state)
        if resume_every and calls % resume_every == 0:
            archive = archive_lib.rebuild(json_trip(state))
        if not evolution.is_done(params, state):
            state, new = ask(params, state, archive, capacity)
            pending += new
            asked += [c.id for c in new]
        if not pending or (stop_after is not None and len(told) >= stop_after):
            return state, archive, asked, told
        for c in pick(pending, rnd):
            if roundtrip:
                state = json_trip(state)
            state = evolution.tell(params, state, c.id, fake_record(c, fail))
            pending.remove(c)
            told.append(c.id)
            if check:
                check_invariants(params, state, capacity)


def check_invariants(params, state, capacity):
    ev_ids = [e.id for e in state.evaluated]
    fly_ids = [c.id for c in state.in_flight]
    pop_ids = [m.id for m in state.population]
    assert len(set(ev_ids)) == len(ev_ids) and not set(ev_ids) & set(fly_ids)
    assert len(fly_ids) <= capacity
    assert len(pop_ids) <= params.population_size and len(set(pop_ids)) == len(pop_ids)
    by_id = {e.id: e for e in state.evaluated}
    assert all(not evolution.is_failed(by_id[m.id].record) or m.fitness == 0.0
               and evolution.is_rescore(by_id[m.id]) for m in state.population)
    assert state.iterations_done <= state.iterations_started <= params.max_iterations
    # Each open iteration has exactly one child in flight or one retry queued.
    open_its = [c.iteration for c in state.in_flight
                if c.stage == "surrogate" and not evolution.is_rescore(c)]
    open_its += [r.iteration for r in state.retries]
    assert len(set(open_its)) == len(open_its)
    assert state.iterations_started - state.iterations_done == len(open_its)


def check_final(params, state, asked, told):
    """Exact bookkeeping at the end of a run."""
    s = evolution.summary(state)
    assert sorted(asked) == sorted(told) == sorted(e.id for e in state.evaluated)
    assert len(set(told)) == len(told) and not state.in_flight and not state.retries
    assert state.iterations_done == state.iterations_started == params.max_iterations
    assert s["evaluated"] == params.initial_population + s["rescored"] + s["children_evaluated"]
    n_failed = sum(s["failed_children"].values())
    assert s["children_evaluated"] == s["successful_children"] + n_failed
    skipped = s["skipped_iterations"]
    assert s["successful_children"] + skipped["mutation"] + skipped["failed_children"] \
        == params.max_iterations
    rows = state.log
    assert [r.iteration for r in rows] == list(range(params.max_iterations + 1))
    for row in rows[1:]:
        kids = [e for e in state.evaluated if e.iteration == row.id]
        assert len({k.parent for k in kids}) <= 1  # every retry mutates the same winner
        assert [k.failed_children for k in sorted(kids, key=lambda k: k.id)] \
            == list(range(len(kids)))
        failed = [evolution.is_failed(k.record) for k in kids]
        if row.outcome in ("added", "replaced"):
            assert failed == [True] * (len(kids) - 1) + [False] and row.child == kids[-1].id
        elif row.outcome == "skipped_failed_children":
            assert failed == [True] * params.max_failed_children
        else:
            assert row.outcome == "skipped_mutation" and all(failed)
    return s


# --------------------------------------------------------------------------- selection, aging

def test_tournament_hand_computed_ties_go_to_the_earliest_sampled():
    fitness = [0.5, 0.9, 0.9, 0.1]
    assert evolution.select_winner(fitness, [3, 2, 1, 2]) == 2
    assert evolution.select_winner(fitness, [3, 1, 2]) == 1
    assert evolution.select_winner(fitness, [3, 3, 0, 3]) == 0
    assert evolution.select_winner(fitness, [3]) == 3


def test_tournament_samples_with_replacement():
    fitness = [0.1, 0.3, 0.2]
    for seed in range(5):
        rng, twin = np.random.default_rng(seed), np.random.default_rng(seed)
        sampled = twin.integers(3, size=20)  # 20 draws from 3 members: repeats are certain
        assert evolution.tournament(rng, fitness, 20) == max(sampled, key=lambda i: fitness[i])
        assert rng.bit_generator.state == twin.bit_generator.state


def test_replace_oldest_ties_go_to_the_least_fit_and_ages_grow():
    pop = [Member(1, 3, 0.5), Member(2, 3, 0.4), Member(3, 1, 0.1), Member(4, 3, 0.4)]
    new, removed = evolution.replace_oldest(pop, Member(9, 5, 0.2), 4)
    assert removed == 2  # oldest are 1, 2, 4; least fit 2 and 4; first slot
    assert new == [Member(1, 4, 0.5), Member(9, 0, 0.2), Member(3, 2, 0.1), Member(4, 4, 0.4)]
    assert pop[1].id == 2 and pop[0].age == 3  # input untouched
    grown, removed = evolution.replace_oldest(pop[:2], Member(9, 0, 0.2), 4)
    assert removed is None and [m.id for m in grown] == [1, 2, 9]


# --------------------------------------------------------------------------- initial population

def test_initial_population_keeps_the_best_that_succeeded():
    params = evolution.Params(population_size=4, initial_population=10, max_iterations=0)
    state, _, asked, told = drive(params, fail=lambda c: c.id % 3 == 0)
    ok = [e for e in state.evaluated if not evolution.is_failed(e.record)]
    top = sorted(ok, key=lambda e: -e.record["fitness"])[:4]
    assert [m.id for m in state.population] == [e.id for e in top]
    assert all(m.age == 0 for m in state.population)
    assert all(c.stage == "initial" for c in state.evaluated)
    assert sorted(asked) == sorted(told) == list(range(10))
    s = evolution.summary(state)
    assert s["failed_initial"] == {"gated": 4} and s["evaluated"] == 10 and s["iterations"] == 0
    assert evolution.is_done(params, state) and state.phase == "evolve"


def test_fewer_successful_initial_genomes_grow_into_the_population():
    params = evolution.Params(population_size=4, initial_population=6, tournament_size=2,
                              max_iterations=4, mutation_batch=16)
    state, _, asked, told = drive(params, fail=lambda c: c.stage == "initial" and c.id >= 2)
    check_final(params, state, asked, told)
    assert [r["outcome"] for r in evolution.history(state)] \
        == ["initial", "added", "added", "replaced", "replaced"]
    assert len(state.population) == 4


def test_no_successful_initial_genome_ends_the_run():
    params = evolution.Params(population_size=4, initial_population=3, max_iterations=5)
    state, _, _, _ = drive(params, fail=lambda c: True)
    assert evolution.is_done(params, state) and state.population == []
    assert evolution.summary(state)["best"] is None and evolution.best(state, 3) == []


# --------------------------------------------------------------------------- iterations

def test_run_is_reproducible_with_exact_counts():
    state, archive, asked, told = drive()
    again, _, _, _ = drive()
    assert state == again
    s = check_final(SMALL, state, asked, told)
    assert s["evaluated"] == len(archive) == SMALL.initial_population + s["children_evaluated"]
    assert s["successful_children"] > 0 and s["failed_children"]["gated"] > 0
    entered = {r.child: r.iteration for r in state.log if r.child is not None}
    for m in state.population:  # one year older per completed iteration since it entered
        assert m.age == SMALL.max_iterations - entered.get(m.id, 0)
    assert drive(seed=1)[0] != state


def test_failed_children_retry_from_the_same_winner():
    state, _, asked, told = drive(
        fail=lambda c: c.stage == "surrogate" and c.failed_children < 2)
    s = check_final(SMALL, state, asked, told)
    assert s["successful_children"] == SMALL.max_iterations
    assert s["children_evaluated"] == 3 * SMALL.max_iterations
    assert s["failed_children"] == {"gated": 2 * SMALL.max_iterations}


def test_seven_failed_children_skip_the_iteration():
    params = evolution.Params(population_size=3, initial_population=4, tournament_size=2,
                              max_iterations=3, mutation_batch=16)
    state, _, asked, told = drive(params, fail=lambda c: c.stage == "surrogate")
    s = check_final(params, state, asked, told)
    assert s["children_evaluated"] == 7 * 3 and s["evaluated"] == 4 + 21
    assert s["skipped_iterations"] == {"mutation": 0, "failed_children": 3}
    first = evolution.history(state)[0]
    assert [m.age for m in state.population] == [3, 3, 3]  # failed children never enter
    assert evolution.history(state)[-1]["best"] == first["best"]



def initial_phase_done(params):
    """A fresh run whose whole initial population has been asked and told."""
    state = evolution.init(params, 0)
    archive = integrity.Archive()
    state, initial = ask(params, state, archive, params.initial_population)
    for c in initial:
        state = evolution.tell(params, state, c.id, fake_record(c))
    return state, archive

def test_mutation_attempts_exhausted_skip_the_iteration(monkeypatch):
    params = evolution.Params(population_size=3, initial_population=4, tournament_size=5,
                              max_mutation_attempts=5, mutation_batch=2, max_iterations=2)
    state, archive = initial_phase_done(params)
    calls = []

    def reject_all(genomes, archive, **kwargs):
        calls.append(len(genomes))
        return [integrity.Verdict(False, "cycle", 1, "", None) for _ in genomes]

    monkeypatch.setattr(integrity, "check_batch", reject_all)
    twin = np.random.Generator(np.random.PCG64(0))
    twin.bit_generator.state = state.rng
    by_id = {e.id: e for e in state.evaluated}
    for _ in range(params.max_iterations):  # the draws of one-at-a-time mutation, exactly
        w = evolution.tournament(twin, [m.fitness for m in state.population], 5)
        parent = genome_lib.from_dict(by_id[state.population[w].id].genome)
        for _ in range(5):
            genome_lib.mutate(twin, parent)
    state, new = ask(params, state, archive, 4)
    assert new == [] and calls == [2, 2, 2] * 2 and len(archive) == 4
    assert state.rng == twin.bit_generator.state
    assert evolution.summary(state)["skipped_iterations"] == {"mutation": 2, "failed_children": 0}
    assert evolution.is_done(params, state) and state.iterations_done == 2


def test_mutation_batch_size_does_not_change_the_run():
    other = evolution.Params(**{**SMALL.__dict__, "mutation_batch": 3})
    assert drive(other)[0] == drive(SMALL)[0]


# --------------------------------------------------------------------------- asynchrony

@pytest.mark.parametrize("pick", [_reversed, _shuffled])
def test_out_of_order_tells_keep_the_state_consistent(pick):
    state, archive, asked, told = drive(capacity=4, pick=pick)
    s = check_final(SMALL, state, asked, told)
    assert len(state.population) == SMALL.population_size
    assert s["evaluated"] == len(archive)
    assert len(archive_lib.rebuild(state)) == len(archive)


def test_budget_is_not_exceeded_with_many_in_flight():
    params = evolution.Params(population_size=3, initial_population=4, tournament_size=2,
                              max_iterations=3, mutation_batch=16)
    state, _, asked, told = drive(params, capacity=8, pick=_reversed)
    check_final(params, state, asked, told)  # invariants checked started <= max all along


def test_telling_an_unknown_or_repeated_id_raises():
    state = evolution.init(SMALL, 0)
    archive = integrity.Archive()
    state, new = ask(SMALL, state, archive, 2)
    assert [c.id for c in state.in_flight] == [c.id for c in new] == [0, 1]
    with pytest.raises(ValueError, match="never asked"):
        evolution.tell(SMALL, state, 5, fake_record(new[0]))
    state = evolution.tell(SMALL, state, 1, fake_record(new[1]))
    with pytest.raises(ValueError, match="already told"):
        evolution.tell(SMALL, state, 1, fake_record(new[1]))
    with pytest.raises(ValueError, match="status"):
        evolution.tell(SMALL, state, 0, {"fitness": 0.5, "status": "great"})


def test_ask_and_tell_leave_their_input_state_and_archive_unchanged():
    state = json_trip(drive(stop_after=SMALL.initial_population + 2)[0])
    frozen = json.dumps(state.to_dict())
    archive = archive_lib.rebuild(state)
    seen = archive.phenotypes.copy()
    after, new, admitted = evolution.ask(SMALL, state, archive, 3)
    evolution.tell(SMALL, after, new[0].id, fake_record(new[0]))
    assert json.dumps(state.to_dict()) == frozen
    np.testing.assert_array_equal(archive.phenotypes, seen)  # ask returns what it admits
    assert len(admitted) == len(new) > 0
    for phenotype, equation in admitted:  # the caller's archive then equals the rebuilt one
        archive.add(phenotype, equation)
    np.testing.assert_array_equal(archive.phenotypes, archive_lib.rebuild(after).phenotypes)


# --------------------------------------------------------------------------- checkpoints

@pytest.mark.parametrize("capacity", [1, 3])
def test_json_round_trip_between_calls_gives_the_identical_final_state(capacity):
    plain = drive(capacity=capacity)[0]
    assert drive(capacity=capacity, roundtrip=True)[0] == plain
    assert drive(capacity=capacity, roundtrip=True, resume_every=3)[0] == plain


def test_rebuild_archive_equals_the_live_archive():
    for kwargs in ({"stop_after": 3, "capacity": 3}, {"stop_after": 14, "capacity": 3}, {}):
        state, live, _, _ = drive(**kwargs, check=False)
        rebuilt = archive_lib.rebuild(json_trip(state))
        assert len(rebuilt) == len(live)
        np.testing.assert_array_equal(rebuilt.phenotypes, live.phenotypes)
        assert rebuilt.equations == live.equations
        # row by row too (row = candidate id: the population scope is a subset of rows)
        assert [eq for _, eq in rebuilt.added_since(0)] == [eq for _, eq in live.added_since(0)]


# --------------------------------------------------------------------------- queries

def test_best_and_summary():
    state, _, _, _ = drive()
    top = evolution.best(state, 4)
    ok = [e for e in state.evaluated if not evolution.is_failed(e.record)]
    assert [b["fitness"] for b in top] == sorted((e.record["fitness"] for e in ok),
                                                 reverse=True)[:4]
    assert all(b["sign"] in (1, -1) and b["equation"] for b in top)
    assert all(b["stage"] == "surrogate" for b in evolution.best(state, 50, stage="surrogate"))
    s = evolution.summary(state)
    pop = [m.fitness for m in state.population]
    assert s["best"] == max(pop) and s["median"] == float(np.median(pop))
    assert s["mean"] == pytest.approx(np.mean(pop)) and s["best_evaluated"] == top[0]["fitness"]
    assert s["iterations"] == state.iterations_done == SMALL.max_iterations
    assert collections.Counter(r["outcome"] for r in evolution.history(state))["initial"] == 1
    median = float(np.median([e.record["fitness"] for e in ok]))
    above = evolution.count_above(state, median)
    assert above["initial_scored"] + above["surrogate_scored"] == len(ok)
    assert above["initial"] + above["surrogate"] == sum(e.record["fitness"] > median
                                                        for e in ok)
    assert above["surrogate_scored"] == sum(e.stage == "surrogate" for e in ok)
    assert evolution.count_above(state, 2.0) == {**above, "initial": 0, "surrogate": 0}


def test_nan_fitness_is_a_failed_child_and_never_best():
    params = evolution.Params(population_size=2, initial_population=2, tournament_size=2,
                              max_iterations=1, max_failed_children=1, mutation_batch=16)
    state, archive = initial_phase_done(params)
    state, (child,) = ask(params, state, archive, 1)
    state = evolution.tell(params, state, child.id,
                           {"fitness": float("nan"), "status": "ok"})
    assert state.evaluated[-1].record["fitness"] is None
    assert child.id not in [b["id"] for b in evolution.best(state, 5)]
    assert evolution.summary(state)["failed_children"] == {"no_fitness": 1}
    assert evolution.history(state)[-1]["outcome"] == "skipped_failed_children"


def test_timed_out_child_is_a_failed_child_retried_from_its_winner():
    params = evolution.Params(population_size=2, initial_population=2, tournament_size=2,
                              max_iterations=1, mutation_batch=16)
    state, archive = initial_phase_done(params)
    state, (child,) = ask(params, state, archive, 1)
    state = evolution.tell(params, state, child.id,
                           records.timed_out("timed out after 5 s").to_dict())
    assert state.evaluated[-1].record["status"] == "timed_out"
    assert state.retries == [Retry(1, child.parent, 1)]
    assert evolution.summary(state)["failed_children"] == {"timed_out": 1}
    assert child.id not in [b["id"] for b in evolution.best(state, 5)]


def test_params_are_validated():
    with pytest.raises(ValueError, match="tournament_size"):
        evolution.Params(tournament_size=0)
    with pytest.raises(ValueError, match="max_iterations"):
        evolution.Params(max_iterations=-1)


# --------------------------------------------------------------------------- the paper's choices

CE = genome_lib.make([("ln", ["yhat"]), ("mul", ["y", "h0"]), ("neg", ["h0"]), ("neg", ["h0"]),
                      ("neg", ["h1"])])


def _tell_all(params, state, candidates, fitness):
    for c in candidates:
        fit = fitness[c.id]
        state = evolution.tell(params, state, c.id, {"fitness": fit, "status": "gated"
                                                     if fit is None else "ok"})
    return state


@pytest.mark.parametrize("novelty", ["population", "archive"])
def test_a_removed_member_may_return_under_population_novelty_only(novelty, monkeypatch):
    params = evolution.Params(population_size=2, initial_population=2, tournament_size=1,
                              max_iterations=2, max_mutation_attempts=4, mutation_batch=2,
                              novelty=novelty)
    state, archive = evolution.init(params, 0), integrity.Archive()
    state, initial = ask(params, state, archive, 2)
    state = _tell_all(params, state, initial, {0: 0.6, 1: 0.5})
    assert [m.id for m in state.population] == [0, 1]
    monkeypatch.setattr(genome_lib, "mutate", lambda rng, parent: CE)  # every mutation: CE
    state, (child,) = ask(params, state, archive, 1)
    state = _tell_all(params, state, [child], {2: 0.7})
    # ages 1, 1, 0: the oldest least fit, member 1, is removed (still in the archive)
    assert [m.id for m in state.population] == [0, 2] and state.log[-1].removed == 1
    member1 = genome_lib.from_dict(state.entry(1).genome)
    monkeypatch.setattr(genome_lib, "mutate", lambda rng, parent: member1)
    state, new = ask(params, state, archive, 1)
    if novelty == "population":  # member 1's phenotype and equation are no longer in scope
        assert [c.genome for c in new] == [state.entry(1).genome]
        assert new[0].equation == state.entry(1).equation and len(archive) == 4
    else:  # every genome ever drawn is in scope: 4 attempts, all refused
        assert new == [] and len(archive) == 3
        assert evolution.summary(state)["skipped_iterations"]["mutation"] == 1


def test_population_scope_is_the_population_and_the_children_in_flight():
    state, archive, _, _ = drive(SMALL, capacity=3, stop_after=SMALL.initial_population + 4,
                                 check=False)
    scope = archive_lib.population_scope(state, archive)
    ids = [m.id for m in state.population] + [c.id for c in state.in_flight]
    np.testing.assert_array_equal(scope.phenotypes, archive.phenotypes[ids])
    with pytest.raises(ValueError, match="rebuild"):
        archive_lib.population_scope(state, integrity.Archive())


@pytest.mark.parametrize("novelty", ["population", "archive"])
@pytest.mark.parametrize("rescore", [False, True])
def test_resume_is_exact_for_each_novelty_scope_and_rescoring(novelty, rescore):
    params = evolution.Params(**{**SMALL.__dict__, "novelty": novelty, "rescore_initial": rescore})
    plain, _, asked, told = drive(params, capacity=3, pick=_reversed)
    check_final(params, plain, asked, told)
    assert drive(params, capacity=3, pick=_reversed, roundtrip=True, resume_every=2)[0] == plain
    if rescore:
        assert evolution.summary(plain)["rescored"] == params.population_size


def test_rescoring_hand_computed():
    params = evolution.Params(population_size=2, initial_population=3, tournament_size=20,
                              max_iterations=1, mutation_batch=4, rescore_initial=True)
    state, archive = evolution.init(params, 0), integrity.Archive()
    state, initial = ask(params, state, archive, 3)
    state = _tell_all(params, state, initial, {0: 0.5, 1: 0.6, 2: 0.4})
    assert state.phase == "rescore" and [m.id for m in state.population] == [1, 0]
    state, rescores = ask(params, state, archive, 1)  # capacity 1: one at a time
    state, more = ask(params, state, archive, 2)
    assert [(c.id, c.parent, c.stage, c.iteration) for c in rescores + more] \
        == [(3, 1, "surrogate", None), (4, 0, "surrogate", None)]
    assert all(c.genome == state.entry(c.parent).genome for c in rescores + more)
    assert len(archive) == 5 and ask(params, state, archive, 5)[1] == []  # nothing left to ask
    state = _tell_all(params, state, more, {4: 0.9})  # out of order
    assert state.phase == "rescore" and state.population[1] == Member(4, 0, 0.9)
    state = _tell_all(params, state, rescores, {3: None})  # a failed re-scoring: fitness 0
    assert state.phase == "evolve" and state.population == [Member(3, 0, 0.0), Member(4, 0, 0.9)]
    assert evolution.history(state) == [{"iteration": 0, "id": None, "outcome": "initial",
                                         "child": None, "removed": None, "best": 0.9,
                                         "mean": 0.45, "median": 0.45}]
    s = evolution.summary(state)
    assert (s["initial_evaluated"], s["rescored"], s["children_evaluated"]) == (3, 2, 0)
    # genome 0 once, at its surrogate score; genome 1's failed re-scoring leaves its 0.6
    assert [(b["id"], b["fitness"]) for b in evolution.best(state, 5)] \
        == [(4, 0.9), (1, 0.6), (2, 0.4)]
    state, (child,) = ask(params, state, archive, 1)
    assert child.iteration == 1 and child.parent == 4  # the tournament reads the new scores


def test_novelty_scope_is_validated():
    with pytest.raises(ValueError, match="novelty must be one of population, archive"):
        evolution.Params(novelty="history")
