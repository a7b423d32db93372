"""Warm workers on Ray: one long-lived actor per GPU (or GPU share) running task after task.

Used by ``lfe.executors.ray_executor`` for tasks with ``num_gpus > 0``. A plain Ray task that
asks for a GPU runs in a fresh worker process (Ray's ``max_calls=1`` for GPU tasks), so every
candidate would pay the JAX import, the dataset load, CUDA's start-up and its compilations
again. Here each worker is a Ray actor (``DeviceWorker``) holding ``num_gpus`` of one GPU
(Ray sets its ``CUDA_VISIBLE_DEVICES`` once, when it starts) and ``num_cpus``; it runs
``lfe.executors.base.call`` for one task at a time, so whatever the task caches in its process
(the imported JAX, ``lfe.training.fitness.load_dataset``'s dataset, compiled steps) serves the
next candidate. ``num_gpus`` below 1 gives several actors per GPU (0.25: four), each with
``XLA_PYTHON_CLIENT_PREALLOCATE=false`` (``ray_executor.task_env``).

The controller keeps the queue, and a task goes only to an idle actor that has started
(``where`` answered), never to one still waiting for a node: bound to an actor Ray cannot
place (more ``workers`` than GPUs, GPUs another job holds) it would wait there while other GPUs
idle. Actors are started for waiting tasks, up to the executor's ``capacity`` (which follows
the nodes, ``ray_resources``); so tasks start while the controller waits (``wait_any``), as it
always does once it has submitted. Idle actors on a node that left, or beyond a capacity that
shrank, are ended when the executor next looks at the nodes.

Failures keep the Ray executor's semantics (``lfe.core.retry`` decides on them in the
controller): an exception inside a task is an Outcome with ``error`` and the actor stays; an
actor that dies (its process killed, out of memory, its node lost) is replaced, and its task
goes back to the front of the queue, up to ``max_retries`` times, then comes back as
``worker failed: <Ray's error>``, ``lost`` when the actor's node is gone; an actor that fails to
start costs the oldest waiting task a retry the same way (so a setup that always fails ends).
A task unfinished ``timeout_s`` after its submission comes back ``timed_out``; its actor is
killed (that frees its GPU) and replaced when needed.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from typing import Any

from lfe.executors.base import Outcome, call


def alive(nodes: list[dict]) -> set[str]:
    """The ids of the live nodes among ``ray.nodes()``."""
    return {n["NodeID"] for n in nodes if n.get("Alive", True)}


class DeviceWorker:
    """The actor: a process bound to its share of one GPU, serving tasks one at a time."""

    def where(self) -> dict:
        """Its process, node and GPUs: answered once it has started."""
        import ray

        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(),
                "gpus": [str(g) for g in ray.get_gpu_ids()],
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}

    def run(self, target: str, args: tuple) -> Outcome:
        return call(target, args)


@dataclasses.dataclass
class _Task:
    key: str
    target: str
    args: tuple
    submitted: float
    deaths: int = 0  # actors that died under it (or failed to start for it)


@dataclasses.dataclass
class _Actor:
    handle: Any
    ready: Any  # ObjectRef of ``where`` until the actor has started, then None
    info: dict | None = None
    task: _Task | None = None
    ref: Any = None  # ObjectRef of the task it runs


class DeviceActors:
    """The actors of one Ray executor and the tasks queued for them."""

    def __init__(self, ray, *, num_cpus: float, num_gpus: float, max_retries: int,
                 env: dict[str, str], failure):
        """``failure(error)``: the Outcome of a task Ray raised ``error`` for, its actor alive
        (``ray_executor.worker_failure``)."""
        self._ray, self._failure = ray, failure
        self._cls = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=0,
                               max_task_retries=0, runtime_env={"env_vars": env})(DeviceWorker)
        self._max_retries = max_retries
        self._queue: collections.deque[_Task] = collections.deque()
        self._actors: list[_Actor] = []
        self.started = 0  # actors started so far (replacements included)

    # ----------------------------------------------------------------- what the executor asks

    @property
    def pending(self) -> int:
        return len(self._queue) + sum(a.task is not None for a in self._actors)

    def submitted_times(self) -> list[float]:
        return [t.submitted for t in self._queue] + [a.task.submitted for a in self._actors
                                                     if a.task is not None]

    def submit(self, key: str, target: str, args: tuple, submitted: float) -> None:
        self._queue.append(_Task(key, target, args, submitted))

    def refs(self) -> list:
        """What to wait on: running tasks and actors still starting."""
        return [a.ref for a in self._actors if a.ref is not None] + [
            a.ready for a in self._actors if a.ready is not None]

    def dispatch(self, capacity: int) -> None:
        """Hands waiting tasks to idle started actors; starts actors for the tasks left, up to
        ``capacity`` actors."""
        for actor in self._actors:
            if not self._queue:
                break
            if actor.ready is None and actor.task is None:
                actor.task = self._queue.popleft()
                actor.ref = actor.handle.run.remote(actor.task.target, actor.task.args)
        starting = sum(a.ready is not None for a in self._actors)
        for _ in range(min(len(self._queue) - starting, capacity - len(self._actors))):
            handle = self._cls.remote()
            self._actors.append(_Actor(handle, handle.where.remote()))  # answered once started
            self.started += 1

    def collect(self, ready: list) -> list[tuple[str, Outcome]]:
        """The finished tasks among ``ready`` refs; started actors become idle; dead actors'
        tasks are queued again or reported."""
        ready, out = set(ready), []
        for actor in list(self._actors):
            if actor.ready is not None and actor.ready in ready:
                try:
                    actor.info, actor.ready = self._ray.get(actor.ready), None
                except self._ray.exceptions.RayError as e:  # it never started
                    self._drop(actor)
                    if self._queue:
                        out += self._died(self._queue.popleft(), e)
            elif actor.ref is not None and actor.ref in ready:
                task, ref, actor.task, actor.ref = actor.task, actor.ref, None, None
                try:
                    out.append((task.key, self._ray.get(ref)))
                except self._ray.exceptions.RayActorError as e:  # process or node gone
                    self._drop(actor)
                    out += self._died(task, e, node=(actor.info or {}).get("node"))
                except self._ray.exceptions.RayError as e:  # the actor lives on
                    out.append((task.key, self._failure(e)))
        return out

    def expire(self, now: float, timeout_s: float) -> list[tuple[str, Outcome]]:
        """Tasks past ``timeout_s`` since submission: timed out; their actors killed."""
        out = []
        late = Outcome(error=f"timed out after {timeout_s:g} s", timed_out=True)
        for task in [t for t in self._queue if now - t.submitted >= timeout_s]:
            self._queue.remove(task)
            out.append((task.key, late))
        for actor in list(self._actors):
            if actor.task is not None and now - actor.task.submitted >= timeout_s:
                out.append((actor.task.key, late))
                self._drop(actor)  # kills it: frees its GPU
        return out

    def follow(self, nodes: list[dict], capacity: int) -> None:
        """Ends idle actors on nodes that left (``nodes``: ``ray.nodes()``), then idle or
        starting ones beyond ``capacity``, newest first."""
        live = alive(nodes)
        for actor in list(self._actors):
            if actor.task is None and actor.info and actor.info["node"] not in live:
                self._drop(actor)
        for actor in reversed(list(self._actors)):
            if len(self._actors) <= capacity:
                break
            if actor.task is None:
                self._drop(actor)

    def close(self) -> None:
        self._queue.clear()
        for actor in list(self._actors):
            self._drop(actor)

    # ----------------------------------------------------------------- internals

    def _drop(self, actor: _Actor) -> None:
        self._actors.remove(actor)
        try:
            self._ray.kill(actor.handle, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass

    def _died(self, task: _Task, error: Exception,
              node: str | None = None) -> list[tuple[str, Outcome]]:
        """A task whose actor died on ``node`` (or did not start): first in the queue again
        while its retries last, else reported as ``worker failed``, ``lost`` when that node is
        gone (or was preempted)."""
        task.deaths += 1
        if task.deaths <= self._max_retries:
            self._queue.appendleft(task)
            return []
        lines = str(error).strip().splitlines()
        lost = bool(getattr(error, "preempted", False)) or (
            node is not None and node not in alive(self._ray.nodes()))
        return [(task.key, Outcome(error=f"worker failed: {type(error).__name__}: "
                                         f"{lines[0] if lines else ''}".strip(), lost=lost))]
