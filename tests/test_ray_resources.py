"""What a Ray cluster can run (``lfe.executors.ray_resources``): pure functions of node records,
tested without Ray; the executor's use of them is tested on a local cluster in
tests/test_executors_ray.py."""

import ml_collections
import pytest

from lfe import executors
from lfe.executors import ray_resources as rr


def node(cpus, gpus=0.0, alive=True):
    resources = {"CPU": float(cpus), "memory": 1e9}
    if gpus:
        resources["GPU"] = float(gpus)
    return {"Alive": alive, "Resources": resources}


CPU_ONLY = [node(8), node(8)]
GPU = [node(8), node(16, 4)]


def test_auto_num_gpus_is_one_per_task_with_gpus_else_zero():
    assert rr.resolve_num_gpus(rr.AUTO, CPU_ONLY) == 0.0
    assert rr.resolve_num_gpus(rr.AUTO, GPU) == 1.0
    assert rr.resolve_num_gpus(rr.AUTO, [node(8), node(8, 2, alive=False)]) == 0.0  # dead node
    assert rr.resolve_num_gpus(0.5, CPU_ONLY) == 0.5  # an explicit request is kept
    assert rr.resolve_num_gpus(0, GPU) == 0.0
    assert executors.ray_config().num_gpus == rr.AUTO  # the configs' default


def test_capacity_counts_tasks_per_live_node():
    assert rr.capacity(GPU, 1, 1) == 4
    assert rr.capacity(GPU, 1, 0.5) == 8
    assert rr.capacity(GPU, 1, 0) == 24
    assert rr.capacity([node(3), node(3)], 2, 0) == 2  # a task runs on one node: not 3
    assert rr.capacity([node(16, 4)], 3, 0) == 5
    assert rr.capacity([node(8), node(8, alive=False)], 1, 0) == 8  # a node left
    assert rr.capacity(CPU_ONLY, 1, 1) == 1  # never 0 (unfit says why)
    assert rr.capacity(CPU_ONLY, 0, 0) == 2  # a task asking for nothing: one per node


def test_unfit_names_the_shape_the_nodes_and_the_fix():
    assert rr.unfit(GPU, 1, 1) is None
    assert rr.unfit(CPU_ONLY, 1, 0) is None
    assert rr.unfit(CPU_ONLY, 1, 1) == (
        "no node of the Ray cluster can run a task with num_cpus=1, num_gpus=1 (nodes: "
        "2 × 8 CPUs); set --config.ray.num_gpus=0 (CPU-only tasks) or -1 (auto: 1 when there "
        "are GPUs), or add such a node")
    assert rr.unfit(GPU, 1, 8).endswith(  # more GPUs than one node has
        "(nodes: 1 × 16 CPUs + 4 GPUs, 1 × 8 CPUs); set --config.ray.num_gpus=4 or less, or "
        "add such a node")
    assert "set --config.ray.num_cpus=16 or less," in rr.unfit(GPU, 32, 0)
    assert "set --config.ray.num_cpus=16 or less," in rr.unfit(GPU, 20, 1)  # beside a GPU
    assert rr.unfit([node(8, alive=False)], 1, 0) == (
        "the Ray cluster has no live node to run a task with num_cpus=1, num_gpus=0; start its "
        "nodes")


def test_the_runner_check_takes_auto_and_node_wait():
    c = executors.runner(ml_collections.ConfigDict())
    executors.check_runner(c)  # num_gpus -1 (auto) is valid
    c.ray.node_wait_s = -1.0
    with pytest.raises(ValueError, match=r"^config\.ray\.node_wait_s must be a number >= 0, "
                                         r"got -1\.0$"):
        executors.check_runner(c)
