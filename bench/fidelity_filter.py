"""The training-free loss filter on a run's candidates and the library (``bench.fidelity``).

Every candidate of the run and every library loss goes through the probes of
``lfe.training.loss_rejection`` on real CIFAR-10 (``$LFE_DATA_DIR`` or ``--data-dir``), and its
gradient signature is compared with the others'. The probes, their settings, the primary score
and the threshold were fixed before any candidate was scored, looking only at cross-entropy:

- ``logits``: free logits of the first 1,000 training images' labels, Adam 0.05, 100 steps;
- ``linear``: a linear classifier on 2x2-pooled standardised pixels (768 features) of the first
  2,000 training images, scored on the first 1,000 validation images, Adam 0.001, 200 steps.

Primary: ``linear`` probe, ``mean`` accuracy over its steps; a loss passes when it reaches at
least 0.9 x cross-entropy's (``loss_rejection.passes``).
"""

from __future__ import annotations

import os
import statistics
import time

from bench import common
from lfe.core import fidelity
from lfe.core import genome as genome_lib

PRIMARY = ("linear", "mean")
RATIO = 0.9
TRAIN, EVAL, LABELS = 2000, 1000, 1000


def probes(data_dir: str) -> dict:
    from lfe.training import data
    from lfe.training import loss_rejection as lr

    ds = data.load("cifar10", data_dir=data_dir or None)
    x_train, x_eval = lr.image_features(ds.train_images[:TRAIN], ds.val_images[:EVAL], pool=2)
    return {
        "logits": (lr.free_logits(ds.train_labels[:LABELS], ds.num_classes),
                   lr.Settings(steps=100, learning_rate=0.05)),
        "linear": (lr.linear(x_train, ds.train_labels[:TRAIN], x_eval, ds.val_labels[:EVAL],
                             ds.num_classes), lr.Settings(steps=200, learning_rate=0.001)),
    }


def candidates(run) -> list[tuple[str, object, object]]:
    """(name, loss, evaluated record or None): the library, then the run's candidates."""
    from lfe.training import losses

    out = [(name, losses.get(name), None) for name in losses.available()]
    out += [(f"cand{e.id}", losses.from_genome(genome_lib.from_dict(e.genome), e.sign,
                                               name=f"cand{e.id}"), e) for e in run]
    return out


def score_all(run, data_dir: str) -> tuple[list[dict], dict]:
    """One row per loss (probe metrics, seconds, gradient group) and the timing."""
    from lfe.training import loss_rejection as lr

    rows, first, later, signatures = [], {}, {}, []
    problems = probes(data_dir)
    for name, loss, e in candidates(run):
        row = {"loss": name, "kind": "library" if e is None else e.stage,
               "status": "library" if e is None else e.status,
               "fitness": None if e is None else e.fitness,
               "gate_accuracy": None if e is None else e.gate_accuracy, "gradient_group": ""}
        total = 0.0
        for probe, (problem, settings) in problems.items():
            t0 = time.perf_counter()
            score = lr.fit(loss, problem, settings)
            dt = time.perf_counter() - t0
            key = (probe, type(lr.as_program(loss)[0]).__name__)
            (later if key in first else first).setdefault(key, []).append(dt)
            total += dt
            row.update({f"{probe}_{m}": score.metric(m) for m in lr.METRICS})
            row[f"{probe}_finite"] = score.finite
        t0 = time.perf_counter()
        signatures.append(lr.gradient_signature(loss))
        row["seconds"] = total + time.perf_counter() - t0
        rows.append(row)
    groups = lr.equivalence_groups(signatures)
    for g, members in enumerate(groups):
        for i in members:
            rows[i]["gradient_group"] = g + 1
    timing = {"first_call_s": {f"{p} {k}": round(v[0], 2) for (p, k), v in first.items()},
              "median_later_s": {f"{p} {k}": round(statistics.median(v), 3)
                                 for (p, k), v in later.items()},
              "groups": [[rows[i]["loss"] for i in g] for g in groups]}
    return rows, timing


