"""Executors: where candidate evaluations (and grid cells) run, behind one small protocol.

    executor.submit(key, fn, *args)   # fn: a module-level function (picklable)
    executor.wait_any() -> [(key, Outcome)]   # at least one finished task, in finish order
    executor.capacity                  # how many tasks run at once
    executor.pending                   # submitted and not yet returned
    executor.close()

``inprocess`` runs each task when it is waited for, in submission order: deterministic, the
default. ``pool`` runs tasks in worker processes started with *spawn* (never fork: JAX is
multithreaded), one per core by default, each pinned to its own core before JAX is imported —
on 2 cores two single-core workers beat one two-core process (SPEC/issue measurements).
``ray`` runs each task as a Ray task on a cluster (``RayExecutor``; Ray is an optional extra,
imported only when this executor is made): resources per task, retries after a worker or host
dies, a per-task timeout. ``make(name, workers, ray_options)`` builds one by name.
A task that raises is returned as an Outcome with ``error`` set; the executor keeps running.
A task that ran past its timeout is returned with ``timed_out`` set as well.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import dataclasses
import importlib
import multiprocessing as mp
import os
from collections.abc import Callable
from typing import Any

from lfe.core import malloc


@dataclasses.dataclass(frozen=True)
class Outcome:
    value: Any = None
    error: str | None = None  # one-line description of the exception, if the task raised
    timed_out: bool = False  # the task ran past the executor's timeout and was cancelled


def call(fn: Callable, args: tuple) -> Outcome:
    try:
        return Outcome(value=fn(*args))
    except Exception as e:  # noqa: BLE001 - a failing task must not take the run down
        lines = str(e).strip().splitlines()
        return Outcome(error=f"{type(e).__name__}: {lines[0] if lines else ''}".strip())


def call_target(target: str, *args):
    """Calls ``"module:function"`` with ``args``: lets a controller submit work whose module it
    must not import itself (a Ray controller stays free of JAX)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(*args)


class InProcessExecutor:
    """Runs tasks one at a time in this process, in submission order."""

    capacity = 1

    def __init__(self):
        self._queue: collections.deque = collections.deque()

    @property
    def pending(self) -> int:
        return len(self._queue)

    def submit(self, key: str, fn: Callable, *args) -> None:
        self._queue.append((key, fn, args))

    def wait_any(self) -> list[tuple[str, Outcome]]:
        if not self._queue:
            return []
        key, fn, args = self._queue.popleft()
        return [(key, call(fn, args))]

    def close(self) -> None:
        self._queue.clear()


def _init_worker(cores: mp.Queue, threads: int) -> None:
    """Pins this worker to a core (when there is one left) before anything imports JAX."""
    try:
        core = cores.get_nowait()
    except Exception:  # noqa: BLE001 - a replacement worker finds the queue empty: no pinning
        core = None
    if core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    flags = os.environ.get("XLA_FLAGS", "")
    if threads == 1:
        os.environ["XLA_FLAGS"] = single_thread_flags(flags)


def single_thread_flags(flags: str) -> str:
    """``XLA_FLAGS`` for a worker that owns one core (on CPU, one single-threaded process per
    core evaluates more candidates per hour than one process using every core)."""
    if "--xla_cpu_multi_thread_eigen" in flags:
        return flags
    return (flags + " --xla_cpu_multi_thread_eigen=false").strip()


class ProcessPoolExecutor:
    """Runs tasks in spawned worker processes, ``workers`` at once (default: one per core)."""

    def __init__(self, workers: int | None = None, pin: bool = True):
        available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else list(range(os.cpu_count() or 1))
        self.capacity = int(workers or len(available))
        os.environ.update(malloc.env(os.environ))  # spawned workers start with them
        ctx = mp.get_context("spawn")
        cores = ctx.Queue()
        if pin and self.capacity <= len(available):
            for core in available[: self.capacity]:
                cores.put(core)
        threads = max(1, len(available) // self.capacity)
        self._pool = cf.ProcessPoolExecutor(self.capacity, mp_context=ctx,
                                            initializer=_init_worker, initargs=(cores, threads))
        self._futures: dict[cf.Future, str] = {}

    @property
    def pending(self) -> int:
        return len(self._futures)

    def submit(self, key: str, fn: Callable, *args) -> None:
        self._futures[self._pool.submit(call, fn, args)] = key

    def wait_any(self) -> list[tuple[str, Outcome]]:
        if not self._futures:
            return []
        done, _ = cf.wait(list(self._futures), return_when=cf.FIRST_COMPLETED)
        finished = []
        for future in done:
            key = self._futures.pop(future)
            try:
                finished.append((key, future.result()))
            except Exception as e:  # noqa: BLE001 - a worker died (killed, out of memory)
                finished.append((key, Outcome(error=f"worker failed: {type(e).__name__}: {e}")))
        return sorted(finished, key=lambda kv: kv[0])

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


NAMES = ("inprocess", "pool", "ray", "vmap")


def check_name(name: str) -> None:
    """Raises ValueError for an unknown executor name (cheap: starts nothing)."""
    if name not in NAMES:
        raise ValueError(f"unknown executor {name!r}; available: {', '.join(NAMES)}")


def make(name: str, workers: int | None = None, ray_options=None):
    """An executor by name: ``inprocess``, ``pool`` or ``ray`` (``ray_options``: the fields of
    ``ray_config()``, a ConfigDict or dict; ``workers`` caps the Ray tasks in flight)."""
    check_name(name)
    if name == "inprocess":
        return InProcessExecutor()
    if name == "pool":
        return ProcessPoolExecutor(workers)
    if name == "vmap":  # K candidates per vmapped population run (workers = K; 0 = measured)
        from lfe.training import population

        return population.PopulationExecutor(workers)
    from lfe.executors import ray_executor  # Ray is optional: imported only when chosen

    return ray_executor.RayExecutor(workers=workers, **dict(ray_options or {}))


def ray_config():
    """``config.ray``: where and how Ray tasks run (used only with ``executor: ray``)."""
    import ml_collections

    c = ml_collections.ConfigDict()
    c.address = ""  # "" = $RAY_ADDRESS, else a new local Ray instance
    c.num_cpus = 1.0  # CPUs reserved per task
    c.num_gpus = 0.0  # GPUs per task: 1 = one candidate per GPU; fractions share a GPU
    c.max_retries = 3  # re-runs of a task whose worker process or host died
    c.timeout_s = 0.0  # wall-clock limit per task from submission; 0 = none
    c.working_dir = ""  # a directory shipped to every worker (runtime_env); "" = none
    return c
