"""Measure before building rungs (issue #20, item 1): fidelity, rung replay, a training-free filter.

    python -m bench.fidelity [--run results/cpu_evolution/run] [--out results/fidelity]
        [--cells results/table4/cells results/cpu_evolution/retrain/cells] [--no-filter]

No network is trained. From a finished evolution run directory (``state.json``: every evaluated
candidate with its fitness record and curve; ``events.jsonl``: when each was told) and from
finished Table 4 cells (8,000-step curves) it writes to ``--out``:

1. ``tau_evolution.csv``, ``tau_table4.csv``: Kendall's τ-b and Spearman's ρ between the
   validation or training accuracy at step k (best-so-far and at-step readings,
   ``lfe.core.fidelity``) and the final fitness (the best validation accuracy of the run);
2. ``replay.csv``, ``replay_stops.json``: rung schedules replayed on the candidates that trained
   the full surrogate run (``lfe.core.rungs``), the steps and core-hours they would have saved,
   which candidates they stop; ``gate_early.csv``: the gate's own curves at 400 steps;
3. (unless ``--no-filter``) ``filter_scores.csv`` (with gradient-equivalence groups),
   ``filter_summary.csv``, ``filter.png``: the training-free loss filter
   (``lfe.training.loss_rejection``) on every candidate and every library loss, from
   ``bench.fidelity_filter`` (needs CIFAR-10 in ``$LFE_DATA_DIR``);
4. ``results.md`` with every table, ``summary.json``, the figure ``tau.png``.

In the evolution's records a scored child's curve is its surrogate run only (steps 100..2,000,
plus step 750 where the stop rule was checked); its ``steps`` and ``wall_time_s`` include the
800-step gate before it. A gated child's curve is the gate's (training accuracy only).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from bench import common
from lfe.core import fidelity, fileio, rundir, rungs

KS = (100, 200, 400, 800, 1200, 2000)
KS_TABLE4 = (100, 200, 400, 800, 1200, 2000, 4000, 8000)
SURROGATE_STEPS = 2000
GATE_STEPS = 800
BEST = (73, 94, 110)  # the run's best three children (results/cpu_evolution/README.md)
SCHEDULES = ((200,), (400,), (800,), (1200,), (400, 1200), (200, 400, 800),
             (200, 400, 800, 1200))
FRACTIONS = ((1, 2), (1, 3), (1, 4))
HEADLINE = ((400, 1200), (1, 3))
FIGURE_GROUPS = ("all scored", "children", "runs")


@dataclasses.dataclass(frozen=True)
class Evaluated:
    """One evaluated candidate of the run, as the analysis needs it."""

    id: int
    stage: str  # initial | surrogate
    status: str
    fitness: float | None
    curve: list
    steps: int
    wall_time_s: float
    told: int  # index in events.jsonl
    told_time: float
    gate_accuracy: float | None
    equation: str
    genome: dict
    sign: int

    @property
    def gate_steps(self) -> int:
        return GATE_STEPS if self.stage == "surrogate" else 0

    def time_at(self, surrogate_step: int) -> float:
        """When it reached ``surrogate_step`` of its surrogate run (its told time minus the
        share of its wall time after that step, steps taken as equally long)."""
        rest = self.steps - self.gate_steps - surrogate_step
        return self.told_time - self.wall_time_s * rest / self.steps


def load_run(run_dir: str) -> list[Evaluated]:
    state = rundir.load_state(run_dir)
    if state is None:
        raise SystemExit(f"error: no state.json in {run_dir}")
    events = rundir.read_events(run_dir)
    told = {e["id"]: (i, e["time"]) for i, e in enumerate(events)}
    out = []
    for c in state["evaluated"]:
        if c["id"] not in told:
            raise SystemExit(f"error: candidate {c['id']} of {run_dir} has no event")
        r = c["record"]
        out.append(Evaluated(c["id"], c["stage"], r["status"], r["fitness"], r["curve"],
                             r["steps"], r["wall_time_s"], *told[c["id"]],
                             r.get("gate_train_accuracy"), c["equation"], c["genome"],
                             c["sign"]))
    return sorted(out, key=lambda e: e.told)


def load_cells(dirs: list[str]) -> list[dict]:
    """Finished 8,000-step cells (one per loss and seed; a copy in a later folder is skipped)."""
    cells = {}
    for d in dirs:
        for name in sorted(os.listdir(d)):
            if name.endswith(".json") and not name.endswith(".failed.json"):
                cell = fileio.read_json(os.path.join(d, name))
                # the best validation accuracy (older cells name it best_val_accuracy)
                cell["final"] = fidelity.at_step(cell["curve"], cell["curve"][-1][0])
                cells.setdefault((cell["loss"], cell["seed"]), cell)
    return [cells[k] for k in sorted(cells)]


def scored(run: list[Evaluated]) -> list[Evaluated]:
    """The candidates that trained the full surrogate run (initial genomes, scored children)."""
    return [e for e in run if e.status == "ok"]


# --------------------------------------------------------------------------- 1. fidelity

def tau_rows(groups: dict[str, list[tuple[list, float]]], ks,
             columns=("val", "train")) -> list[dict]:
    rows = []
    for group, items in groups.items():
        finals = [final for _, final in items]
        for column in columns:
            for reading in fidelity.READINGS:
                for k in ks:
                    c = fidelity.correlations(
                        [fidelity.at_step(curve, k, column, reading) for curve, _ in items],
                        finals)
                    rows.append({"group": group, "column": column, "reading": reading, "k": k,
                                 **dataclasses.asdict(c)})
    return rows


def evolution_groups(run: list[Evaluated]) -> dict[str, list[tuple[list, float]]]:
    ok = scored(run)
    return {"all scored": [(e.curve, e.fitness) for e in ok],
            "children": [(e.curve, e.fitness) for e in ok if e.stage == "surrogate"],
            "initial": [(e.curve, e.fitness) for e in ok if e.stage == "initial"]}


def table4_groups(cells: list[dict]) -> dict[str, list[tuple[list, float]]]:
    """Every run; and per loss the mean curve (same steps in every seed) vs the mean final."""
    by_loss: dict[str, list[dict]] = {}
    for c in cells:
        by_loss.setdefault(c["loss"], []).append(c)
    means = []
    for runs in by_loss.values():
        curve = [[row[0], *(sum(r["curve"][i][col] for r in runs) / len(runs)
                            for col in (1, 2)), None]
                 for i, row in enumerate(runs[0]["curve"])]
        means.append((curve, sum(r["final"] for r in runs) / len(runs)))
    return {"runs": [(c["curve"], c["final"]) for c in cells], "loss means": means}


def ceilings(run: list[Evaluated], ce_cells: list[dict], cells: list[dict],
             draws: int = 2000) -> str:
    """The τ two reruns of the same candidates would reach, given the seed noise (the standard
    deviation of cross-entropy's seeds on the same protocol; ``fidelity.rerun_tau``)."""
    import statistics

    noise = statistics.stdev(c["final"] for c in ce_cells)
    lines = [f"Seed noise: cross-entropy's {len(ce_cells)} seeds on the surrogate protocol have "
             f"a standard deviation of {100 * noise:.2f} points; Table 4's losses "
             f"{100 * pooled_std(cells):.2f} points (pooled within losses). Expected τ between "
             "two reruns of the same candidates with that noise, i.e. how far two runs agree "
             "in their ranking (the τ above compare two readings of the same run, which "
             "share its seed noise, so they can exceed these):"]
    for group, items in evolution_groups(run).items():
        values = [final for _, final in items]
        lines.append(f"- {group} (n={len(values)}, spread {100 * statistics.stdev(values):.2f} "
                     f"points): τ ≈ {fidelity.rerun_tau(values, noise, draws):.2f}")
    finals = [c["final"] for c in cells]
    lines.append(f"- Table 4 runs (n={len(finals)}): τ ≈ "
                 f"{fidelity.rerun_tau(finals, pooled_std(cells), draws):.2f}")
    return "\n".join(lines)


def pooled_std(cells: list[dict]) -> float:
    import statistics

    by_loss: dict[str, list[float]] = {}
    for c in cells:
        by_loss.setdefault(c["loss"], []).append(c["final"])
    dev = [(v - statistics.mean(vs)) ** 2 for vs in by_loss.values() for v in vs]
    return (sum(dev) / (len(dev) - len(by_loss))) ** 0.5


def tau_markdown(rows: list[dict]) -> str:
    keys = list(dict.fromkeys((r["group"], r["n"], r["column"], r["reading"]) for r in rows))
    ks = sorted({r["k"] for r in rows})
    lookup = {(r["group"], r["column"], r["reading"], r["k"]): r for r in rows}
    body = [[f"{group} (n={n})", f"{column} accuracy, {reading}"]
            + [f"{lookup[group, column, reading, k]['tau']:.2f} / "
               f"{lookup[group, column, reading, k]['rho']:.2f}" for k in ks]
            for group, n, column, reading in keys]
    return common.table(["candidates", "score at step k"] + [f"k={k}" for k in ks], body)


# --------------------------------------------------------------------------- 2. rung replay

def replay_candidates(run: list[Evaluated], order: str, column: str) -> list[rungs.Candidate]:
    """The scored candidates as ``rungs.Candidate``s on their surrogate curve (best-so-far
    ``column`` accuracy), arriving by estimated time (``order="time"``) or by told index."""
    out = []
    for e in scored(run):
        arrival = (e.time_at if order == "time" else (lambda step, e=e: float(e.told)))
        out.append(rungs.Candidate(
            e.id, lambda step, e=e: fidelity.at_step(e.curve, step, column, "best"), arrival,
            SURROGATE_STEPS))
    return out


def replay_row(run: list[Evaluated], schedule, fraction, order: str,
               column: str) -> tuple[dict, dict]:
    by_id = {e.id: e for e in run}
    stops = rungs.replay(replay_candidates(run, order, column), schedule,
                         fraction[0] / fraction[1])
    stopped = [s for s in stops.values() if s.rung is not None]
    total_steps = sum(e.steps for e in run)
    total_core_s = sum(e.wall_time_s for e in run)
    saved_s = sum(by_id[s.id].wall_time_s * s.steps_saved / by_id[s.id].steps for s in stopped)
    children = sorted((e for e in scored(run) if e.stage == "surrogate"),
                      key=lambda e: -e.fitness)
    top10 = [e.id for e in children[:10]]
    row = {"rungs": "/".join(map(str, schedule)), "fraction": f"{fraction[0]}/{fraction[1]}",
           "score": column, "order": order,
           "stopped_initial": sum(by_id[s.id].stage == "initial" for s in stopped),
           "stopped_children": sum(by_id[s.id].stage == "surrogate" for s in stopped),
           "steps_saved": sum(s.steps_saved for s in stopped),
           "steps_saved_pct": 100.0 * sum(s.steps_saved for s in stopped) / total_steps,
           "core_h_saved": saved_s / 3600, "core_h_saved_pct": 100.0 * saved_s / total_core_s,
           "lost_best": [i for i in BEST if stops[i].rung is not None],
           "top10_children_kept": sum(stops[i].rung is None for i in top10),
           "best_stopped_fitness": max((by_id[s.id].fitness for s in stopped), default=None)}
    detail = {str(s.id): s.rung for s in stops.values()}
    return row, detail


def replay_all(run: list[Evaluated]) -> tuple[list[dict], dict]:
    rows, details = [], {}
    for column in ("val", "train"):
        for schedule in SCHEDULES:
            for fraction in FRACTIONS:
                orders = ("time", "told") if (schedule, fraction) == HEADLINE else ("time",)
                for order in orders:
                    row, detail = replay_row(run, schedule, fraction, order, column)
                    rows.append(row)
                    details[replay_key(schedule, fraction, order, column)] = detail
    return rows, details


def replay_key(schedule, fraction, order: str, column: str) -> str:
    return (f"{'/'.join(map(str, schedule))} @ {fraction[0]}/{fraction[1]} by {column} "
            f"accuracy ({order})")


def replay_markdown(rows: list[dict]) -> str:
    body = [[r["rungs"], r["fraction"], r["score"], r["order"], r["stopped_initial"],
             r["stopped_children"],
             f"{r['steps_saved']:,}", f"{r['steps_saved_pct']:.1f}", f"{r['core_h_saved']:.2f}",
             f"{r['core_h_saved_pct']:.1f}", ", ".join(f"cand{i}" for i in r["lost_best"]) or "-",
             r["top10_children_kept"],
             "-" if r["best_stopped_fitness"] is None else f"{100 * r['best_stopped_fitness']:.2f}"]
            for r in rows]
    return common.table(
        ["rungs (surrogate steps)", "promote", "score", "order", "stopped initial (of 24)",
         "stopped children (of 27)", "steps saved", "% of run's steps", "core-h saved",
         "% of run's core-h", "lost of cand73/94/110", "top-10 children kept",
         "best stopped fitness (%)"], body)


def headline_markdown(run: list[Evaluated], details: dict, column: str) -> str:
    """The children the headline schedule stops, with their fitness and rank among children."""
    name = replay_key(*HEADLINE, "time", column)
    children = sorted((e for e in scored(run) if e.stage == "surrogate"), key=lambda e: -e.fitness)
    body = [[f"cand{e.id}", rank + 1, f"{100 * e.fitness:.2f}", details[name][str(e.id)],
             f"{100 * fidelity.at_step(e.curve, details[name][str(e.id)], column):.2f}",
             e.equation]
            for rank, e in enumerate(children) if details[name][str(e.id)] is not None]
    return (f"Children stopped by {name}:\n\n" + common.table(
        ["child", "fitness rank of 27", "fitness (%)", "stopped at", f"best {column} acc. (%)",
         "equation"], body))


def budget_markdown(run: list[Evaluated]) -> str:
    """Where the run's training went: the part rungs on the surrogate run can cut, the gate."""
    groups = (("initial genomes (surrogate run, no gate)", lambda e: e.stage == "initial"),
              ("gated children (gate only)", lambda e: e.status == "gated"),
              ("scored children (gate + surrogate run)",
               lambda e: e.stage == "surrogate" and e.status == "ok"))
    body = []
    for label, keep in groups:
        sel = [e for e in run if keep(e)]
        cut = sum(e.steps - e.gate_steps for e in sel if e.status == "ok")
        body.append([label, len(sel), f"{sum(e.steps for e in sel):,}", f"{cut:,}",
                     f"{sum(e.wall_time_s for e in sel) / 3600:.2f}"])
    body.append(["all", len(run), f"{sum(e.steps for e in run):,}",
                 f"{sum(e.steps - e.gate_steps for e in scored(run)):,}",
                 f"{sum(e.wall_time_s for e in run) / 3600:.2f}"])
    return common.table(["candidates", "n", "steps", "of which surrogate steps (what rungs cut)",
                         "core-h (wall time of one-core workers)"], body)


def gate_early(run: list[Evaluated], cells: list[dict], step: int = 400) -> list[dict]:
    """Best training accuracy at ``step`` and at 800 of the gate schedule: the gated children's
    gate curves and the Table 4 runs' first 800 steps (the same schedule; every one passes)."""
    rows = [{"source": f"gated cand{e.id}", "at_step": fidelity.at_step(e.curve, step, "train"),
             "at_800": fidelity.at_step(e.curve, GATE_STEPS, "train"),
             "core_s_after_step": e.wall_time_s * (GATE_STEPS - step) / GATE_STEPS}
            for e in run if e.status == "gated"]
    rows += [{"source": f"table4 {c['loss']} seed {c['seed']}",
              "at_step": fidelity.at_step(c["curve"], step, "train"),
              "at_800": fidelity.at_step(c["curve"], GATE_STEPS, "train"),
              "core_s_after_step": None} for c in cells]
    return rows


# --------------------------------------------------------------------------- output

def write_csv(path: str, rows: list[dict]) -> None:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (";".join(map(str, v)) if isinstance(v, list) else v)
                             for k, v in r.items()})


