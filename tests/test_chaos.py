"""Chaos: evolution runs whose workers are killed at random (SIGKILL mid-task, as a preemption
or the OOM killer would), with one poison candidate that always raises and one that always
crashes its worker (``tests/chaos_tasks.py``), on (a) the pool executor — its controller also
killed with SIGKILL mid-run and resumed, and a second controller refused meanwhile — and (b) a
local two-node Ray cluster. The run completes; every candidate is told exactly once
(``events.jsonl`` and the state agree); the poison candidates are failed children with their
error text; nothing else failed. Each run prints its counts: kills, crashes, failed attempts,
retries, failures and wall time (``pytest -s`` shows them).
"""

import collections
import json
import os
import subprocess
import sys
import time

import pytest

from configs import quickstart
from lfe import executors, main, worker
from lfe.core import rundir
from lfe.core.state import State
from lfe.experiments import evolve
from tests import chaos_tasks, fake_fitness

try:  # Ray is an optional extra: without it only the pool's chaos runs
    import ray

    from tests.test_executors_ray import cluster  # noqa: F401 - the two-node cluster fixture
except ImportError:
    ray = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHAOS = "tests.chaos_tasks:evaluate"
RAISES, CRASHES = 3, 10  # an initial candidate and a child
RETRIES = 2
OVERRIDES = {"initial_population": 8, "population_size": 4, "tournament_size": 3,
             "max_iterations": 12, "plot_every": 0, "max_task_retries": RETRIES}


def chaos_run_config(executor, chaos_dir, **changes):
    c = quickstart.get_config("runlocal")
    for k, v in {**OVERRIDES, "executor": executor, **changes}.items():
        c[k] = v
    c.fitness.chaos = chaos_tasks.chaos_config(
        str(chaos_dir), poison_raise=[RAISES], poison_crash=[CRASHES], kill_rate=0.3,
        max_kills=2, seed=1)
    return c


def check_chaos(workdir, config, crash_error: str, charged_others: int = 0) -> dict:
    """The run is complete and consistent (see the module docstring); returns its counts.
    ``charged_others``: charged failed attempts allowed per other candidate (Ray charges a
    candidate killed more often in a row than ``ray.max_retries`` re-runs)."""
    state = rundir.load_state(str(workdir))
    told = [e["id"] for e in rundir.read_events(str(workdir))]
    assert len(told) == len(set(told))  # told exactly once ...
    assert sorted(told) == sorted(e["id"] for e in state["evaluated"]) == list(
        range(state["next_id"]))  # ... every candidate ever asked
    assert not state["in_flight"] and not state["initial_queue"] and not state["retries"]
    assert state["iterations_done"] == config.max_iterations
    by_id = {e["id"]: e for e in state["evaluated"]}
    failed = {i for i, e in by_id.items() if e["record"]["status"] == "error"}
    assert failed == {RAISES, CRASHES}
    assert by_id[RAISES]["record"]["message"] == (
        f"RuntimeError: poison candidate {RAISES} (gave up after {RETRIES + 1} attempts)")
    assert crash_error in by_id[CRASHES]["record"]["message"]
    for e in State.from_dict(state).evaluated:  # nothing else failed: each has the fake
        if e.id not in failed:  # fitness's own record
            expected = fake_fitness.evaluate(evolve._spec(e), {},
                                             config.seed * 1_000_003 + e.id, e.stage)
            assert e.record == expected, e.id
    attempts = state.get("attempts", [])
    charged = collections.Counter(a["id"] for a in attempts if not a["lost"])
    assert charged[RAISES] == charged[CRASHES] == RETRIES + 1
    assert all(n <= charged_others for i, n in charged.items() if i not in failed)
    chaos = config.fitness.chaos.dir
    return {"candidates": len(told), "kills": sum(chaos_tasks.markers(chaos, "kill").values()),
            "crashes": sum(chaos_tasks.markers(chaos, "crash").values()),
            "failed_attempts": len(attempts), "lost": sum(a["lost"] for a in attempts),
            "retries": len(attempts) - len(failed), "failures": len(failed)}


def report(name: str, counts: dict, start: float) -> None:
    print(f"\nchaos ({name}): " + ", ".join(f"{k} {v}" for k, v in counts.items())
          + f", wall {time.time() - start:.1f} s", flush=True)


