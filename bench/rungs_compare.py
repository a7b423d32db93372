r"""Two evolution runs side by side: the paper's fixed schedule against rungs (issue #20, item 3).

    python -m bench.rungs_compare --runs results/cpu_evolution/run runs/cpu_evolution_rungs \
        --names "fixed schedule" rungs --out results/rungs_evolution/comparison.md

Per run, read from its run directory only (no training, no JAX): the training time it spent
(core-hours: the summed wall time of its evaluations, one core each on the pool executor, and
of the tasks of children still paused at a rung), evaluations and children, evaluations per
core-hour, scored candidates, children beating cross-entropy's mean and best run on the
surrogate (the run's ``ce_band``), the best fitness and the iterations done. Training steps
(gate, surrogate and paused rung tasks) count the same budget without the machine's speed: the
core-seconds per 1,000 steps show whether the two runs had the same machine to themselves. A
child stopped at a rung has a fitness from fewer steps, so counting it against cross-entropy's
2,000-step runs can only under-count. Writes a Markdown table and a JSON file beside it.
"""

from __future__ import annotations

import argparse
import os

from lfe.core import evolution, fileio, progress, records, rundir
from lfe.core.state import State


def measure(run_dir: str) -> dict:
    """The comparison's numbers for one run directory."""
    state = State.from_dict(rundir.load_state(run_dir))
    config = fileio.read_json(os.path.join(run_dir, rundir.CONFIG))
    band = config.get("ce_band") or [None, None, None]
    children = [e for e in state.evaluated if e.stage == "surrogate" and e.iteration is not None]
    scored = [e for e in state.evaluated if not records.is_failed(e.record)]
    scored_children = [e for e in children if not records.is_failed(e.record)]
    full = [e for e in scored_children if e.record["status"] != "stopped_at_rung"]
    hours = progress.core_hours(state)
    steps = progress.steps_spent(state)

    def beat(value):
        return None if value is None else sum(e.fitness > value for e in scored_children)

    best_child = max((e.fitness for e in scored_children), default=None)
    return {
        "run_dir": run_dir, "seed": config.get("seed"), "rungs": config.get("rungs") or [],
        "core_hours": round(hours, 3), "evaluations": len(state.evaluated),
        "evaluations_per_core_hour": round(len(state.evaluated) / hours, 2) if hours else None,
        "children": len(children), "children_per_core_hour":
            round(len(children) / hours, 2) if hours else None,
        "training_steps": steps,
        "core_seconds_per_1000_steps": round(3600 * hours / steps * 1000, 1) if steps else None,
        "children_per_million_steps": round(len(children) / steps * 1e6, 1) if steps else None,
        "iterations_done": state.iterations_done, "scored": len(scored),
        "scored_children": len(scored_children), "children_trained_in_full": len(full),
        "children_stopped_at_rung": len(scored_children) - len(full),
        "children_gated_or_failed": len(children) - len(scored_children),
        "children_beating_ce_mean": beat(band[1]), "children_beating_ce_best": beat(band[0]),
        "ce_mean": band[1], "ce_best": band[0], "best_child_fitness": best_child,
        "best_fitness": max((e.fitness for e in scored), default=None),
        "best": evolution.best(state, 1, "surrogate")[:1],
    }


ROWS = [("training spent (core-hours)", "core_hours"), ("evaluations", "evaluations"),
        ("evaluations per core-hour", "evaluations_per_core_hour"),
        ("children", "children"), ("children per core-hour", "children_per_core_hour"),
        ("training steps", "training_steps"),
        ("core-seconds per 1,000 steps (machine speed)", "core_seconds_per_1000_steps"),
        ("children per million steps", "children_per_million_steps"),
        ("iterations done", "iterations_done"), ("scored candidates", "scored"),
        ("scored children", "scored_children"),
        ("of which trained in full", "children_trained_in_full"),
        ("of which stopped at a rung", "children_stopped_at_rung"),
        ("children gated or failed", "children_gated_or_failed"),
        ("children beating CE's mean", "children_beating_ce_mean"),
        ("children beating CE's best run", "children_beating_ce_best"),
        ("best child fitness (%)", "best_child_fitness")]


def table(results: list[dict], names: list[str]) -> str:
    def cell(key, value):
        if value is None:
            return "-"
        return f"{100 * value:.2f}" if key == "best_child_fitness" else str(value)

    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, key in ROWS:
        lines.append(f"| {label} | " + " | ".join(cell(key, r[key]) for r in results) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True)
    parser.add_argument("--names", nargs="+")
    parser.add_argument("--out", default="results/rungs_evolution/comparison.md")
    args = parser.parse_args(argv)
    names = args.names or [os.path.basename(os.path.normpath(r)) for r in args.runs]
    results = [measure(r) for r in args.runs]
    text = table(results, names)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    fileio.write_json_atomic(os.path.splitext(args.out)[0] + ".json",
                             {"names": names, "runs": results,
                              "git_revision": fileio.git_revision()})
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
