"""The Ray executor: candidates (and grid cells) as Ray tasks on a cluster of any size.

Same protocol as ``lfe.executors`` (``submit``, ``wait_any``, ``pending``, ``capacity``,
``close``); chosen with ``executor: ray`` and configured by ``config.ray``
(``lfe.executors.ray_config``). Ray is an optional extra (``requirements-ray.txt``): this module
is imported only when that executor is made.

Work with GPUs (``num_gpus > 0``; 1 = one candidate per GPU, a fraction shares a GPU between
small surrogates) runs on warm workers: one long-lived Ray actor per GPU, or per GPU share,
each bound to its device for its whole life and running candidate after candidate, so the JAX
import, the dataset, CUDA's start-up and the compiled steps are paid once per actor, not per
candidate (``lfe.executors.ray_actors``; a plain GPU task would get a fresh process each time:
Ray's ``max_calls=1`` for GPU tasks). Tasks on a fraction of a GPU run with
``XLA_PYTHON_CLIENT_PREALLOCATE=false`` so they do not each reserve 75% of its memory.

CPU-only work (``num_gpus=0``) stays plain Ray tasks declaring ``num_cpus``, run with
``JAX_PLATFORMS=cpu`` (and single-threaded XLA when they own one CPU). They are warm already:
Ray reuses a CPU task's worker process for later tasks (no ``max_calls`` limit for CPU tasks),
so JAX, the dataset and compiled steps stay in it as they do in an actor; and as tasks they go
wherever CPUs are free at each moment, with Ray's own re-runs on a lost worker or node, with no
device binding at stake that an actor would protect (measured in BENCHMARKS.md, Ray overhead).

A task whose worker process or host dies is run again up to ``max_retries`` times (by Ray for
CPU tasks; on a new actor, first in the queue, for GPU work); an exception inside the task is
not a worker failure: it comes back as an Outcome with ``error``. After that it comes back as
``worker failed: ...``, ``lost`` when its node died (``worker_failure``; for an actor: its node
is gone). A task still unfinished ``timeout_s`` after its submission is cancelled (its worker
process or actor is killed) and comes back with ``timed_out``. The controller holds all state;
a task only ever returns a value, so a result reaches the controller once or not at all.

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
from lfe.executors import ray_actors, ray_resources, reaper
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


class _Tasks:
    """CPU-only work as plain Ray tasks (Ray re-runs one whose worker died)."""

    def __init__(self, ray, *, num_cpus: float, num_gpus: float, max_retries: int,
                 env: dict[str, str]):
        self._ray = ray
        self._remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries,
                                  retry_exceptions=False, runtime_env={"env_vars": env})(call)
        self._running: dict = {}  # ObjectRef -> (key, submission time)

    @property
    def pending(self) -> int:
        return len(self._running)

    def submitted_times(self) -> list[float]:
        return [t for _, t in self._running.values()]

    def submit(self, key: str, target: str, args: tuple, submitted: float) -> None:
        self._running[self._remote.remote(target, args)] = (key, submitted)

    def refs(self) -> list:
        return list(self._running)

    def dispatch(self, capacity: int) -> None:
        pass  # Ray queues the tasks itself

    def collect(self, ready: list) -> list[tuple[str, Outcome]]:
        out = []
        for ref in ready:
            key, _ = self._running.pop(ref)
            try:
                out.append((key, self._ray.get(ref)))
            except self._ray.exceptions.RayError as e:  # retries used up: worker/host lost, OOM
                out.append((key, worker_failure(e)))
        return out

    def expire(self, now: float, timeout_s: float) -> list[tuple[str, Outcome]]:
        out = []
        for ref, (key, submitted) in list(self._running.items()):
            if now - submitted >= timeout_s:
                self._ray.cancel(ref, force=True)  # kills the worker: frees its GPU/CPU
                del self._running[ref]
                out.append((key, Outcome(error=f"timed out after {timeout_s:g} s",
                                         timed_out=True)))
        return out

    def follow(self, nodes: list[dict], capacity: int) -> None:
        pass  # Ray places each task on a live node

    def close(self) -> None:
        for ref in self._running:
            self._ray.cancel(ref, force=True)
        self._running.clear()


class RayExecutor:
    """Runs tasks on Ray (warm actors for GPU work, plain tasks for CPU work); ``capacity`` =
    ``workers`` or what the cluster fits."""

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
        self._work = None  # _Tasks or ray_actors.DeviceActors, once the shape is known
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
        shape = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus,
                 "max_retries": int(max_retries), "env": task_env(self.num_cpus, self.num_gpus)}
        self._work = (ray_actors.DeviceActors(ray, failure=worker_failure, **shape)
                      if self.num_gpus > 0 else _Tasks(ray, **shape))

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
        if self._work is not None:
            self._work.follow(nodes, self.capacity)  # actors on nodes that left end
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
        return self._work.pending

    def submit(self, key: str, target: str, *args) -> None:
        self._work.submit(key, target, args, time.monotonic())
        self._work.dispatch(self.capacity)

    def _wait_s(self) -> float:
        """Seconds until the next look at the cluster or the oldest task's deadline."""
        wait = max(0.0, self._looked + self.poll_s - time.monotonic())
        if self.timeout_s:
            oldest = min(self._work.submitted_times())
            wait = min(wait, max(0.0, oldest + self.timeout_s - time.monotonic()))
        return wait

    def wait_any(self) -> list[tuple[str, Outcome]]:
        """At least one finished (or timed-out) task, sorted by key."""
        ray, work = self._ray, self._work
        while work.pending:
            if time.monotonic() - self._looked >= self.poll_s:
                self._refresh()  # nodes joined or left: capacity; none fits: an error
            work.dispatch(self.capacity)
            refs = work.refs()
            if not refs:  # nothing to wait on until the next look at the nodes
                time.sleep(min(self._wait_s(), 0.5))
                continue
            ready, _ = ray.wait(refs, num_returns=1, timeout=self._wait_s())
            if ready:  # take every task finished by now, not just the first
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
                done = work.collect(ready)
                work.dispatch(self.capacity)
                if done:
                    return sorted(done, key=lambda kv: kv[0])
                continue  # an actor started, or a dead actor's task went back to the queue
            if self.timeout_s:
                expired = work.expire(time.monotonic(), self.timeout_s)
                if expired:
                    return sorted(expired, key=lambda kv: kv[0])
        return []

    def close(self) -> None:
        # A Ray this executor connected itself ends with this job, and Ray ends the job's tasks
        # and actors with it: no force-cancel first (racing a task that just finished, it can
        # abort the controller in Ray's task manager). A Ray brought by the caller stays up, so
        # the tasks are cancelled and the actors ended here.
        if self._work is not None and not self._owns_ray:
            self._work.close()
        if self._owns_ray:
            self._ray.shutdown()
            _stop_reaper(self._reaper)
            self._reaper = None