def summarize(rows: list[dict]) -> tuple[list[dict], dict]:
    """Per probe and metric: AUC (scored vs gated children), τ with the gate accuracy (all
    children), τ with fitness (scored children; all scored); the primary's decisions."""
    from lfe.training import loss_rejection as lr

    ce = next(r for r in rows if r["loss"] == "cross_entropy")
    children = [r for r in rows if r["kind"] == "surrogate"]
    ok_children = [r for r in children if r["status"] == "ok"]
    ok_all = [r for r in rows if r["status"] == "ok"]
    table = []
    for probe in ("logits", "linear"):
        for m in lr.METRICS:
            col = f"{probe}_{m}"
            t_gate = fidelity.correlations([r[col] for r in children],
                                           [r["gate_accuracy"] for r in children])
            t_kids = fidelity.correlations([r[col] for r in ok_children],
                                           [r["fitness"] for r in ok_children])
            t_all = fidelity.correlations([r[col] for r in ok_all],
                                          [r["fitness"] for r in ok_all])
            table.append({"probe": probe, "metric": m, "ce": ce[col],
                          "auc_children": fidelity.auc(
                              [r[col] for r in ok_children],
                              [r[col] for r in children if r["status"] == "gated"]),
                          "tau_gate_accuracy": t_gate.tau, "tau_fitness_children": t_kids.tau,
                          "tau_fitness_children_p": t_kids.tau_p,
                          "tau_fitness_all_scored": t_all.tau})
    col = "_".join(PRIMARY)
    threshold = RATIO * ce[col]
    for r in rows:
        r["passes"] = bool(r[f"{PRIMARY[0]}_finite"]) and r[col] >= threshold
    decisions = {
        "threshold": threshold,
        "children": fidelity.confusion([r["passes"] for r in children],
                                       [r["status"] == "ok" for r in children]),
        "initial_rejected": [r["loss"] for r in rows if r["kind"] == "initial"
                             and not r["passes"]],
        "library_rejected": [r["loss"] for r in rows if r["kind"] == "library"
                             and not r["passes"]],
        "best_rejected": [name for name in ("cand73", "cand94", "cand110")
                          if not next(r for r in rows if r["loss"] == name)["passes"]]}
    return table, decisions


def markdown(table: list[dict], decisions: dict, timing: dict, rows: list[dict]) -> str:
    body = [[t["probe"], t["metric"], f"{t['ce']:.3f}", f"{t['auc_children']:.2f}",
             f"{t['tau_gate_accuracy']:.2f}", f"{t['tau_fitness_children']:.2f} "
             f"(p={t['tau_fitness_children_p']:.2f})", f"{t['tau_fitness_all_scored']:.2f}"]
            for t in table]
    c = decisions["children"]
    seconds = [r["seconds"] for r in rows if r["kind"] != "library"]
    return "\n\n".join([
        common.table(["probe", "metric", "cross-entropy", "AUC scored vs gated children",
                      "τ with gate accuracy (90 children)", "τ with fitness (27 children)",
                      "τ with fitness (51 scored)"], body),
        f"Primary ({PRIMARY[0]} probe, {PRIMARY[1]} accuracy), pass at >= {RATIO} x "
        f"cross-entropy's = {decisions['threshold']:.3f}:",
        common.table(["children", "passes", "rejected"],
                      [["scored (27)", c["pass_good"], c["reject_good"]],
                       ["gated (63)", c["pass_bad"], c["reject_bad"]]]),
        f"Rejected initial genomes: {', '.join(decisions['initial_rejected']) or 'none'}; "
        f"rejected library losses: {', '.join(decisions['library_rejected']) or 'none'}; "
        f"rejected of cand73/94/110: {', '.join(decisions['best_rejected']) or 'none'}.",
        f"Cost: median {statistics.median(seconds):.2f} s per candidate (both probes and the "
        f"gradient signature; max {max(seconds):.2f} s), after one compilation per probe "
        f"(first calls: {timing['first_call_s']}). Gradient-equivalent groups: "
        f"{timing['groups'] or 'none'}."])


def figure(path: str, rows: list[dict], threshold: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    col = "_".join(PRIMARY)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for status, color in (("gated", "tab:red"), ("ok", "tab:blue")):
        sel = [r for r in rows if r["kind"] == "surrogate" and r["status"] == status]
        axes[0].scatter([r[col] for r in sel], [r["gate_accuracy"] for r in sel], s=14,
                        color=color, label=f"{status} children ({len(sel)})")
    axes[0].axhline(0.37, color="grey", lw=0.8, ls=":", label="gate threshold 0.37")
    axes[0].set_ylabel("gate: best training accuracy at 800 steps")
    for kind, color in (("initial", "tab:grey"), ("surrogate", "tab:blue")):
        sel = [r for r in rows if r["kind"] == kind and r["status"] == "ok"]
        axes[1].scatter([r[col] for r in sel], [100 * r["fitness"] for r in sel], s=14,
                        color=color, label=f"{'initial' if kind == 'initial' else 'children'}"
                                           f" ({len(sel)})")
    axes[1].set_ylabel("fitness: best validation accuracy (%), 2,000 steps")
    for ax in axes:
        ax.axvline(threshold, color="k", lw=0.8, ls="--", label="filter threshold")
        ax.set_xlabel(f"filter score: {PRIMARY[0]} probe, {PRIMARY[1]} accuracy")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(run, data_dir: str, out: str) -> dict:
    """Scores, tables and figure into ``out``; returns the summary (with ``markdown``)."""
    from bench.fidelity import write_csv

    rows, timing = score_all(run, data_dir)
    table, decisions = summarize(rows)
    write_csv(os.path.join(out, "filter_scores.csv"), rows)
    write_csv(os.path.join(out, "filter_summary.csv"), table)
    figure(os.path.join(out, "filter.png"), rows, decisions["threshold"])
    return {"table": table, "decisions": decisions, "timing": timing,
            "markdown": markdown(table, decisions, timing, rows)}
