"""The Ray executor on a local two-node cluster (ray.cluster_utils.Cluster, fake GPUs).

One cluster per module (starting one costs seconds): a head node with 2 CPUs and a second node
with 2 CPUs and 2 (fake) GPUs. Evolution runs use the fast fake fitness of tests/fake_fitness.py.
What the tasks run lives in tests/ray_tasks.py (a light module: workers import it quickly).
"""

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

ray = pytest.importorskip("ray")

from ray.cluster_utils import Cluster  # noqa: E402

from configs import quickstart  # noqa: E402
from lfe import executors, main, worker  # noqa: E402
from lfe.core import evolution, malloc, rundir, stop  # noqa: E402
from lfe.core.state import State  # noqa: E402
from lfe.executors import ray_executor  # noqa: E402
from lfe.experiments import evolve  # noqa: E402
from tests import fake_fitness  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE = "tests.fake_fitness:evaluate"
OVERRIDES = {"initial_population": 8,
             "population_size": 4, "tournament_size": 3, "max_iterations": 12, "plot_every": 0}


# --------------------------------------------------------------------------- fixtures, helpers

@pytest.fixture(scope="module")
def cluster():
    """Head (2 CPUs) + a second node (2 CPUs, 2 fake GPUs); this process is its driver. Started
    without JAX_PLATFORMS/XLA_FLAGS so a task's environment is what the executor gives it."""
    saved = {k: os.environ.pop(k) for k in ("JAX_PLATFORMS", "XLA_FLAGS") if k in os.environ}
    small = {"object_store_memory": 80 * 2**20}
    try:
        c = Cluster(initialize_head=True,
                    head_node_args={"num_cpus": 2, "include_dashboard": False, **small})
        c.add_node(num_cpus=2, num_gpus=2, **small)
        c.wait_for_nodes()
    finally:
        os.environ.update(saved)
    ray.init(address=c.address, logging_level="WARNING")
    yield c
    ray.shutdown()
    c.shutdown()


def submit(ex, key, helper, *args):
    """Submits a function of tests/ray_tasks.py by its target string, as the controller
    submits the worker's tasks."""
    ex.submit(key, f"tests.ray_tasks:{helper}", *args)


def drain(ex):
    out = {}
    while ex.pending:
        for key, outcome in ex.wait_any():
            assert key not in out  # every task comes back once
            out[key] = outcome
    return out


@pytest.fixture(autouse=True)
def fake_evaluations():
    """Evaluations in this module are the fast fake unless a test substitutes another."""
    with worker.substitute(evaluate=FAKE):
        yield


def small_config(executor, **changes):
    c = quickstart.get_config("runlocal")
    for k, v in {**OVERRIDES, "executor": executor, **changes}.items():
        c[k] = v
    c.ray.num_gpus = 0.0  # CPU tasks (auto would take the test cluster's fake GPUs)
    return c


def check_consistent(workdir, config):
    """The finished run's state accounts for every candidate exactly once, each with the record
    the fitness function gives for it."""
    state = rundir.load_state(str(workdir))
    params = evolve.params_of(config)
    ids = [e["id"] for e in state["evaluated"]]
    assert sorted(ids) == list(range(state["next_id"]))  # every asked candidate told once
    assert not state["in_flight"] and not state["initial_queue"] and not state["retries"]
    assert state["iterations_done"] == params.max_iterations == len(state["log"]) - 1
    assert sorted(e["id"] for e in rundir.read_events(str(workdir))) == list(range(len(ids)))
    assert len([e for e in state["evaluated"] if e["stage"] == "initial"]) == 8
    typed = State.from_dict(state)
    s = evolution.summary(typed)
    assert s["successful_children"] + sum(s["skipped_iterations"].values()) == 12
    assert s["children_evaluated"] == s["successful_children"] + sum(s["failed_children"].values())
    assert len(state["population"]) == config.population_size
    for e in typed.evaluated:  # each result belongs to its own candidate
        expected = fake_fitness.evaluate(evolve._spec(e), {}, config.seed * 1_000_003 + e.id,
                                         e.stage)
        assert e.record == expected
    return state


# --------------------------------------------------------------------------- executor

