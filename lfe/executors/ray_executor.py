"""The Ray executor: candidates (and grid cells) as Ray tasks on a cluster of any size.

Same protocol as ``lfe.executors`` (``submit``, ``wait_any``, ``pending``, ``capacity``,
``close``); chosen with ``executor: ray`` and configured by ``config.ray``
(``lfe.executors.ray_config``). Ray is an optional extra (``requirements-ray.txt``): this module
is imported only when that executor is made.

Each task declares its resources in the remote decorator: ``num_gpus`` (1 = one candidate per
GPU; a fraction shares a GPU between small surrogates) and ``num_cpus``. Declaring GPUs there
(not in ``.options``) keeps Ray's default of one task per worker process for GPU tasks, so a
process never reuses a JAX backend bound to another task's ``CUDA_VISIBLE_DEVICES``. CPU-only
tasks run with ``JAX_PLATFORMS=cpu`` (and single-threaded XLA when they own one CPU); tasks on a
fraction of a GPU run with ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` so they do not each reserve
75% of its memory.

A task whose worker process or host dies is re-run by Ray up to ``max_retries`` times (an
exception inside the task is not a worker failure: it comes back as an Outcome with ``error``);
after that it comes back as ``worker failed: ...``, ``lost`` when its node died
(``worker_failure``).
A task still unfinished ``timeout_s`` after its submission is cancelled (its worker is killed)
and comes back with ``timed_out``. The controller holds all state; a task only ever returns a
value, so a result reaches the controller once or not at all.
"""

from __future__ import annotations

import math
import os
import time

from lfe.core import malloc
from lfe.executors.base import Outcome, call
from lfe.executors.pool import single_thread_flags

# Never shipped to workers: run outputs, environments, version control.
WORKING_DIR_EXCLUDES = [".git", ".venv", "runs", "__pycache__", "*.png", "*.jsonl"]


def task_env(num_cpus: float, num_gpus: float) -> dict[str, str]:
    """Environment variables a task's worker process starts with (before JAX is imported)."""
    if num_gpus <= 0:
        env = {"JAX_PLATFORMS": "cpu"}
        tunables = malloc.env(os.environ).get("GLIBC_TUNABLES")
        if tunables:
            env["GLIBC_TUNABLES"] = tunables  # lfe.core.malloc
        if num_cpus <= 1:
            env["XLA_FLAGS"] = single_thread_flags(os.environ.get("XLA_FLAGS", ""))
        return env
    return {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"} if num_gpus < 1 else {}


def task_capacity(resources: dict, num_cpus: float, num_gpus: float) -> int:
    """How many tasks of this shape the cluster's ``resources`` run at once (at least 1)."""
    fits = [resources.get("CPU", 0.0) / num_cpus] if num_cpus > 0 else []
    if num_gpus > 0:
        fits.append(resources.get("GPU", 0.0) / num_gpus)
    return max(1, math.floor(min(fits) + 1e-9)) if fits else 1


def worker_failure(e: Exception) -> Outcome:
    """The outcome of a task Ray gave up on (after ``max_retries`` re-runs): ``lost`` when its
    node died or its result was lost with a node (preemption: not charged, ``lfe.core.retry``);
    a crashed or out-of-memory worker, or any other Ray error, is charged to the task."""
    import ray

    lines = str(e).strip().splitlines()
    lost = isinstance(e, (ray.exceptions.NodeDiedError, ray.exceptions.LocalRayletDiedError,
                          ray.exceptions.ObjectLostError))
    return Outcome(error=f"worker failed: {type(e).__name__}: {lines[0] if lines else ''}".strip(),
                   lost=lost)


class RayExecutor:
    """Runs tasks as Ray tasks; ``capacity`` = ``workers`` or what the cluster fits."""

    def __init__(self, workers: int | None = None, *, address: str = "", num_cpus: float = 1.0,
                 num_gpus: float = 0.0, max_retries: int = 3, timeout_s: float = 0.0,
                 working_dir: str = ""):
        import ray

        if num_cpus < 0 or num_gpus < 0 or max_retries < 0 or timeout_s < 0:
            raise ValueError("ray num_cpus, num_gpus, max_retries and timeout_s must be >= 0")
        self._ray = ray
        self._owns_ray = not ray.is_initialized()  # tests and notebooks may bring their own
        if self._owns_ray:
            address = address or os.environ.get("RAY_ADDRESS") or None
            runtime_env = ({"working_dir": working_dir, "excludes": WORKING_DIR_EXCLUDES}
                           if working_dir else None)
            local = {} if address else {"include_dashboard": False}
            ray.init(address=address, runtime_env=runtime_env, logging_level="WARNING", **local)
        self._remote = ray.remote(
            num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries,
            retry_exceptions=False,
            runtime_env={"env_vars": task_env(num_cpus, num_gpus)})(call)
        self.timeout_s = float(timeout_s)
        self.capacity = int(workers) if workers else task_capacity(
            ray.cluster_resources(), num_cpus, num_gpus)
        self._tasks: dict = {}  # ObjectRef -> (key, submission time)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def submit(self, key: str, target: str, *args) -> None:
        self._tasks[self._remote.remote(target, args)] = (key, time.monotonic())

    def _wait_s(self) -> float | None:
        """Seconds until the oldest task's deadline (None: no timeout)."""
        if not self.timeout_s:
            return None
        oldest = min(t for _, t in self._tasks.values())
        return max(0.0, oldest + self.timeout_s - time.monotonic())

    def wait_any(self) -> list[tuple[str, Outcome]]:
        """At least one finished (or timed-out) task, sorted by key."""
        ray = self._ray
        while self._tasks:
            refs = list(self._tasks)
            ready, _ = ray.wait(refs, num_returns=1, timeout=self._wait_s())
            if ready:  # take every task finished by now, not just the first
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
                return sorted((self._result(ref) for ref in ready), key=lambda kv: kv[0])
            expired = self._expired()
            if expired:
                return expired
        return []

    def _result(self, ref) -> tuple[str, Outcome]:
        key, _ = self._tasks.pop(ref)
        try:
            return key, self._ray.get(ref)
        except self._ray.exceptions.RayError as e:  # retries used up: worker/host lost, OOM
            return key, worker_failure(e)

    def _expired(self) -> list[tuple[str, Outcome]]:
        now, out = time.monotonic(), []
        for ref, (key, submitted) in list(self._tasks.items()):
            if now - submitted >= self.timeout_s:
                self._ray.cancel(ref, force=True)  # kills the worker: frees its GPU/CPU
                del self._tasks[ref]
                out.append((key, Outcome(error=f"timed out after {self.timeout_s:g} s",
                                         timed_out=True)))
        return sorted(out, key=lambda kv: kv[0])

    def close(self) -> None:
        for ref in self._tasks:
            self._ray.cancel(ref, force=True)
        self._tasks.clear()
        if self._owns_ray:
            self._ray.shutdown()
