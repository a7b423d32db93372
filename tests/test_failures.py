"""The failure policy (``lfe.core.retry``), one test per rule: a task that raises uses up its
budget and becomes a failed child (or a failed cell) with its error; a lost worker is not
charged; the retry counts survive a controller restart; the pool reports only the task whose
worker died and replaces that worker on its core. The chaos runs are in ``test_chaos.py``."""

import collections
import os
import signal
import time

import pytest

from configs import quickstart
from lfe import executors, worker
from lfe.core import evolution, records, retry, rundir
from lfe.core.state import State
from lfe.executors import Outcome
from lfe.experiments import cells, evolve
from tests import fake_fitness

FAKE = "tests.fake_fitness:evaluate"
TASKS = "tests.chaos_tasks"
RAISED = Outcome(error="RuntimeError: boom")
LOST = Outcome(error="worker failed: killed by SIGKILL", lost=True)


# --------------------------------------------------------------------------- the policy

def test_raised_attempts_are_charged_and_losses_are_free_up_to_a_limit():
    assert retry.again([False, False], 2) and not retry.again([False, False, False], 2)
    assert retry.again([True] * retry.FREE_LOSSES, 0)  # preemptions cost nothing ...
    assert not retry.again([True] * (retry.FREE_LOSSES + 1), 0)  # ... up to FREE_LOSSES
    assert retry.charged([True, False, True]) == 1
    assert retry.describe([False, True], 2) == "worker lost, not charged"
    assert retry.describe([True, False], 2) == "retry 1/2"


def test_an_errored_record_is_a_failed_child():
    record = records.errored("RuntimeError: boom").to_dict()
    assert record["status"] == "error" and record["fitness"] is None
    assert records.is_failed(record) and records.Status.ERROR.failed
    assert records.FitnessRecord.from_dict(record).message == "RuntimeError: boom"


def test_states_without_attempts_keep_the_old_layout_and_attempts_round_trip():
    state = evolution.init(evolution.Params(), 0)
    assert "attempts" not in state.to_dict()  # the layout of runs written before
    assert State.from_dict(state.to_dict()) == state
    state.in_flight.append(evolution.Candidate(0, {}, 1, "y", "initial", None, None, 0))
    state = evolution.record_attempt(state, 0, "RuntimeError: boom", False)
    assert state.to_dict()["attempts"] == [{"id": 0, "error": "RuntimeError: boom",
                                            "lost": False}]
    assert State.from_dict(state.to_dict()) == state
    assert evolution.attempts_of(state, 0) == [False]
    with pytest.raises(ValueError, match="candidate 5 is not in flight"):
        evolution.record_attempt(state, 5, "x", False)


# --------------------------------------------------------------------------- evolve's loop

class Scripted:
    """In-process executor whose first attempts at some candidates fail as ``script`` says
    (candidate id -> outcomes, used up in order); ``stop_after`` wait_any calls, it raises
    KeyboardInterrupt, as a killed controller would stop."""

    capacity = 1

    def __init__(self, script: dict, stop_after: int | None = None):
        self.script = {k: list(v) for k, v in script.items()}
        self.stop_after = stop_after
        self.queue = collections.deque()
        self.calls = collections.Counter()

    @property
    def pending(self):
        return len(self.queue)

    def submit(self, key, target, *args):
        self.queue.append((key, target, args))

    def wait_any(self):
        if self.stop_after is not None and sum(self.calls.values()) >= self.stop_after:
            raise KeyboardInterrupt
        key, target, args = self.queue.popleft()
        self.calls[int(key)] += 1
        plan = self.script.get(int(key))
        return [(key, plan.pop(0) if plan else executors.call(target, args))]

    def close(self):
        self.queue.clear()


def small_config(**changes):
    c = quickstart.get_config("runlocal")
    for k, v in {"executor": "inprocess", "initial_population": 8, "population_size": 4,
                 "tournament_size": 3, "max_iterations": 6, "plot_every": 0, **changes}.items():
        c[k] = v
    return c


def evolve_with(executor, workdir, config):
    with worker.substitute(evaluate=FAKE):
        r = evolve._Run(config, str(workdir))
        try:
            evolve._evolve(r, executor)
        finally:
            r.close()
    return r.state


def check_told_once(workdir, state):
    ids = [e["id"] for e in rundir.read_events(str(workdir))]
    assert sorted(ids) == sorted(e.id for e in state.evaluated) == list(range(state.next_id))
    assert not state.in_flight