def second_controller_is_refused(config, workdir) -> None:
    """The hook for the run-directory lock (``lfe.core.rundir``): while a controller runs, a
    second one on the same directory is refused with one line."""
    if not hasattr(rundir, "BusyRunError"):
        return  # no run-directory lock in lfe.core.rundir yet
    with pytest.raises(rundir.BusyRunError, match="in use by another lfe run"):
        main.dispatch(config, str(workdir))


def test_chaos_on_the_pool_with_a_controller_kill(tmp_path):
    start = time.time()
    c = chaos_run_config("pool", tmp_path / "chaos", workers=2)
    work = tmp_path / "run"
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(rundir.to_plain(c)))
    cmd = [sys.executable, "-m", "tests.drive", f"--task=evaluate={CHAOS}",
           f"--config=tests/chaos_tasks.py:{config_file}", f"--workdir={work}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    checked = False
    while len(rundir.read_events(str(work))) < 14:  # past the initial population
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "the controller made no progress"
        if not checked and rundir.read_events(str(work)):
            with worker.substitute(evaluate=CHAOS):
                second_controller_is_refused(c, work)
            checked = True
        time.sleep(0.05)
    proc.kill()  # the controller dies mid-run; its workers end without it
    proc.wait()
    with worker.substitute(evaluate=CHAOS):
        main.dispatch(c, str(work))  # resumed: the same command
    counts = check_chaos(work, c, "worker failed: its process exited with status 70")
    assert counts["kills"] >= 1 and counts["crashes"] >= RETRIES + 1
    assert counts["lost"] >= counts["kills"] - 2  # each kill is a lost (free) attempt; at
    report("pool", counts, start)  # most two died with the killed controller unrecorded


@pytest.mark.slow
@pytest.mark.skipif(ray is None, reason="Ray is an optional extra")
def test_chaos_on_a_two_node_ray_cluster(cluster, tmp_path):  # noqa: F811 - the fixture
    start = time.time()
    c = chaos_run_config("ray", tmp_path / "chaos", workers=3)
    c.ray.max_retries = 1  # Ray re-runs a killed task once before reporting it
    with worker.substitute(evaluate=CHAOS):
        main.dispatch(c, str(tmp_path / "run"))
    # auto num_gpus takes the fake GPUs: the candidates run on one warm actor per GPU
    counts = check_chaos(tmp_path / "run", c, "worker failed: ActorDiedError",
                         charged_others=1)
    assert counts["kills"] >= 1
    assert counts["crashes"] == (RETRIES + 1) * 2  # each attempt: Ray's run and its re-run
    report("ray", counts, start)


@pytest.mark.slow
@pytest.mark.skipif(ray is None, reason="Ray is an optional extra")
def test_a_preempted_ray_node_is_lost_and_the_other_tasks_finish(cluster, tmp_path):  # noqa: F811
    """A node that dies under a running task (a preemption) makes that task ``lost`` (not
    charged); the tasks on the other nodes run to the end."""
    spot = cluster.add_node(num_cpus=2, object_store_memory=80 * 2**20)
    cluster.wait_for_nodes()
    ex = executors.make("ray", 3, {"num_cpus": 2, "max_retries": 0})  # one task per node
    try:
        for i in range(3):
            ex.submit(f"t{i}", "tests.chaos_tasks:hold", str(tmp_path), str(i))
        deadline = time.time() + 120
        while len(list(tmp_path.glob("started.*"))) < 3:
            assert time.time() < deadline, "the tasks did not all start"
            time.sleep(0.1)
        on_spot = [p.name.split(".")[1] for p in tmp_path.glob("started.*")
                   if p.read_text() == spot.node_id]
        cluster.remove_node(spot)
        (tmp_path / "release").touch()
        out = {}
        while ex.pending:
            out |= dict(ex.wait_any())
    finally:
        ex.close()
    assert len(on_spot) == 1
    lost = out[f"t{on_spot[0]}"]
    assert lost.lost and lost.error.startswith("worker failed: NodeDiedError")
    assert all(o.error is None and o.value != spot.node_id
               for k, o in out.items() if k != f"t{on_spot[0]}")