def tau_figure(path: str, evolution: list[dict], table4: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, rows, title in ((axes[0], evolution, "evolution run: 2,000-step surrogate"),
                            (axes[1], table4, "Table 4 cells: 8,000 steps")):
        groups = [g for g in dict.fromkeys(r["group"] for r in rows) if g in FIGURE_GROUPS]
        for group, marker in zip(groups, "os", strict=False):
            for column, style in (("train", "-"), ("val", "--")):
                sel = [r for r in rows if r["group"] == group and r["column"] == column
                       and r["reading"] == "best"]
                ax.plot([r["k"] for r in sel], [r["tau"] for r in sel], style, marker=marker,
                        label=f"{group} (n={sel[0]['n']}), {column} accuracy")
        ax.set_xscale("log")
        ax.set_xlabel("step k")
        ax.set_title(title)
        ax.axhline(0, color="grey", lw=0.5)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("Kendall's τ: best-so-far accuracy at k vs final fitness")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="results/cpu_evolution/run")
    p.add_argument("--cells", nargs="+",
                   default=["results/table4/cells", "results/cpu_evolution/retrain/cells"])
    p.add_argument("--ce-cells", default="results/cpu_evolution/ce_baseline/cells",
                   help="cross-entropy's seeds on the run's surrogate protocol (seed noise)")
    p.add_argument("--out", default="results/fidelity")
    p.add_argument("--data-dir", default=os.environ.get("LFE_DATA_DIR", ""))
    p.add_argument("--no-filter", action="store_true", help="skip the training-free filter")
    p.add_argument("--draws", type=int, default=2000,
                   help="Monte Carlo draws of the rerun τ (fidelity.rerun_tau)")
    args = p.parse_args(argv)
    for d in [args.run, args.ce_cells, *args.cells]:
        if not os.path.isdir(d):
            sys.exit(f"error: no such directory {d!r}")
    if not (args.no_filter or args.data_dir):
        sys.exit("error: the filter trains on CIFAR-10: set $LFE_DATA_DIR or --data-dir "
                 "(or pass --no-filter)")
    os.makedirs(args.out, exist_ok=True)
    run, cells = load_run(args.run), load_cells(args.cells)

    tau_evo = tau_rows(evolution_groups(run), KS)
    tau_t4 = tau_rows(table4_groups(cells), KS_TABLE4)
    replay, details = replay_all(run)
    gate = gate_early(run, cells)
    write_csv(os.path.join(args.out, "tau_evolution.csv"), tau_evo)
    write_csv(os.path.join(args.out, "tau_table4.csv"), tau_t4)
    write_csv(os.path.join(args.out, "replay.csv"), replay)
    write_csv(os.path.join(args.out, "gate_early.csv"), gate)
    fileio.write_json_atomic(os.path.join(args.out, "replay_stops.json"), details)
    tau_figure(os.path.join(args.out, "tau.png"), tau_evo, tau_t4)
    sections = [
        "## 1. Accuracy at step k vs final fitness (Kendall's τ-b / Spearman's ρ)",
        "### Evolution run (surrogate curves)", tau_markdown(tau_evo),
        "### Table 4 cells (8,000-step curves)", tau_markdown(tau_t4),
        "### Seed noise", ceilings(run, load_cells([args.ce_cells]), cells, args.draws),
        "## 2. Rung replay", "### The run's training budget", budget_markdown(run),
        "### Replayed schedules", replay_markdown(replay),
        headline_markdown(run, details, "val"), headline_markdown(run, details, "train"),
        f"## 3. The gate at 400 steps\n{gate_markdown(gate)}"]
    summary = {"revision": common.git_revision(), "command": common.command(),
               "candidates": len(run), "scored": len(scored(run)),
               "run_steps": sum(e.steps for e in run),
               "run_core_h": sum(e.wall_time_s for e in run) / 3600}
    if not args.no_filter:
        from bench import fidelity_filter

        summary["filter"] = fidelity_filter.run(run, args.data_dir, args.out)
        sections.append(f"## 4. Training-free filter\n{summary['filter']['markdown']}")
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(f"# Fidelity measurements (generated by `{summary['command']}`, "
                f"revision {summary['revision']})\n\n" + "\n\n".join(sections) + "\n")
    fileio.write_json_atomic(os.path.join(args.out, "summary.json"), summary)
    print("\n\n".join(sections))