def test_helpers_shape_tasks():
    assert ray_executor.task_env(1, 0)["JAX_PLATFORMS"] == "cpu"
    assert "--xla_cpu_multi_thread_eigen=false" in ray_executor.task_env(1, 0)["XLA_FLAGS"]
    assert "XLA_FLAGS" not in ray_executor.task_env(4, 0)
    assert malloc.tuned(ray_executor.task_env(4, 0)) == malloc.applies()
    assert ray_executor.task_env(1, 0.25) == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    assert ray_executor.task_env(1, 1) == {}
    # capacities: tests/test_ray_resources.py


def test_cpu_tasks_run_jax_on_cpu_over_both_nodes(cluster):
    ex = executors.make("ray", None, {"num_cpus": 1})
    assert ex.capacity == 4  # 4 CPUs in the cluster
    for i in range(8):
        submit(ex, f"k{i}", "where")
    out = drain(ex)
    ex.close()
    assert sorted(out) == [f"k{i}" for i in range(8)]
    seen = [o.value for o in out.values()]
    assert all(s["env"]["JAX_PLATFORMS"] == "cpu" and s["gpus"] == [] for s in seen)
    assert all("--xla_cpu_multi_thread_eigen=false" in s["env"]["XLA_FLAGS"] for s in seen)
    assert len({s["node"] for s in seen}) == 2  # the second node took tasks too
    assert ray.is_initialized()  # an executor leaves a Ray it did not start running


def test_fractional_gpu_tasks_share_gpus_without_preallocation(cluster, tmp_path):
    ex = executors.make("ray", None, {"num_cpus": 0.5, "num_gpus": 0.5})
    assert ex.capacity == 4  # 2 GPUs / 0.5
    for i in range(4):  # four at once: each on its own actor
        submit(ex, f"g{i}", "meet", str(tmp_path), "g", 4)
    seen = [o.value for o in drain(ex).values()]
    ex.close()
    assert all(len(s["gpus"]) == 1 for s in seen)
    assert sorted(str(s["gpus"][0]) for s in seen) == ["0", "0", "1", "1"]  # 2 actors per GPU
    assert all(s["env"]["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false" for s in seen)
    assert all(s["env"]["JAX_PLATFORMS"] is None for s in seen)  # JAX may use the GPU
    assert all(s["env"]["CUDA_VISIBLE_DEVICES"] == str(s["gpus"][0]) for s in seen)
    assert len({s["pid"] for s in seen}) == 4  # one process per actor


def test_gpu_work_runs_on_one_warm_actor_per_device(cluster, tmp_path):
    """Six candidates on the 2 fake GPUs: 2 worker processes, each bound to one GPU for its
    life, each serving three of them (rounds of two that run at once)."""
    ex = executors.make("ray", None, {"num_gpus": 1})
    assert ex.capacity == 2
    seen = []
    for r in range(3):
        for i in range(2):
            submit(ex, f"r{r}.{i}", "meet", str(tmp_path), f"round{r}", 2)
        seen += [o.value for o in drain(ex).values()]
    assert ex._work.started == 2  # no actor was started after the first two
    ex.close()
    served = collections.Counter(s["pid"] for s in seen)
    assert len(served) == 2 and sorted(served.values()) == [3, 3]
    device = {}
    for s in seen:
        gpu = s["env"]["CUDA_VISIBLE_DEVICES"]
        assert [str(g) for g in s["gpus"]] == [gpu] and s["env"]["JAX_PLATFORMS"] is None
        assert device.setdefault(s["pid"], gpu) == gpu  # always its own GPU
    assert sorted(device.values()) == ["0", "1"]
    assert "XLA_PYTHON_CLIENT_PREALLOCATE" not in ray_executor.task_env(1, 1)  # whole GPUs


def _pid_when_written(path, timeout_s=120):
    deadline = time.time() + timeout_s
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return int(path.read_text())


def test_a_killed_actor_is_replaced_and_its_candidate_finishes(cluster, tmp_path):
    ex = executors.make("ray", None, {"num_gpus": 1, "max_retries": 1})
    try:
        submit(ex, "warm-up", "boom", 1)  # an actor started and idle, ready for the next task
        assert drain(ex)["warm-up"].error == "RuntimeError: bad input 1"
        submit(ex, "held", "hold_once", str(tmp_path / "pid"), 7)  # starts at once
        first = _pid_when_written(tmp_path / "pid")
        os.kill(first, signal.SIGKILL)  # the actor's process dies mid-task
        out = drain(ex)["held"]
        assert out.error is None and out.value["value"] == 7 and out.value["pid"] != first
        assert ex._work.started == 2  # its replacement ran it
        submit(ex, "next", "boom", 3)  # and the executor goes on
        assert drain(ex)["next"].error == "RuntimeError: bad input 3"
    finally:
        ex.close()


def test_a_gpu_actor_that_dies_with_no_retries_left_and_one_that_times_out(cluster, tmp_path):
    ex = executors.make("ray", None, {"num_gpus": 1, "max_retries": 0})
    try:
        submit(ex, "dies", "die_once", str(tmp_path / "marker"), 1)
        died = drain(ex)["dies"]
        assert died.error.startswith("worker failed: ActorDiedError: ") and not died.lost
        ex.timeout_s = 4.0
        submit(ex, "slow", "sleep_and_report", str(tmp_path / "pid"), 120)
        slow = drain(ex)["slow"]
        assert slow.timed_out and slow.error == "timed out after 4 s"
        pid = int((tmp_path / "pid").read_text())
        for _ in range(100):  # the timed-out actor is killed, not left sleeping on its GPU
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.1)
        assert not os.path.exists(f"/proc/{pid}")
        ex.timeout_s = 0.0
        submit(ex, "after", "boom", 2)  # on a new actor
        assert drain(ex)["after"].error == "RuntimeError: bad input 2"
    finally:
        ex.close()


