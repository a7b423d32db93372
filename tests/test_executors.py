import os
import subprocess
import sys

import pytest

from lfe import executors
from lfe.core import malloc
from lfe.executors import devices, pool


def square(x):
    return x * x


def boom(x):
    raise RuntimeError(f"bad input {x}\nsecond line")


def affinity(_):
    return (sorted(os.sched_getaffinity(0)), os.environ.get("XLA_FLAGS", ""),
            os.environ.get("GLIBC_TUNABLES", ""))


def seen(_):
    """What a worker process sees: its pid, device variables, platform, flags, cores."""
    keys = ("CUDA_VISIBLE_DEVICES", "JAX_PLATFORMS", "XLA_FLAGS", "XLA_PYTHON_CLIENT_PREALLOCATE")
    return {"pid": os.getpid(), "cores": sorted(os.sched_getaffinity(0)),
            **{k: os.environ.get(k) for k in keys}}


def die(_):
    os.kill(os.getpid(), 9)


SQUARE, BOOM, AFFINITY, SEEN, DIE = (f"tests.test_executors:{f}" for f in (
    "square", "boom", "affinity", "seen", "die"))


def drain(ex):
    out = {}
    while ex.pending:
        for key, outcome in ex.wait_any():
            out[key] = outcome
    return out


def test_inprocess_runs_in_submission_order_and_reports_errors():
    ex = executors.make("inprocess")
    for i in range(3):
        ex.submit(f"k{i}", SQUARE, i)
    ex.submit("bad", BOOM, 7)
    order = []
    while ex.pending:
        order += ex.wait_any()
    assert [k for k, _ in order] == ["k0", "k1", "k2", "bad"]
    assert [o.value for _, o in order[:3]] == [0, 1, 4]
    assert order[3][1].value is None and order[3][1].error == "RuntimeError: bad input 7"


def test_pool_runs_tasks_in_spawned_pinned_workers():
    before = os.environ.get("GLIBC_TUNABLES")
    ex = executors.make("pool", workers=2)
    try:
        assert ex.capacity == 2
        for i in range(4):
            ex.submit(f"k{i}", SQUARE, i)
        ex.submit("bad", BOOM, 1)
        ex.submit("aff", AFFINITY, 0)
        out = drain(ex)
    finally:
        ex.close()
    assert {k: o.value for k, o in out.items() if k.startswith("k")} == {
        "k0": 0, "k1": 1, "k2": 4, "k3": 9}
    assert out["bad"].value is None and out["bad"].error.startswith("RuntimeError: bad input 1")
    cores, flags, tunables = out["aff"].value
    assert "GLIBC_TUNABLES" not in os.environ or before == os.environ["GLIBC_TUNABLES"]
    if malloc.applies():
        assert malloc.tuned({"GLIBC_TUNABLES": tunables})  # workers start with lfe.core.malloc's
    if len(os.sched_getaffinity(0)) >= 2:
        assert len(cores) == 1  # pinned to one core
        assert "--xla_cpu_multi_thread_eigen=false" in flags
        assert all(f.startswith("--") for f in flags.split())  # XLA rejects anything else


def test_single_thread_flags_are_accepted_by_xla():
    flags = executors.single_thread_flags("")
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    code = "import jax.numpy as j; print(float(j.ones(3).sum()))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "3.0", out.stderr[-2000:]
    assert executors.single_thread_flags(flags) == flags


def test_unknown_executor():
    with pytest.raises(ValueError, match="unknown executor 'mpi'; available: auto, inprocess, "
                                         "pool, devices, ray, vmap"):
        executors.make("mpi")


def test_a_task_is_named_by_its_target_and_a_bad_target_is_one_line():
    ex = executors.make("inprocess")
    ex.submit("a", "tests.test_executors:nowhere", 1)
    ex.submit("b", "no_such_module_xyz:f", 1)
    out = drain(ex)
    assert out["a"].error.startswith("ValueError: cannot load function")
    assert "no_such_module_xyz" in out["b"].error and "\n" not in out["b"].error


# ------------------------------------------------------------- auto: the executor follows the host

@pytest.fixture
def no_device_env(monkeypatch):
    """This process's environment without device or platform variables (a bare host)."""
    for key in ("JAX_PLATFORMS", "CUDA_VISIBLE_DEVICES", "TPU_VISIBLE_CHIPS", "XLA_FLAGS",
                devices.OVERRIDE):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_auto_is_the_pinned_cpu_pool_on_a_cpu_host(no_device_env):
    no_device_env.setenv(devices.OVERRIDE, "0")
    assert executors.resolve("auto") == "pool" and not devices.local()
    ex = executors.make("auto")
    try:
        assert type(ex) is pool.ProcessPoolExecutor
        assert ex.capacity == len(os.sched_getaffinity(0))  # one worker per core
        ex.submit("a", SEEN, 0)
        out = drain(ex)["a"].value
    finally:
        ex.close()
    assert out["JAX_PLATFORMS"] == "cpu" and out["CUDA_VISIBLE_DEVICES"] is None
    if len(os.sched_getaffinity(0)) >= 2:
        assert len(out["cores"]) == 1 and "--xla_cpu_multi_thread_eigen=false" in out["XLA_FLAGS"]


