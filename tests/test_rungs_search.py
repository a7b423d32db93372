"""Rungs inside the search (lfe.core.rungs, issue #20): the controller's promotion rule by hand,
the tournament at equal fidelity, a run with the fake fitness, and that the default is the
paper's fixed schedule."""

import os
import subprocess
import sys

import pytest

from configs import quickstart
from lfe import main, worker
from lfe.core import evolution, recover, rundir, rungs
from lfe.core.state import Candidate, Evaluated, Member, State
from tests.conftest import REPO_ROOT

FAKE = "tests.fake_fitness:evaluate"
OVERRIDES = {"executor": "inprocess", "initial_population": 8, "population_size": 4,
             "tournament_size": 3, "max_iterations": 12, "plot_every": 0}


@pytest.fixture(autouse=True)
def fake_fitness():
    with worker.substitute(evaluate=FAKE):
        yield


def small_config(**changes):
    c = quickstart.get_config("runlocal")
    for k, v in {**OVERRIDES, **changes}.items():
        c[k] = v
    return c


def paused(rung, train, val=0.2, steps=100, wall=1.0, gate=None):
    return {"fitness": val, "status": "paused", "steps": steps, "wall_time_s": wall, "curve": [],
            "gate_train_accuracy": gate, "best_train_accuracy": train,
            "best_val_accuracy": val, "message": "", "rung": rung}


def child(cid, iteration=1):
    return Candidate(cid, {}, 1, f"eq{cid}", "surrogate", iteration, 0, 0)


def state_with(*ids):
    return State(seed=0, rng={}, phase="evolve", in_flight=[child(i, i) for i in ids])


SCHEDULE = rungs.Schedule((400, 1200), 1 / 3, "train")


def test_settle_by_hand():
    s = state_with(1, 2, 3, 4)
    # rung 0: 1 arrives first -> promoted; 2 (0.3 < 0.5): rank 2 of 2 > ceil(2/3) = 1 -> stop
    assert rungs.settle(SCHEDULE, s, 1, paused(0, 0.5, gate=0.41)) is None
    stopped = rungs.settle(SCHEDULE, s, 2, paused(0, 0.3, val=0.21, steps=1200, wall=3.0,
                                                  gate=0.39))
    assert stopped["status"] == "stopped_at_rung" and stopped["rung"] == 0
    assert stopped["fitness"] == 0.21  # its best validation accuracy at the rung
    assert stopped["steps"] == 1200 and stopped["wall_time_s"] == 3.0  # its one task
    assert "rank 2 of 2" in stopped["message"]
    # 3 (0.6): rank 1 of 3 -> promoted; 4 (0.55): rank 2 of 4 <= ceil(4/3) = 2 -> promoted
    assert rungs.settle(SCHEDULE, s, 3, paused(0, 0.6)) is None
    assert rungs.settle(SCHEDULE, s, 4, paused(0, 0.55)) is None
    assert [(a.id, a.rung, a.promoted) for a in s.rung_log] == [
        (1, 0, True), (2, 0, False), (3, 0, True), (4, 0, True)]
    assert rungs.next_rung(s, 1) == 1 and rungs.next_rung(s, 2) == 1
    # rung 1: 3 first (promoted), then 1 (0.7 < 0.8: rank 2 of 2 -> stopped at rung 1)
    assert rungs.settle(SCHEDULE, s, 3, paused(1, 0.8, steps=800, wall=2.0)) is None
    second = rungs.settle(SCHEDULE, s, 1, paused(1, 0.7, val=0.3, steps=800, wall=2.0))
    assert second["status"] == "stopped_at_rung" and second["rung"] == 1
    # its record sums both tasks; the gate's accuracy comes from the first
    assert second["steps"] == 900 and second["wall_time_s"] == 3.0
    assert second["gate_train_accuracy"] == 0.41
    # 3 trains to the end: the final record sums its three tasks
    final = {"fitness": 0.5, "status": "ok", "steps": 800, "wall_time_s": 2.5, "curve": [],
             "gate_train_accuracy": None, "best_train_accuracy": 0.9, "best_val_accuracy": 0.5,
             "message": ""}
    merged = rungs.settle(SCHEDULE, s, 3, final)
    assert merged["status"] == "ok" and merged["steps"] == 100 + 800 + 800
    assert merged["wall_time_s"] == 1.0 + 2.0 + 2.5
    # a pause at the wrong rung is refused
    with pytest.raises(ValueError, match="next rung is 1"):
        rungs.settle(SCHEDULE, s, 4, paused(0, 0.1))