def test_errors_and_a_killed_worker_is_retried(cluster, tmp_path):
    ex = executors.make("ray", 2)
    assert ex.capacity == 2
    submit(ex, "bad", "boom", 7)
    submit(ex, "dies", "die_once", str(tmp_path / "marker"), 42)
    out = drain(ex)
    ex.close()
    assert out["bad"].error == "RuntimeError: bad input 7" and not out["bad"].timed_out
    assert out["dies"].value == 42 and out["dies"].error is None  # re-run after the kill
    assert (tmp_path / "marker").exists()  # so the first attempt did die


def test_timeout_cancels_the_task_and_kills_its_worker(cluster, tmp_path):
    ex = executors.make("ray", 2, {"timeout_s": 4.0})
    submit(ex, "slow", "sleep_and_report", str(tmp_path / "pid"), 120)
    out = drain(ex)
    assert out["slow"].timed_out and out["slow"].error == "timed out after 4 s"
    pid = int((tmp_path / "pid").read_text())
    for _ in range(100):  # the timed-out task's worker is killed, not left sleeping
        if not os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{pid}")
    # The executor keeps working (without the limit: a loaded machine may take seconds just to
    # start the replacement worker, and the clock runs from submission).
    ex.timeout_s = 0.0
    submit(ex, "after", "boom", 2)
    after = drain(ex)["after"]
    assert after.error == "RuntimeError: bad input 2" and not after.timed_out
    ex.close()


def test_no_retries_reports_the_lost_worker(cluster, tmp_path):
    ex = executors.make("ray", 1, {"max_retries": 0})
    submit(ex, "dies", "die_once", str(tmp_path / "marker"), 1)
    out = drain(ex)
    ex.close()
    assert out["dies"].value is None and out["dies"].error.startswith("worker failed: ")


def test_auto_num_gpus_takes_the_clusters_gpus(cluster):
    ex = executors.make("ray", None, executors.ray_config())  # num_gpus -1: auto
    assert ex.num_gpus == 1.0 and ex.capacity == 2  # the 2 fake GPUs: one task each
    ex.close()


def test_a_request_no_node_can_run_fails_at_once_with_one_line(cluster):
    start = time.monotonic()
    with pytest.raises(ValueError) as refused:
        executors.make("ray", None, {"num_gpus": 4, "node_wait_s": 1})
    assert time.monotonic() - start < 30
    assert str(refused.value) == (
        "no node of the Ray cluster can run a task with num_cpus=1, num_gpus=4 (nodes: "
        "1 × 2 CPUs, 1 × 2 CPUs + 2 GPUs); set --config.ray.num_gpus=2 or less, or add such "
        "a node (waited 1 s: --config.ray.node_wait_s)")
    assert ray.is_initialized()  # the test's own Ray is left alone