def test_a_task_that_always_raises_uses_its_budget_then_is_a_failed_child(tmp_path):
    ex = Scripted({3: [RAISED] * 10, 9: [RAISED]})
    state = evolve_with(ex, tmp_path, small_config(max_task_retries=2))
    assert ex.calls[3] == 3 and ex.calls[9] == 2  # 1 + 2 retries; 9 recovered at its retry
    record = state.entry(3).record
    assert record["status"] == "error"
    assert record["message"] == "RuntimeError: boom (gave up after 3 attempts)"
    assert state.entry(9).record["status"] in ("ok", "gated")  # the fake fitness's own
    assert evolution.attempts_of(state, 3) == [False] * 3
    s = evolution.summary(state)
    assert s["failed_initial"] == {"error": 1} and s["iterations"] == 6  # the run went on
    assert s["failed_attempts"] == {"error": 4, "lost": 0}
    check_told_once(tmp_path, state)


def test_a_lost_worker_is_not_charged(tmp_path):
    c = small_config(max_task_retries=1)
    ex = Scripted({2: [LOST] * retry.FREE_LOSSES, 10: [LOST, RAISED]})
    state = evolve_with(ex, tmp_path, c)
    assert ex.calls[2] == retry.FREE_LOSSES + 1  # no budget used: it trained in the end
    assert state.entry(2).record == fake_fitness.evaluate(
        evolve._spec(state.entry(2)), {}, c.seed * 1_000_003 + 2, "initial")
    assert state.entry(10).record["status"] != "error"  # one charged failure of 1 allowed
    assert evolution.summary(state)["failed_attempts"] == {"error": 1,
                                                           "lost": retry.FREE_LOSSES + 1}
    check_told_once(tmp_path, state)


def test_retry_counts_survive_a_controller_restart(tmp_path):
    c = small_config(max_task_retries=2)
    first = Scripted({3: [RAISED] * 10}, stop_after=4)  # candidates 0, 1, 2, then 3 fails
    with pytest.raises(KeyboardInterrupt):
        evolve_with(first, tmp_path, c)
    saved = State.from_dict(rundir.load_state(str(tmp_path)))
    assert evolution.attempts_of(saved, 3) == [False]
    again = Scripted({3: [RAISED] * 10})
    state = evolve_with(again, tmp_path, c)
    assert again.calls[3] == 2  # the two attempts left, not three
    assert state.entry(3).record["status"] == "error"
    check_told_once(tmp_path, state)


# --------------------------------------------------------------------------- the pool

def drain(ex):
    out = {}
    while ex.pending:
        for key, outcome in ex.wait_any():
            assert key not in out
            out[key] = outcome
    return out


def test_the_pool_reports_only_the_dead_workers_task_and_replaces_that_worker(tmp_path):
    """A worker that dies takes only its own task with it: the others are not cancelled or
    resubmitted (the same process finishes them), and the replacement is pinned to the dead
    worker's core."""
    ex = executors.make("pool", workers=2)
    try:
        ex.submit("a", f"{TASKS}:where", 3.0, str(tmp_path / "a.pid"))
        ex.submit("b", f"{TASKS}:die", "SIGKILL", 0.5)
        ex.submit("c", f"{TASKS}:where", 0.0)  # queued: runs on b's replacement
        out = drain(ex)
        a_pid = int((tmp_path / "a.pid").read_text())
        ex.submit("d", f"{TASKS}:die", "exit")
        ex.submit("e", f"{TASKS}:die", "SIGSEGV")
        out |= drain(ex)
    finally:
        ex.close()
    assert out["a"].error is None and out["a"].value[0] == a_pid  # never interrupted
    assert out["b"].error == "worker failed: killed by SIGKILL" and out["b"].lost
    assert out["c"].error is None and out["c"].value[0] not in (a_pid,)
    if len(os.sched_getaffinity(0)) >= 2:
        assert len(out["c"].value[1]) == 1 and out["c"].value[1] != out["a"].value[1]
    assert out["d"].error == "worker failed: its process exited with status 3"
    assert out["e"].error == "worker failed: killed by SIGSEGV"
    assert not out["d"].lost and not out["e"].lost  # the task's own doing: charged