def test_validation_score_ranks_by_validation_accuracy():
    s = state_with(1, 2)
    by_val = rungs.Schedule((400,), 1 / 2, "val")
    assert rungs.settle(by_val, s, 1, paused(0, 0.9, val=0.2)) is None
    # better validation, worse training accuracy: ranks first by validation -> promoted
    assert rungs.settle(by_val, s, 2, paused(0, 0.1, val=0.3)) is None


def test_tell_keeps_a_promoted_child_in_flight_and_stops_the_others():
    params = evolution.Params(population_size=2, initial_population=2, rungs=(400,),
                              rung_fraction=0.5)
    s = state_with(5, 6)
    s = evolution.tell(params, s, 5, paused(0, 0.5))
    assert [c.id for c in s.in_flight] == [5, 6] and not s.evaluated
    s = evolution.tell(params, s, 6, paused(0, 0.4, val=0.25))
    assert [c.id for c in s.in_flight] == [5]
    assert s.evaluated[0].record["status"] == "stopped_at_rung"
    assert [m.id for m in s.population] == [6]  # a scored child: it joins the population


def test_tournament_compares_members_at_the_same_fidelity():
    top = {"status": "ok", "fitness": 0.5}
    low = {"status": "stopped_at_rung", "fitness": 0.9, "rung": 0}
    mid = {"status": "stopped_at_rung", "fitness": 0.3, "rung": 1}
    s = State(seed=0, rng={}, evaluated=[
        Evaluated(i, {}, 1, "", "surrogate", 1, 0, 0, r) for i, r in
        ((1, top), (2, low), (3, mid), (4, dict(top, fitness=0.45)))])
    members = [Member(1, 0, 0.5), Member(2, 0, 0.9), Member(3, 0, 0.3), Member(4, 0, 0.45)]
    keys = rungs.sort_keys(s, members, 2)
    assert keys == [(2, 0.5), (0, 0.9), (1, 0.3), (2, 0.45)]
    # a 0.9 at rung 1 loses to a 0.3 at rung 2, which loses to any member trained in full
    assert evolution.select_winner(keys, [1, 2]) == 2
    assert evolution.select_winner(keys, [1, 2, 3, 0]) == 0
    assert evolution.select_winner(keys, [3, 1]) == 3  # fitness decides within a fidelity
    # without rungs the keys are the fitness values
    assert rungs.sort_keys(s, members, 0) == [0.5, 0.9, 0.3, 0.45]
    # the population statistics use the members at the top fidelity only
    assert [m.id for m in rungs.at_top(s, members)] == [1, 4]


def test_the_default_is_the_papers_fixed_schedule(tmp_path, monkeypatch):
    c = quickstart.get_config()
    assert tuple(c.rungs) == () and evolution.Params().rungs == ()
    submitted = []
    from lfe.executors import base

    real = base.InProcessExecutor.submit
    monkeypatch.setattr(base.InProcessExecutor, "submit",
                        lambda self, key, target, *args: (submitted.append(args),
                                                          real(self, key, target, *args))[1])
    s = main.dispatch(small_config(), str(tmp_path))
    assert s["iterations"] == 12 and "rung_arrivals" not in s
    assert {len(a) for a in submitted} == {4}  # spec, config, seed, stage: no rung argument
    records = [e["record"] for e in rundir.read_events(str(tmp_path))]
    assert not any("rung" in r or r["status"] in ("paused", "stopped_at_rung") for r in records)
    assert "rung_log" not in rundir.load_state(str(tmp_path))


