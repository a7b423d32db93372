"""Per-task overhead of the Ray executor: CPU tasks, and warm GPU actors vs a process per task.

    JAX_PLATFORMS=cpu python bench/ray_overhead.py [--tasks 300] [--gpu-tasks 40] [--jax-tasks 10]

Part 1 (CPU tasks): the same trivial task (``math.sqrt`` called by name, as the controller calls
evaluators) goes through a direct call; the in-process executor; the Ray executor on a local Ray
instance with 2 CPUs, one task at a time (submit, wait_any: the latency a candidate pays) and 2
at a time (``capacity`` 2, kept full: the throughput the controller sustains).

Part 2 (2 fake GPUs: a local Ray started with ``num_gpus=2``): GPU work as the executor runs it
now, one warm actor per GPU (``lfe.executors.ray_actors``), against the previous path, a Ray
task declaring its GPU (a fresh worker process per task: Ray's ``max_calls=1`` for GPU tasks;
reproduced here with the executor's ``_Tasks``). Two tasks: the empty one, and ``jax_step`` —
import JAX and run one small jitted function — the least a candidate pays in a fresh process
before it trains (its dataset load and the model's compilation come on top and are also paid
once per actor). Measured after a warm-up (actors started, functions exported). Against a
candidate's minutes of training this is the overhead.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lfe import executors  # noqa: E402

EMPTY = ("math:sqrt", (4.0,), 2.0)
JAX = ("bench.ray_overhead:jax_step", (4,), 14.0)
_STEP = None


def jax_step(n: int) -> float:
    """Imports JAX and runs one jitted function (compiled once per process)."""
    global _STEP
    import jax
    import jax.numpy as jnp

    if _STEP is None:
        _STEP = jax.jit(lambda v: (v * v).sum())
    return float(_STEP(jnp.arange(float(n))))


def round_trips(ex, n: int, in_flight: int, task=EMPTY) -> float:
    """Seconds per task with ``in_flight`` tasks kept submitted."""
    target, args, expected = task
    start, submitted, done = time.perf_counter(), 0, 0
    while done < n:
        while submitted < n and ex.pending < in_flight:
            ex.submit(str(submitted), target, *args)
            submitted += 1
        for _, outcome in ex.wait_any():
            assert outcome.error is None and outcome.value == expected, outcome
            done += 1
    return (time.perf_counter() - start) / n


class FreshProcessTasks:
    """The previous GPU path, to measure against: each task a Ray task declaring one GPU."""

    def __init__(self, ray):
        from lfe.executors import ray_executor

        self._ray = ray
        self._tasks = ray_executor._Tasks(ray, num_cpus=1.0, num_gpus=1.0, max_retries=0,
                                          env=ray_executor.task_env(1.0, 1.0))

    @property
    def pending(self) -> int:
        return self._tasks.pending

    def submit(self, key: str, target: str, *args) -> None:
        self._tasks.submit(key, target, args, time.monotonic())

    def wait_any(self):
        ready, _ = self._ray.wait(self._tasks.refs(), num_returns=1)
        return self._tasks.collect(ready)

    def close(self) -> None:
        self._tasks.close()


def cpu_rows(ray, n: int) -> tuple[list, float]:
    rows = []
    start = time.perf_counter()
    for _ in range(n):
        __import__("math").sqrt(4.0)
    rows.append(("direct call", (time.perf_counter() - start) / n))
    rows.append(("inprocess executor", round_trips(executors.make("inprocess"), n, 1)))
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    startup = time.perf_counter() - t0
    ex = executors.make("ray", 2)
    round_trips(ex, 20, 2)  # warm-up: workers started, function exported
    rows.append(("ray executor, 1 in flight", round_trips(ex, n, 1)))
    rows.append(("ray executor, 2 in flight", round_trips(ex, n, 2)))
    ex.close()
    ray.shutdown()
    return rows, startup


def gpu_rows(ray, n: int, n_jax: int) -> tuple[list, int]:
    """(path, task, in flight, tasks, seconds per task) rows; the actors started. The two
    paths run one after the other (each takes both fake GPUs)."""
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, logging_level="WARNING")
    rows, started = [], 0
    paths = (("warm actor per GPU", lambda: executors.make("ray", None, {"num_gpus": 1})),
             ("fresh process per task (before)", lambda: FreshProcessTasks(ray)))
    for label, make in paths:
        ex = make()
        round_trips(ex, 4, 2)  # warm-up: actors started, functions exported
        for name, task, count in (("empty", EMPTY, n), ("jax_step", JAX, n_jax)):
            if task is JAX and label.startswith("warm"):
                round_trips(ex, 2, 2, JAX)  # each actor imports JAX once: its first candidate
            for in_flight in (1, 2):
                rows.append((label, name, in_flight, count,
                             round_trips(ex, count, in_flight, task)))
        if label.startswith("warm"):
            started = ex._work.started
        ex.close()
    ray.shutdown()
    return rows, started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--gpu-tasks", type=int, default=40)
    parser.add_argument("--jax-tasks", type=int, default=10)
    args = parser.parse_args()
    import ray

    rows, startup = cpu_rows(ray, args.tasks)
    where = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
             f"ray {ray.__version__}")
    print(f"# Ray executor overhead, CPU tasks ({args.tasks} tasks each; {where}; "
          f"local Ray start-up {startup:.1f} s)")
    print("| path | per task (ms) | vs direct |")
    print("|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {1000 * seconds:.3f} | {seconds / rows[0][1]:.0f}x |")
    gpu, started = gpu_rows(ray, args.gpu_tasks, args.jax_tasks)
    print(f"\n# GPU work on 2 fake GPUs: warm actors vs a fresh process per task ({where}; "
          f"actors started: {started})")
    print("| path | task | in flight | tasks | per task (ms) | vs warm actor |")
    print("|---|---|---|---|---|---|")
    base = {(task, k): s for label, task, k, _, s in gpu if label.startswith("warm")}
    for label, task, k, count, seconds in gpu:
        print(f"| {label} | {task} | {k} | {count} | {1000 * seconds:.1f} | "
              f"{seconds / base[(task, k)]:.1f}x |")


if __name__ == "__main__":
    main()