def test_auto_on_a_gpu_host_runs_one_warm_worker_per_device(no_device_env):
    """Faked 2-GPU host: one long-lived worker per GPU, CUDA_VISIBLE_DEVICES its own, none of
    the CPU pool's settings; a dead worker is replaced on the same device."""
    no_device_env.setenv(devices.OVERRIDE, "2")
    assert executors.resolve("auto") == "devices"
    ex = executors.make("auto")
    try:
        assert type(ex) is pool.DevicePoolExecutor and ex.capacity == 2
        for i in range(6):
            ex.submit(f"k{i}", SEEN, i)
        out = [o.value for o in drain(ex).values()]
        ex.submit("dies", DIE, 0)
        died = drain(ex)["dies"]
        for i in range(4):
            ex.submit(f"after{i}", SEEN, i)
        after = [o.value for o in drain(ex).values()]
    finally:
        ex.close()
    device_of = {}
    for s in out + after:
        device = s["CUDA_VISIBLE_DEVICES"]
        assert device_of.setdefault(s["pid"], device) == device  # a process keeps its device
        assert s["JAX_PLATFORMS"] is None and s["XLA_PYTHON_CLIENT_PREALLOCATE"] is None
        assert s["XLA_FLAGS"] is None and s["cores"] == sorted(os.sched_getaffinity(0))
    assert len({s["pid"] for s in out}) == 2  # 6 candidates, 2 processes: workers are reused
    assert sorted(device_of[p] for p in {s["pid"] for s in out}) == ["0", "1"]
    assert died.lost and died.error == "worker failed: killed by SIGKILL"
    assert {s["CUDA_VISIBLE_DEVICES"] for s in after} <= {"0", "1"}
    assert len({s["pid"] for s in after} - {s["pid"] for s in out}) <= 1  # one replacement


def test_explicit_pool_stays_on_cpu_on_a_gpu_host(no_device_env):
    no_device_env.setenv(devices.OVERRIDE, "gpu:2")
    ex = executors.make("pool", workers=1)
    try:
        ex.submit("a", SEEN, 0)
        out = drain(ex)["a"].value
    finally:
        ex.close()
    assert out["JAX_PLATFORMS"] == "cpu" and out["CUDA_VISIBLE_DEVICES"] is None


def test_devices_are_found_without_jax(no_device_env):
    assert devices.parse_override("3") == devices.Accelerators("gpu", ("0", "1", "2"))
    assert devices.parse_override("tpu:4").kind == "tpu" and not devices.parse_override("none")
    with pytest.raises(ValueError, match="LFE_ACCELERATORS='x:2': expected 0, N, gpu:N or tpu:N"):
        devices.parse_override("x:2")
    assert not devices.local({"JAX_PLATFORMS": "cpu"})  # CPU asked for: the CPU pool
    assert devices.local({devices.OVERRIDE: "1", "JAX_PLATFORMS": "cpu"})  # the override wins
    assert devices.visible(["0", "1", "2"], None) == ("0", "1", "2")
    assert devices.visible(["0", "1", "2"], "2,0") == ("2", "0")  # the physical ids, in order
    assert devices.visible(["0", "1"], "1,-1,0") == ("1",) and devices.visible(["0"], "") == ()
    gpus = devices.Accelerators("gpu", ("0", "1"))
    assert devices.workers_for(gpus) == 2 and devices.workers_for(gpus, 4) == 4
    assert devices.worker_env(gpus, 1, 2) == {"CUDA_VISIBLE_DEVICES": "1"}
    assert devices.worker_env(gpus, 3, 4) == {"CUDA_VISIBLE_DEVICES": "1",
                                              "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    tpus = devices.Accelerators("tpu", ("0", "1", "2", "3"))
    assert devices.workers_for(tpus, 8) == 4  # a chip serves one process
    env = devices.worker_env(tpus, 2, 4)
    assert env["TPU_VISIBLE_CHIPS"] == "2" and env["TPU_PROCESS_BOUNDS"] == "1,1,1"
    assert env["TPU_MESH_CONTROLLER_PORT"] == str(devices.TPU_PORT + 2)
    assert str(gpus) == "2 GPUs" and str(devices.Accelerators()) == "no accelerator"


def test_devices_executor_is_refused_in_one_line_on_a_cpu_host(no_device_env):
    no_device_env.setenv(devices.OVERRIDE, "0")
    with pytest.raises(ValueError, match="^executor 'devices' needs an accelerator"):
        executors.make("devices")
    import ml_collections

    with pytest.raises(ValueError, match="^config.executor 'devices' needs an accelerator"):
        executors.check_runner(ml_collections.ConfigDict({"executor": "devices"}))
    executors.check_runner(ml_collections.ConfigDict({"executor": "auto"}))


def test_an_evolution_on_a_gpu_host_runs_on_device_workers(no_device_env, tmp_path, capsys):
    """The default executor of a faked 2-GPU host: the run ends complete, with its figures drawn
    in a CPU-only helper (the controller starts no JAX backend on its workers' devices)."""
    from configs import quickstart
    from lfe import worker
    from lfe.core import rundir
    from lfe.experiments import evolve

    no_device_env.setenv(devices.OVERRIDE, "2")
    c = quickstart.get_config("runlocal")
    assert c.executor == "auto"
    c.initial_population, c.population_size, c.tournament_size, c.max_iterations = 4, 3, 2, 3
    c.plot_every = 2
    with worker.substitute(evaluate="tests.fake_fitness:evaluate"):
        evolve.run(c, str(tmp_path))
    assert "(auto executor: devices)" in capsys.readouterr().out
    state = rundir.load_state(str(tmp_path))
    assert state["iterations_done"] == 3 and not state["in_flight"]
    assert {"best.json", "evolution.png"} <= set(os.listdir(tmp_path))
