"""5. Evolution throughput end to end, and the controller's share of the wall time.

    python -m bench.evolution_overhead [--variant runlocal] [--iterations N] [--executor pool]
                                       [--workdir DIR] [--no-write]

Runs ``mode: evolve`` (``lfe.experiments.evolve.run``) with ``configs/quickstart.py`` (``--variant
runlocal``: its 3-minute smoke variant; ``--iterations`` overrides ``max_iterations``) on the
real CIFAR-10 of ``$LFE_DATA_DIR`` in a fresh work directory, and times, in this (controller)
process, every controller call by wrapping it (``lfe.experiments.evolve`` itself is not changed):

* ask: ``evolution.ask`` — initial sampling, tournament, mutation and the integrity check;
* tell: ``evolution.tell``;
* state writes: ``rundir.save_state`` (checksummed checkpoint) and ``rundir.append_event``;
* outputs: ``_Run.write_outputs`` (best.json, Figures 2-4) and ``_Run.progress`` (progress line,
  TensorBoard scalars; it calls write_outputs every ``plot_every`` tells, counted once).

Everything else is waiting for the executor (training in the workers) or start-up. Candidates
per hour = evaluations told / wall time of ``evolve.run``; the steady rate is also taken from
``events.jsonl`` timestamps (first to last evaluation). Goal: controller share < 2%.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import tempfile
import time

from bench import common


class Timers:
    """Wall seconds and calls per category; nested timed calls count once (the outermost)."""

    def __init__(self):
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.calls: dict[str, int] = collections.defaultdict(int)
        self._depth = 0

    def wrap(self, owner, name: str, category: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if self._depth:
                return original(*args, **kwargs)
            self._depth += 1
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._depth -= 1
                self.seconds[category] += time.perf_counter() - t0
                self.calls[category] += 1

        setattr(owner, name, timed)


def instrument(timers: Timers) -> None:
    from lfe.core import evolution, rundir
    from lfe.experiments import evolve

    timers.wrap(evolution, "ask", "ask (mutation + integrity)")
    timers.wrap(evolution, "tell", "tell")
    timers.wrap(rundir, "save_state", "state writes")
    timers.wrap(rundir, "append_event", "state writes")
    timers.wrap(evolve._Run, "write_outputs", "outputs (best.json, figures)")
    timers.wrap(evolve._Run, "progress", "outputs (progress, TensorBoard)")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="")
    parser.add_argument("--iterations", type=int, default=-1)
    parser.add_argument("--executor", default="")
    parser.add_argument("--workdir", default="")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if not os.environ.get("LFE_DATA_DIR"):
        raise SystemExit("set LFE_DATA_DIR to the CIFAR-10 binary directory")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from configs import quickstart
    from lfe.core import rundir
    from lfe.experiments import evolve

    config = quickstart.get_config(args.variant or None)
    if args.iterations >= 0:
        config.max_iterations = args.iterations
    if args.executor:
        config.executor = args.executor
    workdir = args.workdir or tempfile.mkdtemp(prefix="lfe-bench-evolve-")
    timers = Timers()
    instrument(timers)
    t0 = time.perf_counter()
    summary = evolve.run(config, workdir)
    wall = time.perf_counter() - t0
    events = list(rundir.read_events(workdir))
    told = len(events)
    times = sorted(e["time"] for e in events)
    steady = 3600 * (told - 1) / (times[-1] - times[0]) if told > 1 and times[-1] > times[0] \
        else float("nan")
    controller = sum(timers.seconds.values())
    rows = [[k, timers.calls[k], v, 100 * v / wall] for k, v in sorted(timers.seconds.items())]
    rows.append(["controller total", sum(timers.calls.values()), controller,
                 100 * controller / wall])
    rows.append(["rest: waiting on the executor (training) and start-up", "", wall - controller,
                 100 * (wall - controller) / wall])
    body = common.table(["part", "calls", "wall s", "share %"], rows)
    name = f"configs/quickstart.py{':' + args.variant if args.variant else ''}"
    text = (f"Config {name} (max_iterations {config.max_iterations}, executor "
            f"{config.executor}, {len(os.sched_getaffinity(0))} cores), real CIFAR-10. "
            f"{told} evaluations told ({summary.get('evaluated')} evaluated, "
            f"{summary.get('iterations')} iterations) in {wall:.0f} s: "
            f"**{3600 * told / wall:.0f} candidates/h** end to end, {steady:.0f}/h between the "
            f"first and the last evaluation (events.jsonl).\n\n{body}\n\n"
            f"Controller share: {100 * controller / wall:.2f}% of the wall time. Goal: < 2%.\n\n"
            "What limits it: training in the workers (the controller waits on them almost all "
            "the time); the controller's largest part is usually the figures, redrawn every "
            "`plot_every` tells, then the integrity check inside ask.")
    print(text)
    result = {"wall_s": wall, "told": told, "per_hour": 3600 * told / wall,
              "steady_per_hour": steady, "controller_s": controller,
              "share": controller / wall, "parts": dict(timers.seconds), "workdir": workdir}
    print(json.dumps(result))
    if not args.no_write:
        common.write_section("evolution", "5. Evolution throughput and controller overhead", text)
    return result


if __name__ == "__main__":
    main()
