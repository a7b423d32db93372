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

The executor follows the cluster (``ray_resources``): ``num_gpus=-1`` (the configs' default) is
one GPU per task when the cluster has GPUs and CPU-only tasks otherwise; ``capacity`` (unless
``workers`` fixes it) is what the live nodes fit, looked at again every ``poll_s`` seconds as
nodes join and leave; a task shape no live node can run fails with one line after
``node_wait_s`` (at start, or once the nodes that could run it are gone) instead of waiting for
ever. A Ray this process starts itself gets a reaper (``lfe.executors.reaper``), so none of its
processes outlives a controller killed by ``kill -9``.
"""

from __future__ import annotations

import os
import sys
import time

from lfe.core import malloc, stop
from lfe.executors import ray_resources, reaper
from lfe.executors.base import Outcome, call
from lfe.executors.pool import single_thread_flags

# Never shipped to workers: run outputs, environments, version control.
WORKING_DIR_EXCLUDES = [".git", ".venv", "runs", "__pycache__", "*.png", "*.jsonl"]
NODE_WAIT_S = 30.0  # how long tasks may wait for a node able to run them (config.ray.node_wait_s)


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


def _init(ray, address: str, working_dir: str):
    """Connects this process to Ray: ``address``, else ``$RAY_ADDRESS``, else a cluster started
    with ``ray start`` on this host, else a new local Ray (``"local"`` forces one). Usage stats
    stay off; this process's stop handlers (``lfe.core.stop``) are put back after ``ray.init``
    replaces the SIGTERM one. Returns the reaper of a Ray this process may start
    (``lfe.executors.reaper``), or None."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS") or None
    runtime_env = ({"working_dir": working_dir, "excludes": WORKING_DIR_EXCLUDES}
                   if working_dir else None)
    here = address in (None, "local")
    watcher = reaper.start() if here else None  # kills what outlives a killed controller
    try:
        ray.init(address=address, runtime_env=runtime_env, logging_level="WARNING",
                 **({"include_dashboard": False} if here else {}))
    except BaseException:
        _stop_reaper(watcher)
        raise
    stop.reinstall()
    return watcher


def _stop_reaper(watcher) -> None:
    if watcher is not None:
        watcher.kill()
        watcher.wait()


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

    poll_s = 5.0  # how often a waiting controller looks at the cluster's nodes

    def __init__(self, workers: int | None = None, *, address: str = "", num_cpus: float = 1.0,
                 num_gpus: float = 0.0, max_retries: int = 3,
                 timeout_s: float = 0.0, working_dir: str = "",
                 node_wait_s: float = NODE_WAIT_S):
        import ray

        if min(num_cpus, max_retries, timeout_s, node_wait_s) < 0 or (
                num_gpus < 0 and num_gpus != ray_resources.AUTO):
            raise ValueError("ray num_cpus, max_retries, timeout_s and node_wait_s must be >= 0, "
                             "num_gpus >= 0 or -1 (auto)")
        self._ray = ray
        self._tasks: dict = {}  # ObjectRef -> (key, submission time)
        self._owns_ray = not ray.is_initialized()  # tests and notebooks may bring their own
        self._reaper = _init(ray, address, working_dir) if self._owns_ray else None
        try:
            self.num_cpus = float(num_cpus)
            self.num_gpus = ray_resources.resolve_num_gpus(num_gpus, ray.nodes())
            self.timeout_s, self.node_wait_s = float(timeout_s), float(node_wait_s)
            self._workers, self._unfit_since = int(workers or 0), None
            self._await_nodes()
        except BaseException:
            self.close()
            raise
        self._remote = ray.remote(
            num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=max_retries,
            retry_exceptions=False,
            runtime_env={"env_vars": task_env(self.num_cpus, self.num_gpus)})(call)

    def _await_nodes(self) -> None:
        """Sets ``capacity``; waits (``node_wait_s`` at most) while no node can run a task."""
        self._refresh()
        if self._unfit_since is not None:
            print(f"ray: waiting up to {self.node_wait_s:g} s for a node that can run a task "
                  f"(num_cpus={self.num_cpus:g}, num_gpus={self.num_gpus:g})", file=sys.stderr,
                  flush=True)
        while self._unfit_since is not None:
            time.sleep(min(self.poll_s, self.node_wait_s))
            self._refresh()

    def _refresh(self) -> None:
        """Follows the cluster's live nodes: ``capacity`` (unless ``workers`` fixed it), and a
        one-line error once no node has been able to run a task for ``node_wait_s``."""
        nodes = self._ray.nodes()
        self._looked = time.monotonic()
        self.capacity = self._workers or ray_resources.capacity(nodes, self.num_cpus,
                                                                self.num_gpus)
        problem = ray_resources.unfit(nodes, self.num_cpus, self.num_gpus)
        if problem is None:
            self._unfit_since = None
            return
        if self._unfit_since is None:
            self._unfit_since = self._looked
        if self._looked - self._unfit_since >= self.node_wait_s:
            raise ValueError(f"{problem} (waited {self.node_wait_s:g} s: "
                             "--config.ray.node_wait_s)")

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def submit(self, key: str, target: str, *args) -> None:
        self._tasks[self._remote.remote(target, args)] = (key, time.monotonic())

    def _wait_s(self) -> float:
        """Seconds until the next look at the cluster or the oldest task's deadline."""
        wait = max(0.0, self._looked + self.poll_s - time.monotonic())
        if self.timeout_s:
            oldest = min(t for _, t in self._tasks.values())
            wait = min(wait, max(0.0, oldest + self.timeout_s - time.monotonic()))
        return wait

    def wait_any(self) -> list[tuple[str, Outcome]]:
        """At least one finished (or timed-out) task, sorted by key."""
        ray = self._ray
        while self._tasks:
            if time.monotonic() - self._looked >= self.poll_s:
                self._refresh()  # nodes joined or left: capacity; none fits: an error
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
        if not self.timeout_s:
            return []
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
            _stop_reaper(self._reaper)
            self._reaper = None
