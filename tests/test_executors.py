import os
import subprocess
import sys

import pytest

from lfe import executors
from lfe.core import malloc


def square(x):
    return x * x


def boom(x):
    raise RuntimeError(f"bad input {x}\nsecond line")


def affinity(_):
    return (sorted(os.sched_getaffinity(0)), os.environ.get("XLA_FLAGS", ""),
            os.environ.get("GLIBC_TUNABLES", ""))


SQUARE, BOOM, AFFINITY = (f"tests.test_executors:{f}" for f in ("square", "boom", "affinity"))


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
    with pytest.raises(ValueError, match="unknown executor 'mpi'; available: inprocess, pool, ray"):
        executors.make("mpi")


def test_a_task_is_named_by_its_target_and_a_bad_target_is_one_line():
    ex = executors.make("inprocess")
    ex.submit("a", "tests.test_executors:nowhere", 1)
    ex.submit("b", "no_such_module_xyz:f", 1)
    out = drain(ex)
    assert out["a"].error.startswith("ValueError: cannot load function")
    assert "no_such_module_xyz" in out["b"].error and "\n" not in out["b"].error