def test_a_run_with_rungs(tmp_path, capsys):
    s = main.dispatch(small_config(rungs=(50,), rung_fraction=1 / 3), str(tmp_path))
    assert s["iterations"] == 12
    out = capsys.readouterr().out
    assert "promoted; trains on to the end" in out
    # a child not promoted is told stopped at its rung (the progress line says so, never paused)
    assert "stopped_at_rung " in out and "stopped at rung 1 of 1 (step 50): rank" in out
    assert ": paused" not in out
    events = rundir.read_events(str(tmp_path))
    statuses = [e["record"]["status"] for e in events]
    state = rundir.load_state(str(tmp_path))
    log = state["rung_log"]
    assert statuses.count("paused") == len(log)  # every arrival is logged
    assert s["rung_arrivals"] == [len(log)]
    assert s["rung_promoted"][0] == sum(a["promoted"] for a in log) > 0
    assert s["stopped_at_rung"] == [len(log) - s["rung_promoted"][0]] and s["stopped_at_rung"][0]
    # every promoted child was told once more (its final record, as its task returned it in
    # events.jsonl); the state's record sums both tasks' steps
    finals = {e["id"] for e in events if e["record"]["status"] == "ok"
              and e["candidate"]["iteration"] is not None}
    for a in log:
        if a["promoted"]:
            assert a["id"] in finals
            assert State.from_dict(state).entry(a["id"]).record["steps"] == 20
    # a resumed finished run changes nothing; a recovered state equals the saved one
    main.dispatch(small_config(rungs=(50,), rung_fraction=1 / 3), str(tmp_path))
    assert rundir.load_state(str(tmp_path)) == state
    config = rundir.fileio.read_json(tmp_path / "config.json")
    rebuilt, _ = recover.rebuild(recover.params_of(config), 0, events,
                                 recover.read_asked(str(tmp_path)))
    assert rebuilt.to_dict()["rung_log"] == log
    assert [e.record for e in State.from_dict(state).evaluated] == \
        [e.record for e in rebuilt.evaluated]


def test_rungs_on_the_pool_end_as_in_process(tmp_path):
    """The pool executor's workers run the rung tasks: with one worker, the same run."""
    rungs = {"rungs": (50,), "rung_fraction": 0.5, "max_iterations": 6}
    main.dispatch(small_config(**rungs), str(tmp_path / "inprocess"))
    main.dispatch(small_config(executor="pool", workers=1, **rungs), str(tmp_path / "pool"))
    a, b = (rundir.load_state(str(tmp_path / d)) for d in ("inprocess", "pool"))
    assert a["rung_log"] and a == b


def test_the_step_budget_ends_a_run_and_a_larger_one_resumes_it(tmp_path, capsys):
    """max_steps: no candidate is asked once the run's training steps reach it (the fake
    fitness trains 10 steps per evaluation; in process, one evaluation at a time)."""
    from lfe.core import progress

    main.dispatch(small_config(max_iterations=1000, max_steps=150), str(tmp_path))
    state = State.from_dict(rundir.load_state(str(tmp_path)))
    assert progress.steps_spent(state) == 150 and len(state.evaluated) == 15
    assert not state.in_flight and state.iterations_done < 1000
    assert "training_steps: 150" in capsys.readouterr().out
    main.dispatch(small_config(max_iterations=1000, max_steps=200), str(tmp_path))
    state = State.from_dict(rundir.load_state(str(tmp_path)))
    assert progress.steps_spent(state) == 200 and len(state.evaluated) == 20


def test_bad_rungs_are_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"rungs \[70\] are not evaluation steps"):
        main.dispatch(small_config(rungs=(70,)), str(tmp_path))
    with pytest.raises(ValueError, match="rungs"):
        main.dispatch(small_config(rungs=(100,)), str(tmp_path))
    with pytest.raises(ValueError, match="fraction"):
        evolution.Params(rungs=(50,), rung_fraction=0.0)