def test_capacity_follows_nodes_and_a_task_no_node_can_run_any_more_fails(cluster, tmp_path):
    ex = executors.make("ray", None, {"num_cpus": 1})
    ex.poll_s = 0.2  # look at the nodes often
    assert ex.capacity == 4
    extra = cluster.add_node(num_cpus=3, object_store_memory=80 * 2**20)
    cluster.wait_for_nodes()
    submit(ex, "a", "where")
    drain(ex)
    assert ex.capacity == 7  # the new node's 3 CPUs joined
    big = executors.make("ray", None, {"num_cpus": 3, "node_wait_s": 2, "max_retries": 3})
    big.poll_s = 0.5
    assert big.capacity == 1  # only the new node fits a 3-CPU task
    submit(big, "long", "sleep_and_report", str(tmp_path / "pid"), 120)
    for _ in range(600):
        if (tmp_path / "pid").exists():
            break
        time.sleep(0.1)
    cluster.remove_node(extra)  # the task goes back to pending, and no node can run it
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"^no node of the Ray cluster can run a task with "
                                         r"num_cpus=3, num_gpus=0 \(nodes: "):
        drain(big)
    assert time.monotonic() - start < 30
    big.close()
    submit(ex, "b", "where")
    drain(ex)
    assert ex.capacity == 4  # and it left
    ex.close()


def test_a_gpu_node_that_leaves_loses_its_actor_and_capacity_follows(cluster, tmp_path):
    """A node with a GPU joins (one actor more) and dies under a running candidate: that
    candidate is ``lost`` (with no retries left), the others finish, capacity goes back."""
    spot = cluster.add_node(num_cpus=1, num_gpus=1, object_store_memory=80 * 2**20)
    cluster.wait_for_nodes()
    ex = executors.make("ray", None, {"num_gpus": 1, "max_retries": 0})
    ex.poll_s = 0.5
    assert ex.capacity == 3  # 2 + 1 GPUs
    out = {}
    try:
        for i in range(3):
            ex.submit(f"t{i}", "tests.chaos_tasks:hold", str(tmp_path), str(i))
        waiter = threading.Thread(target=lambda: out.update(drain(ex)))  # tasks start in
        waiter.start()  # wait_any, as in a controller
        on_spot = _started_on(tmp_path, spot.node_id, 3)
        cluster.remove_node(spot)
        (tmp_path / "release").touch()
        waiter.join(180)
        assert not waiter.is_alive()
        lost = out[f"t{on_spot}"]
        assert lost.lost and lost.error.startswith("worker failed: ActorDiedError"), lost
        assert all(o.error is None and o.value != spot.node_id
                   for k, o in out.items() if k != f"t{on_spot}")
        time.sleep(ex.poll_s)  # the next wait looks at the nodes again
        submit(ex, "after", "boom", 1)
        assert drain(ex)["after"].error == "RuntimeError: bad input 1"
        assert ex.capacity == 2  # the node left
    finally:
        ex.close()


def _started_on(directory, node_id, n, timeout_s=120):
    """Which of ``n`` held tasks started on ``node_id`` (once all started)."""
    deadline = time.time() + timeout_s
    while len(list(directory.glob("started.*"))) < n:
        assert time.time() < deadline, "the tasks did not all start"
        time.sleep(0.1)
    on = [p.name.split(".")[1] for p in directory.glob("started.*") if p.read_text() == node_id]
    assert len(on) == 1
    return on[0]


# --------------------------------------------------------------------------- evolution on Ray

@pytest.mark.slow
def test_asynchronous_evolution_with_killed_workers_is_consistent(cluster, tmp_path):
    c = small_config("ray", workers=3)
    c.fitness.kill_dir = str(tmp_path / "kills")
    os.makedirs(c.fitness.kill_dir)
    with worker.substitute(evaluate="tests.ray_tasks:killing_evaluate"):
        main.dispatch(c, str(tmp_path / "run"))
    state = check_consistent(tmp_path / "run", c)
    killed = sorted(int(n) for n in os.listdir(c.fitness.kill_dir))
    assert killed == [i for i in range(state["next_id"]) if i % 8 == 1]  # each killed once


def test_same_seed_same_genomes_inprocess_and_ray_with_capacity_1(cluster, tmp_path):
    main.dispatch(small_config("inprocess"), str(tmp_path / "inprocess"))
    main.dispatch(small_config("ray", workers=1), str(tmp_path / "ray"))
    a, b = (rundir.load_state(str(tmp_path / d)) for d in ("inprocess", "ray"))
    assert [e["genome"] for e in a["evaluated"]] == [e["genome"] for e in b["evaluated"]]
    assert a == b  # and everything else: records, population, log, RNG