def gate_markdown(rows: list[dict], thresholds=(0.2, 0.25, 0.3)) -> str:
    gated = [r for r in rows if r["source"].startswith("gated")]
    t4 = [r for r in rows if r["source"].startswith("table4")]
    body = [[t, sum(r["at_step"] < t for r in gated), sum(r["at_step"] < t for r in t4),
             f"{sum(r['at_step'] < t for r in gated) * 400:,}",
             f"{sum(r['core_s_after_step'] for r in gated if r['at_step'] < t) / 3600:.2f}"]
            for t in thresholds]
    lo = min(r["at_step"] for r in t4)
    return (f"Best training accuracy at step 400 of the gate schedule: gated children "
            f"{min(r['at_step'] for r in gated):.3f}-{max(r['at_step'] for r in gated):.3f}; "
            f"Table 4 runs {lo:.3f}-{max(r['at_step'] for r in t4):.3f} "
            f"(at 800: {min(r['at_800'] for r in t4):.3f}-{max(r['at_800'] for r in t4):.3f}). "
            "A rule 'stop the gate at 400 below t':\n\n"
            + common.table(["t", f"gated children stopped (of {len(gated)})",
                            f"Table 4 runs stopped (of {len(t4)})", "gate steps saved",
                            "core-h saved"], body))


if __name__ == "__main__":
    main()
