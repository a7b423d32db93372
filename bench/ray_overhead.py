"""Per-task overhead of the Ray executor: an (almost) empty task's round trip.

    python bench/ray_overhead.py [--tasks 300]

The same trivial task (``math.sqrt`` called by name, as the controller calls evaluators) goes
through: a direct call; the in-process executor; the Ray executor on a local Ray instance,
one task at a time (submit, wait_any: the latency a candidate pays) and 2 at a time
(``capacity`` 2, kept full: the throughput the controller sustains). Measured after a warm-up
(worker processes started). Against a candidate's minutes of training this is the overhead.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lfe import executors  # noqa: E402

TASK = ("math:sqrt", 4.0)


def round_trips(ex, n: int, in_flight: int) -> float:
    """Seconds per task with ``in_flight`` tasks kept submitted."""
    start, submitted, done = time.perf_counter(), 0, 0
    while done < n:
        while submitted < n and ex.pending < in_flight:
            ex.submit(str(submitted), *TASK)
            submitted += 1
        for _, outcome in ex.wait_any():
            assert outcome.error is None and outcome.value == 2.0, outcome
            done += 1
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=300)
    n = parser.parse_args().tasks
    rows = []
    start = time.perf_counter()
    for _ in range(n):
        TASK[0](*TASK[1:])
    rows.append(("direct call", (time.perf_counter() - start) / n))
    rows.append(("inprocess executor", round_trips(executors.make("inprocess"), n, 1)))
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    startup = time.perf_counter() - t0
    ex = executors.make("ray", 2)
    round_trips(ex, 20, 2)  # warm-up: workers started, function exported
    rows.append(("ray executor, 1 in flight", round_trips(ex, n, 1)))
    rows.append(("ray executor, 2 in flight", round_trips(ex, n, 2)))
    ex.close()
    ray.shutdown()
    print(f"# Ray executor overhead ({n} tasks each; {platform.processor() or platform.machine()},"
          f" {os.cpu_count()} cores; ray {ray.__version__}; local Ray start-up {startup:.1f} s)")
    print("| path | per task (ms) | vs direct |")
    print("|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {1000 * seconds:.3f} | {seconds / rows[0][1]:.0f}x |")


if __name__ == "__main__":
    main()