def test_a_pool_worker_killed_from_outside_is_lost(tmp_path):
    ex = executors.make("pool", workers=1)
    try:
        ex.submit("victim", f"{TASKS}:where", 60.0, str(tmp_path / "pid"))
        deadline = time.time() + 60
        while not (tmp_path / "pid").exists():
            assert time.time() < deadline
            time.sleep(0.05)
        os.kill(int((tmp_path / "pid").read_text()), signal.SIGTERM)  # a preemption
        out = drain(ex)
    finally:
        ex.close()
    assert out["victim"].error == "worker failed: killed by SIGTERM" and out["victim"].lost


def test_ray_node_death_is_lost_and_a_crashed_worker_is_charged():
    ray = pytest.importorskip("ray")
    from lfe.executors import ray_executor

    died = ray_executor.worker_failure(ray.exceptions.NodeDiedError("node 1 is dead"))
    assert died.lost and died.error == "worker failed: NodeDiedError: node 1 is dead"
    crashed = ray_executor.worker_failure(ray.exceptions.WorkerCrashedError())
    assert not crashed.lost and crashed.error.startswith("worker failed: WorkerCrashedError")


# --------------------------------------------------------------------------- grid cells

def test_a_failed_cell_is_recorded_skipped_and_retried_by_a_rerun(tmp_path, capsys):
    poison = tmp_path / "poison"
    poison.write_text("")
    protocol = {"steps": 10, "poison_seed": 1, "poison_file": str(poison)}
    grid = [cells.Cell(f"ce__seed{s}", {"loss": "ce", "seed": s},
                       ({"name": "cross_entropy"}, protocol, "cifar10", "", s)) for s in range(3)]
    out = str(tmp_path / "cells")
    with worker.substitute(train_cell=f"{TASKS}:train_cell"):
        done = cells.run_cells(grid, out, max_retries=1)
        assert sorted(done) == ["ce__seed0", "ce__seed2"]  # the grid finished
        assert sorted(cells.read_cells(out)) == ["ce__seed0", "ce__seed2"]
        failed = cells.read_cells(out, failed=True)
        assert list(failed) == ["ce__seed1"]
        assert failed["ce__seed1"]["error"] == "RuntimeError: poison cell seed 1"
        assert failed["ce__seed1"]["status"] == "error" and failed["ce__seed1"]["attempts"] == 2
        assert failed["ce__seed1"]["seed"] == 1  # the cell's meta, as a result has
        with pytest.raises(ValueError) as e:
            cells.check_complete(grid, done, out, "compare (x)")
        assert str(e.value).startswith("compare (x): 1 of 3 cells failed (errors in ")
        assert "rerun the same command to retry them" in str(e.value)
        assert "\n" not in str(e.value)
        assert "retry 1/1" in capsys.readouterr().err
        poison.unlink()
        done = cells.run_cells(grid, out, max_retries=1)  # the rerun trains only the failed
    assert sorted(done) == [f"ce__seed{s}" for s in range(3)]
    assert cells.read_cells(out, failed=True) == {}  # its failure record is gone
    cells.check_complete(grid, done, out, "compare (x)")
    assert "cells: 2 cells done, 1 to run" in capsys.readouterr().out


def test_a_grid_mode_finishes_its_grid_and_ends_with_one_line(tmp_path):
    """compare (as eliminate and transfer) trains every cell it can, writes its table, then
    fails with one line; the same command later trains only the failed cell."""
    from configs import table4
    from lfe import main
    from lfe.experiments import compare

    poison = tmp_path / "poison"
    poison.write_text("")
    c = table4.get_config("runlocal")  # 2 losses x 2 seeds
    c.protocol.poison_seed, c.protocol.poison_file = 1, str(poison)
    c.max_task_retries = 0
    with worker.substitute(train_cell=f"{TASKS}:train_cell"):
        with pytest.raises(ValueError) as e:
            main.dispatch(c, str(tmp_path / "run"))
        assert str(e.value) == (
            f"compare ({tmp_path / 'run'}): 2 of 4 cells failed (errors in "
            f"{tmp_path / 'run' / 'cells' / '<key>.failed.json'}); rerun the same command to "
            "retry them (finished cells are kept)")
        assert "| cross_entropy | 1 |" in (tmp_path / "run" / "results.md").read_text()
        assert sorted(compare.finished_cells(str(tmp_path / "run"))) == [
            "cross_entropy__seed0", "neuroloss3__seed0"]
        poison.unlink()
        table = main.dispatch(c, str(tmp_path / "run"))
    assert [row[1] for row in table.csv_rows] == [2, 2]