def test_rungs_on_ray_end_as_in_process(cluster, tmp_path):
    """Children paused at rungs and promoted (issue #20) on Ray: the same run as in process."""
    rungs = {"rungs": (50,), "rung_fraction": 0.5}
    main.dispatch(small_config("inprocess", **rungs), str(tmp_path / "inprocess"))
    main.dispatch(small_config("ray", workers=1, **rungs), str(tmp_path / "ray"))
    a, b = (rundir.load_state(str(tmp_path / d)) for d in ("inprocess", "ray"))
    assert a["rung_log"] and a == b


def test_timed_out_candidates_are_failed_children(cluster, tmp_path):
    c = small_config("ray", workers=2)
    c.ray.timeout_s = 0.01  # every evaluation times out
    c.initial_population, c.max_iterations = 2, 0
    with worker.substitute(evaluate="tests.ray_tasks:slow_evaluate"):
        main.dispatch(c, str(tmp_path))
    state = rundir.load_state(str(tmp_path))
    assert [e["record"]["status"] for e in state["evaluated"]] == ["timed_out"] * 2
    assert state["phase"] == "evolve" and state["population"] == []


def _controller(workdir, address, evaluator):
    args = {**OVERRIDES, "executor": "ray", "workers": 2, "ray.address": address,
            "ray.num_gpus": 0}
    return [sys.executable, "-m", "tests.drive", f"--task=evaluate={evaluator}",
            "--config=configs/quickstart.py:runlocal", f"--workdir={workdir}",
            *[f"--config.{k}={v}" for k, v in args.items()]]


@pytest.mark.slow
def test_controller_killed_and_resumed_continues_with_in_flight(cluster, tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    cmd = _controller(tmp_path, cluster.address, "tests.ray_tasks:slow_evaluate")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while True:  # past the initial population, with candidates in flight: freeze, look, kill
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline
        if len(rundir.read_events(str(tmp_path))) >= 10:
            proc.send_signal(signal.SIGSTOP)
            at_kill = rundir.load_state(str(tmp_path))
            if at_kill["in_flight"]:
                break
            proc.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    waiting = {c["id"]: c["genome"] for c in at_kill["in_flight"]}
    assert at_kill["iterations_done"] < 12
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    c = small_config("ray", workers=2)
    state = check_consistent(tmp_path, c)
    evaluated = {e["id"]: e["genome"] for e in state["evaluated"]}
    assert all(evaluated[i] == g for i, g in waiting.items())  # the same candidates went on


def test_controller_never_imports_jax(cluster, tmp_path):
    """A Ray controller given its config never imports JAX, figures included (drawn
    by a spawned helper); the config itself is built here, as the protocols' defaults come from
    lfe.training.train."""
    c = small_config("ray", workers=2, plot_every=50)
    c.ray.address = cluster.address
    (tmp_path / "config.json").write_text(json.dumps(c.to_dict()))
    script = ("import json, sys, ml_collections\n"
              "from lfe import worker\n"
              "from lfe.experiments import evolve\n"
              f"c = ml_collections.ConfigDict(json.load(open({str(tmp_path / 'config.json')!r})))\n"
              f"with worker.substitute(evaluate={FAKE!r}):\n"
              f"    s = evolve.run(c, {str(tmp_path / 'run')!r})\n"
              "print('JAX-IMPORTED' if 'jax' in sys.modules else 'NO-JAX', s['iterations'])\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().splitlines()[-1] == "NO-JAX 12"
    check_consistent(tmp_path / "run", c)  # an asynchronous run (2 workers) adds up exactly
    assert {"best.json", "evolution.png", "best_phenotypes.png"} <= set(
        os.listdir(tmp_path / "run"))


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_a_ray_controller_and_the_rerun_finishes(cluster, tmp_path, sig):
    """ray.init replaces the SIGTERM handler; the executor puts lfe's back (lfe.core.stop)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    cmd = _controller(tmp_path, cluster.address, "tests.ray_tasks:slow_evaluate")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while len(rundir.read_events(str(tmp_path))) < 4:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)  # closing Ray on a loaded 2-core machine can be slow
    err = err.decode()
    assert proc.returncode == 128 + sig, err
    # Ray's log monitor may still forward a worker's line after ours on a loaded machine
    assert stop.MESSAGE in err.splitlines() and "Traceback" not in err, err
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    check_consistent(tmp_path, small_config("ray", workers=2))
