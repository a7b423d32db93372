"""Executors: where candidate evaluations and grid cells run, behind one small protocol.

    executor.submit(key, target, *args)  # target: "module:function" (lfe.worker's), plain args
    executor.wait_any() -> [(key, Outcome)]   # at least one finished task, in finish order
    executor.capacity                  # how many tasks run at once
    executor.pending                   # submitted and not yet returned
    executor.close()

Work travels as a target string and plain data, resolved where it runs (``lfe.core.registry``),
so the controller never imports the code that trains. ``inprocess`` runs each task when it is
waited for, in submission order: deterministic, the tests' choice. ``pool`` runs tasks in worker
processes started with *spawn* (never fork: JAX is multithreaded), one per core by default, each
pinned to its own core before JAX is imported — on 2 cores two single-core workers evaluate more
candidates per hour than one two-core process (BENCHMARKS.md). ``devices`` runs one long-lived
worker process per GPU or TPU chip, each seeing only its device (``lfe.executors.pool``);
``auto``, the modes' default, is ``devices`` on a host with accelerators and ``pool`` elsewhere
(``lfe.executors.devices``). ``ray`` runs tasks on a cluster, GPU work on one warm actor per GPU
(``lfe.executors.ray_executor``, ``ray_actors``; Ray is an optional extra, imported only when
that executor is made). ``vmap`` trains K queued candidates at once (``lfe.executors.vmap``).
``make(name, workers, ray_options)`` builds one by name. A task that raises is returned as an
Outcome with ``error`` set; the executor keeps running. A task whose worker dies is returned
with ``error`` = ``worker failed: ...`` and, when the worker or its host was lost through no
fault of the task (a node's death, a kill from outside), ``lost`` (``lfe.core.retry``: such an
attempt is not charged to the task); the other tasks go on. A task that ran past its timeout is
returned with ``timed_out`` set as well. Executors never retry a task themselves (except that
``ray`` runs one whose worker process or actor died again, ``ray.max_retries`` times, before
reporting it); the controller does.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

from lfe.core import registry


@dataclasses.dataclass(frozen=True)
class Outcome:
    value: Any = None
    error: str | None = None  # one-line description of the exception, if the task raised
    timed_out: bool = False  # the task ran past the executor's timeout and was cancelled
    lost: bool = False  # its worker or host was lost, not by the task's doing (not charged)


def call(target: str, args: tuple) -> Outcome:
    """Runs ``target`` (``"module:function"``) on ``args`` where this is called; an exception
    becomes an Outcome with its one-line description."""
    try:
        return Outcome(value=registry.resolve(target)(*args))
    except Exception as e:  # noqa: BLE001 - a failing task must not take the run down
        lines = str(e).strip().splitlines()
        return Outcome(error=f"{type(e).__name__}: {lines[0] if lines else ''}".strip())


class InProcessExecutor:
    """Runs tasks one at a time in this process, in submission order."""

    capacity = 1

    def __init__(self):
        self._queue: collections.deque = collections.deque()

    @property
    def pending(self) -> int:
        return len(self._queue)

    def submit(self, key: str, target: str, *args) -> None:
        self._queue.append((key, target, args))

    def wait_any(self) -> list[tuple[str, Outcome]]:
        if not self._queue:
            return []
        key, target, args = self._queue.popleft()
        return [(key, call(target, args))]

    def close(self) -> None:
        self._queue.clear()


def ray_config():
    """``config.ray``: where and how Ray tasks run (used only with ``executor: ray``)."""
    import ml_collections

    c = ml_collections.ConfigDict()
    c.address = ""  # "" = $RAY_ADDRESS, else a `ray start` cluster on this host, else a new
    # local Ray; "local" = always a new local Ray (ended with this process)
    c.num_cpus = 1.0  # CPUs reserved per task
    c.num_gpus = -1.0  # GPUs per task: -1 = auto (1 if the cluster has GPUs, else 0); 1 = one
    # candidate per GPU; fractions share a GPU; 0 = CPU-only tasks
    c.max_retries = 3  # re-runs of a task whose worker process or host died
    c.timeout_s = 0.0  # wall-clock limit per task from submission; 0 = none
    c.working_dir = ""  # a directory shipped to every worker (runtime_env); "" = none
    c.node_wait_s = 30.0  # a task no live node can run (too many CPUs/GPUs) fails after this
    return c
