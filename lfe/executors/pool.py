"""The ``pool`` executor: tasks in spawned worker processes, one pinned core each.

Workers start with *spawn* (never fork: JAX is multithreaded) and pin themselves to a core and
set single-threaded XLA before anything imports JAX: on 2 cores, two single-core workers
evaluate more candidates per hour than one process using both (BENCHMARKS.md §3). They start
with ``lfe.core.malloc``'s glibc settings (faster XLA:CPU steps), which glibc reads only at
process start: the pool puts them into this process's environment while it lives (workers are
spawned on demand) and restores the environment when it is closed.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os

from lfe.core import malloc
from lfe.executors.base import Outcome, call


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
        self._saved_env = {k: os.environ.get(k) for k in malloc.env(os.environ)
                           if os.environ.get(k) != malloc.env(os.environ)[k]}
        os.environ.update(malloc.env(os.environ))  # until close(): workers spawn on demand
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

    def submit(self, key: str, target: str, *args) -> None:
        self._futures[self._pool.submit(call, target, args)] = key

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
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
