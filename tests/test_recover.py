"""lfe.core.recover: an evolve run whose two state checkpoints are damaged is rebuilt from its
logs (issue #18): the rebuilt state equals the lost one but for the random stream."""

import hashlib
import json
import os
import random
import subprocess
import sys

import pytest

from configs import quickstart
from lfe import main, worker
from lfe.core import evolution, integrity, recover, rundir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE = "tests.fake_fitness:evaluate"


def record(genome: dict, stage: str) -> dict:
    """A deterministic fake fitness record; about one child in four is gated."""
    digest = hashlib.sha256(json.dumps(genome, sort_keys=True).encode()).digest()
    gated = stage == "surrogate" and digest[5] % 4 == 0
    fit = None if gated else round(0.3 + 0.3 * digest[0] / 255, 6)
    return {"fitness": fit, "status": "gated" if gated else "ok", "steps": 10,
            "wall_time_s": 0.0}


def simulate(params, seed: int, capacity: int, order: int, stop_after: int | None):
    """The controller loop of ``mode: evolve`` with evaluations finishing in a random order;
    stops (as a crash would) after ``stop_after`` tells. Returns the state and the two logs."""
    rng = random.Random(order)
    state, archive = evolution.init(params, seed), integrity.Archive()
    asked, events, pending = {}, [], []
    while stop_after is None or len(events) < stop_after:
        if not evolution.is_done(params, state):
            state, new, admitted = evolution.ask(params, state, archive, capacity)
            for phenotype, eq in admitted:
                archive.add(phenotype, eq)
            for c in new:
                asked[c.id] = c.to_dict()
                pending.append(c)
        if not pending:
            break
        c = pending.pop(rng.randrange(len(pending)))
        rec = record(c.genome, c.stage)
        events.append({"id": c.id, "record": rec, "candidate": c.to_dict()})
        state = evolution.tell(params, state, c.id, rec)
    return state, asked, events


def comparable(state) -> dict:
    d = state.to_dict()
    del d["rng"]  # re-seeded by the rebuild
    return d


@pytest.mark.parametrize("capacity", [1, 3])
@pytest.mark.parametrize("stop_after", [None, 5, 9, 15])
def test_rebuilt_state_equals_the_lost_one_but_for_the_rng(capacity, stop_after):
    params = evolution.Params(population_size=4, initial_population=8, tournament_size=3,
                              max_iterations=10, max_failed_children=3)
    state, asked, events = simulate(params, 3, capacity, capacity + (stop_after or 0),
                                    stop_after)
    assert any(e["record"]["status"] == "gated" for e in events) or stop_after
    rebuilt, summary = recover.rebuild(params, 3, events, asked)
    assert comparable(rebuilt) == comparable(state)
    assert summary["told"] == len(events) and summary["in_flight"] == len(state.in_flight)
    assert rebuilt.rng != state.rng


def test_without_asked_log_only_whole_histories_rebuild():
    params = evolution.Params(population_size=4, initial_population=8, tournament_size=3,
                              max_iterations=10)
    for stop_after in range(10, 25):  # a stop with a child in flight older than a told one
        state, asked, events = simulate(params, 0, 3, 1, stop_after)
        told = [e["id"] for e in events]
        if any(c.id < max(told) and c.iteration for c in state.in_flight):
            break
    else:
        pytest.fail("no stop left an older child in flight")
    with pytest.raises(ValueError, match="were asked but no asked.jsonl holds their genomes"):
        recover.rebuild(params, 0, events, {})
    for e in events:
        del e["candidate"]
    with pytest.raises(ValueError, match=r"finished evaluations in events.jsonl \(candidates "):
        recover.rebuild(params, 0, events, {})
    initial_only = [e for e in events if e["id"] < 8]  # drawn from the seed alone
    rebuilt, _ = recover.rebuild(params, 0, initial_only, {})
    assert [e.id for e in rebuilt.evaluated] == [e["id"] for e in initial_only]


@pytest.fixture
def fake_fitness():
    with worker.substitute(evaluate=FAKE):
        yield


def small_config(iterations: int):
    c = quickstart.get_config("runlocal")
    c.executor, c.initial_population, c.population_size = "inprocess", 6, 3
    c.tournament_size, c.max_iterations, c.plot_every = 2, iterations, 0
    return c


def test_a_damaged_run_is_refused_naming_the_recovery_and_recovered(tmp_path, fake_fitness):
    run = tmp_path / "run"
    main.dispatch(small_config(4), str(run))
    told = len(rundir.read_events(str(run)))
    assert len(recover.read_asked(str(run))) == told  # every asked candidate was told
    lost = rundir.load_state(str(run))
    for name in (rundir.STATE, rundir.PREVIOUS):
        (run / name).write_text('{"version": 1, "sha256": "0", "state": {}}')

    cli = subprocess.run(
        [sys.executable, "-m", "tests.drive", f"--task=evaluate={FAKE}",
         "--config=configs/quickstart.py:runlocal", f"--workdir={run}",
         "--config.executor=inprocess", "--config.initial_population=6",
         "--config.population_size=3", "--config.tournament_size=2",
         "--config.max_iterations=4", "--config.plot_every=0"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert cli.returncode == 2 and "Traceback" not in cli.stderr
    line = cli.stderr.strip().splitlines()[-1]
    assert line.startswith(f"lfe: error: no good checkpoint in {run}: ")
    assert line.endswith(f"or rebuild its state from the finished evaluations in events.jsonl: "
                         f"python -m lfe.core.recover {run}, then rerun this command")

    assert recover.main([str(run)]) == 0
    assert {"state.json.damaged", "state.prev.json.damaged"} <= set(os.listdir(run))
    rebuilt = rundir.load_state(str(run))
    assert {k: v for k, v in rebuilt.items() if k != "rng"} == {
        k: v for k, v in lost.items() if k not in ("rng", "attempts")}
    with pytest.raises(ValueError, match="has a good state checkpoint; nothing to recover"):
        recover.recover(str(run))

    summary = main.dispatch(small_config(6), str(run))  # resumes and goes on
    assert summary["iterations"] == 6
    ids = [e["id"] for e in rundir.read_events(str(run))]
    assert len(ids) == len(set(ids)) > told  # nothing told twice, nothing lost


def test_recover_refuses_what_it_cannot_rebuild(tmp_path, capsys):
    assert recover.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"lfe: error: {tmp_path} is not an evolve run directory (no config.json)")
    (tmp_path / "config.json").write_text('{"mode": "compare"}')
    with pytest.raises(ValueError, match="holds a 'compare' run; only an evolve run"):
        recover.recover(str(tmp_path))
