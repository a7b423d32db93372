import os

import pytest

from lfe import executors


def square(x):
    return x * x


def boom(x):
    raise RuntimeError(f"bad input {x}\nsecond line")


def affinity(_):
    return sorted(os.sched_getaffinity(0)), os.environ.get("XLA_FLAGS", "")


def drain(ex):
    out = {}
    while ex.pending:
        for key, outcome in ex.wait_any():
            out[key] = outcome
    return out


def test_inprocess_runs_in_submission_order_and_reports_errors():
    ex = executors.make("inprocess")
    for i in range(3):
        ex.submit(f"k{i}", square, i)
    ex.submit("bad", boom, 7)
    order = []
    while ex.pending:
        order += ex.wait_any()
    assert [k for k, _ in order] == ["k0", "k1", "k2", "bad"]
    assert [o.value for _, o in order[:3]] == [0, 1, 4]
    assert order[3][1].value is None and order[3][1].error == "RuntimeError: bad input 7"


def test_pool_runs_tasks_in_spawned_pinned_workers():
    ex = executors.make("pool", workers=2)
    try:
        assert ex.capacity == 2
        for i in range(4):
            ex.submit(f"k{i}", square, i)
        ex.submit("bad", boom, 1)
        ex.submit("aff", affinity, 0)
        out = drain(ex)
    finally:
        ex.close()
    assert {k: o.value for k, o in out.items() if k.startswith("k")} == {
        "k0": 0, "k1": 1, "k2": 4, "k3": 9}
    assert out["bad"].value is None and out["bad"].error.startswith("RuntimeError: bad input 1")
    cores, flags = out["aff"].value
    if len(os.sched_getaffinity(0)) >= 2:
        assert len(cores) == 1  # pinned to one core
        assert "intra_op_parallelism_threads=1" in flags


def test_unknown_executor():
    with pytest.raises(ValueError, match="unknown executor 'mpi'; available: inprocess, pool, ray"):
        executors.make("mpi")