@pytest.mark.slow
@pytest.mark.parametrize("executor,workers", [("inprocess", 0), ("vmap", 2)])
def test_rungs_with_real_training(tmp_path, cifar_dir, executor, workers):
    """Real ConvNet runs on CIFAR-10 (the quickstart smoke protocols: a short gate, surrogate
    100 steps, a rung at 50), through the command line in its own process. In process a
    promoted child continues from its checkpoint (its record counts gate + 100 surrogate steps
    once); the vmap executor trains it again from step 0."""
    overrides = {**OVERRIDES, "executor": executor, "workers": workers, "initial_population": 4,
                 "population_size": 3, "tournament_size": 2, "max_iterations": 4,
                 "rungs": "(50,)", "rung_fraction": 0.5, "fitness.gate_min_train_accuracy": 0.0}
    env = dict(os.environ, LFE_DATA_DIR=str(cifar_dir), JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, "-m", "lfe.main", "--config=configs/quickstart.py:runlocal",
                    f"--workdir={tmp_path}", *(f"--config.{k}={v}" for k, v in overrides.items())],
                   cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=1200)
    state = State.from_dict(rundir.load_state(str(tmp_path)))
    s = evolution.summary(state)
    assert s["rung_arrivals"][0] >= 2 and s["rung_promoted"][0] >= 1
    extra = 0 if executor == "inprocess" else 50  # steps trained again without a checkpoint
    gate = quickstart.get_config("runlocal").fitness.gate.steps
    for a in state.rung_log:
        record = state.entry(a.id).record
        if a.promoted:
            assert record["status"] == "ok" and record["steps"] == gate + 100 + extra
            assert [row[0] for row in record["curve"]] == [50, 100]
        else:
            assert record["status"] == "stopped_at_rung" and record["steps"] == gate + 50
            assert [row[0] for row in record["curve"]] == [50]
    folder = tmp_path / "checkpoints"  # every paused run's checkpoint is gone once told
    assert not folder.exists() or not os.listdir(folder)


def test_the_comparison_reads_both_kinds_of_run(tmp_path):
    from bench import rungs_compare

    main.dispatch(small_config(rungs=(50,), rung_fraction=1 / 3, ce_band=(0.5, 0.45, 0.4)),
                  str(tmp_path / "rungs"))
    out = tmp_path / "cmp" / "comparison.md"
    rungs_compare.main(["--runs", "results/cpu_evolution/run", str(tmp_path / "rungs"),
                        "--names", "fixed", "rungs", "--out", str(out)])
    fixed, with_rungs = rundir.fileio.read_json(tmp_path / "cmp" / "comparison.json")["runs"]
    assert (fixed["evaluations"], fixed["scored_children"], fixed["core_hours"]) == (114, 27, 5.349)
    assert fixed["children_stopped_at_rung"] == 0 and fixed["children_beating_ce_mean"] == 3
    # 24 initial runs of 2,000 steps, 90 gates of 800 steps, 27 children on to 2,000 more
    assert fixed["training_steps"] == 24 * 2000 + 90 * 800 + 27 * 2000
    assert with_rungs["training_steps"] > 0 and with_rungs["core_seconds_per_1000_steps"] > 0
    assert with_rungs["children_stopped_at_rung"] > 0
    assert with_rungs["children_trained_in_full"] + with_rungs["children_stopped_at_rung"] == \
        with_rungs["scored_children"]
    assert "| children beating CE's mean | 3 |" in out.read_text()


def test_the_training_free_filter_is_a_first_rung(cifar_dir):
    """fitness.filter (off by default): cross-entropy passes its own probe; a loss whose
    gradient is zero is rejected as ``filtered`` before the gate, having trained nothing."""
    import jax.numpy as jnp
    import ml_collections

    from lfe.core import protocol
    from lfe.training import fitness, losses

    assert not protocol.fitness_config().filter.enabled
    cfg = ml_collections.ConfigDict(small_config().fitness.to_dict())
    cfg.data_dir = str(cifar_dir)
    dataset = fitness.stage_dataset(cfg, "surrogate")
    assert fitness.filter_record(losses.get("cross_entropy"), cfg, dataset) is None  # off
    cfg.filter.enabled = True
    assert fitness.filter_record(losses.get("cross_entropy"), cfg, dataset) is None
    flat = losses.LossDef("flat", lambda y, p: jnp.zeros_like(p))  # no gradient at all
    record = fitness.evaluate(flat, cfg, seed=0, stage="surrogate", rung=(0, 50))
    assert record.status == "filtered" and record.failed and record.steps == 0
    assert "linear probe mean accuracy" in record.message
    # the initial population is not filtered (children only, as the gate)
    cfg.initial.steps, cfg.initial.total_steps = 20, 20
    assert fitness.evaluate(flat, cfg, seed=0, stage="initial").status != "filtered"
