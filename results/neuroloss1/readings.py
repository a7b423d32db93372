"""Readings of Table 5's NeuroLoss1 that the search space can express, judged by their phenotypes.

    python -m results.neuroloss1.readings      # from the repository root; about a minute

Writes next to this file: ``readings.md`` (the table of README.md), ``readings/<key>.json`` (each
reading as a loss file for ``--config.losses=``), ``space.json`` (every single-node second term),
``phenotypes.png`` / ``phenotypes_zoom.png`` (Figures 2-3 for the close readings),
``rejected.png`` (the same for the printed formula and the readings that fail) and
``near_one.png`` (each curve minus NeuroLoss2's, and the minimum, against 1 - ŷ).
No training.
"""

from __future__ import annotations

import itertools
import json
import os

import matplotlib.pyplot as plt
import numpy as np

from lfe.core import equation, integrity, ops
from lfe.core import genome as genome_lib
from lfe.training import losses, plots

HERE = os.path.dirname(os.path.abspath(__file__))
# Every reading shares NL2/NL3's first term: h0 = ŷ/(y+ε), h1 = ŷ/sqrt(1+h0²), h2 = ln(|h1|+ε),
# root = h2 + T (negated), so T is one more node h3 or a node already there.
SHARED = [("div", ["yhat", "y"]), ("div_sqrt", ["yhat", "h0"]), ("ln", ["h1"])]
READINGS = {  # key -> (T as a node, the node T is, label, how Table 5's ŷ·sqrt(1+h0²) came from it)
    "A": (("neg", ["h0"]), "h1", "A: T = h1",
          "h1 = ŷ/sqrt(1+h0²): the printed fraction lost its \\frac (ŷ·√ for ŷ/√)"),
    "B": (("mul", ["yhat", "h1"]), "h3", "B: T = ŷ·h1",
          "ŷ·h1 = ŷ²/sqrt(1+h0²): ŷ·(ŷ/√…) with 'ŷ/' lost"),
    "C": (("div", ["yhat", "h1"]), "h3", "C: T = ŷ/(h1+ε)",
          "ŷ/(h1+ε) ≈ sqrt(1+h0²): ŷ/(ŷ/√…) read as ŷ·√…"),
    "D": (("mul", ["yhat", "h0"]), "h3", "D: T = ŷ·h0",
          "ŷ·h0 = ŷ²/(y+ε): the printed term where y = 0 (√(1+h0²) ≈ h0 = 1e7·ŷ)"),
    "E": (("div_sqrt", ["yhat", "h1"]), "h3", "E: T = ŷ/√(1+h1²)",
          "ŷ/sqrt(1+h1²): the one op printed with a √"),
    "F": (("mul", ["h0", "h1"]), "h3", "F: T = h0·h1", "h0·h1 = ŷ/(y+ε)·ŷ/sqrt(1+h0²)"),
    "G": (("reciprocal", ["h1"]), "h3", "G: T = 1/(h1+ε)", "1/(h1+ε) = sqrt(1+h0²)/ŷ"),
}
ZOOM = np.linspace(1e-7, 0.01, 2000)  # p = 1 - ŷ over Figure 3's ŷ in [0.99, 1], linear


def reading_genome(key: str) -> genome_lib.Genome:
    node, term, _, _ = READINGS[key]
    return genome_lib.make(SHARED + [node, ("add", ["h2", term])])


def judge(loss: losses.LossDef, nl2: losses.LossDef, ce: losses.LossDef) -> dict:
    """The evidence of Figures 2-3 and §4.5 for one oriented loss, against NeuroLoss2 and CE."""
    x, curve = plots.normalised_phenotype(loss)
    _, base = plots.normalised_phenotype(nl2)
    _, ce_curve = plots.normalised_phenotype(ce)
    low, high, small = x < 0.4, x > 0.9, x < 0.1
    _, near = plots.normalised_phenotype(loss, ZOOM)
    _, near2 = plots.normalised_phenotype(nl2, ZOOM)
    _, near_ce = plots.normalised_phenotype(ce, ZOOM)
    return {"minimum_yhat": plots.minimum_location(loss),
            "rms_vs_nl2": float(np.sqrt(np.mean((curve - base) ** 2))),
            "max_diff_small_yhat": float(np.abs(curve - base)[small].max()),
            "max_diff_large_yhat": float(np.abs(curve - base)[high].max()),
            "nl2_above_below_0.4": float(np.mean(base[low] >= curve[low])),
            "above_ce": float(np.mean(curve[1:-1] >= ce_curve[1:-1])),
            "nl2_below_in_zoom": float(np.mean(near2 < near)),
            "ce_below_in_zoom": float(np.mean(near_ce < near)),
            }


def space(nl2: losses.LossDef, ce: losses.LossDef) -> dict:
    """Every second term T that is one node over the inputs and h0-h2 (or h0, h1 themselves)."""
    opset, args = ops.get_op_set("paper"), ["y", "yhat", "one", "minus_one", "h0", "h1", "h2"]
    cells = [SHARED + [("neg", ["h0"]), ("add", ["h2", t])] for t in ("h0", "h1")]
    for op in opset.ops:
        pairs = ([[a] for a in args] if op.arity == 1
                 else [list(p) for p in itertools.permutations(args, 2)])
        cells += [SHARED + [(op.name, p), ("add", ["h2", "h3"])] for p in pairs]
    genomes = [genome_lib.make(c) for c in cells]
    verdicts = integrity.check_batch(genomes, integrity.Archive())
    accepted = [(g, v) for g, v in zip(genomes, verdicts, strict=True) if v.ok]
    rows = []
    for g, v in accepted:
        j = judge(losses.from_genome(g, v.sign), nl2, ce)
        rows.append({"equation": equation.text(g, v.sign), **j})
    # §4.5's 0.99998, within what float32 resolves there (NL2 0.999985, NL3 0.999986)
    near_paper = [r for r in rows if 0.99996 <= r["minimum_yhat"] < 0.999995]
    hug = [r for r in near_paper if r["max_diff_large_yhat"] < 0.01
           and r["max_diff_small_yhat"] < 0.05 and r["nl2_above_below_0.4"] == 1.0]
    return {"second_terms": len(cells), "accepted": len(accepted),
            "minimum_near_0.99998": len(near_paper),
            "and_hugging_nl2_below_it_under_0.4": len(hug),
            "and_above_ce_mostly": sum(r["above_ce"] > 0.5 for r in hug),
            "and_nl2_below_it_in_zoom": [r["equation"] for r in hug if r["above_ce"] > 0.5
                                         and r["nl2_below_in_zoom"] > 0.5],
            "accepted_terms": rows}


def near_one_figure(named: dict[str, losses.LossDef], nl2: losses.LossDef, path: str) -> None:
    p = np.geomspace(1e-8, 1e-2, 600)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 7.2), dpi=120, sharex=True)
    _, base = plots.normalised_phenotype(nl2, p)
    for name, loss in named.items():
        _, curve = plots.normalised_phenotype(loss, p)
        top.plot(p, curve - base, label=name, linewidth=1.4)
        raw = integrity.phenotype_of(loss.term, p=p).astype(np.float64)
        bottom.plot(p, raw - raw.min(), label=name, linewidth=1.4)
    top.axhline(0.0, color="grey", linewidth=0.8)
    top.set_yscale("symlog", linthresh=1e-5)
    top.set_ylabel("normalised loss − NeuroLoss2's")
    top.set_title("Near ŷ → 1 (Figure 3's region), log scale in 1 − ŷ")
    bottom.axvline(2e-5, color="grey", linestyle="--", linewidth=0.8, label="ŷ = 0.99998")
    bottom.set_yscale("symlog", linthresh=1e-6)
    bottom.set_ylim(0.0, None)
    bottom.set_ylabel("loss − its minimum (float32)")
    bottom.set_xlabel("1 − ŷ of the correct class")
    for ax in (top, bottom):
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    nl2, nl3, ce = (losses.get(n) for n in ("neuroloss2", "neuroloss3", "cross_entropy"))
    printed = losses.get("neuroloss1_printed")
    os.makedirs(os.path.join(HERE, "readings"), exist_ok=True)
    named, lines = {}, []
    for key, (_, _, label, how) in READINGS.items():
        g = reading_genome(key)
        v = integrity.check_batch([g], integrity.Archive())[0]
        row = {"key": key, "how": how, "verdict": v.reason, "sign": v.sign,
               "equation": equation.text(g, v.sign)}
        if v.ok:
            named[key] = loss = losses.from_genome(g, v.sign, name=label)
            row |= judge(loss, nl2, ce)
            with open(os.path.join(HERE, "readings", f"{key}.json"), "w") as f:
                json.dump({"name": f"neuroloss1_reading_{key}", "sign": v.sign,
                           "genome": genome_lib.to_dict(g), "equation": row["equation"]}, f,
                          indent=1)
        lines.append(row)
    lines.append({"key": "printed", "how": "Table 5 as printed (not one op: needs 5 nodes)",
                  "verdict": "-", "sign": printed.sign, "equation": printed.formula,
                  **judge(printed, nl2, ce)})
    for ref in (nl3, ce):
        lines.append({"key": ref.name, "how": "reference", "verdict": "ok", "sign": ref.sign,
                      "equation": ref.formula, **judge(ref, nl2, ce)})
    with open(os.path.join(HERE, "readings.md"), "w") as f:
        f.write("| reading | second term T | check | min at ŷ | RMS vs NL2 | max Δ ŷ<0.1 | "
                "max Δ ŷ>0.9 | NL2 above it (ŷ<0.4) | above CE | NL2 below it (ŷ≥0.99) | "
                "CE below it (ŷ≥0.99) |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
        for r in lines:
            if "minimum_yhat" not in r:
                f.write(f"| {r['key']} | {r['how']} | {r['verdict']} |" + " - |" * 8 + "\n")
                continue
            f.write(f"| {r['key']} | {r['how']} | {r['verdict']} | {r['minimum_yhat']:.6f} | "
                    f"{r['rms_vs_nl2']:.4f} | {r['max_diff_small_yhat']:.4f} | "
                    f"{r['max_diff_large_yhat']:.4f} | {r['nl2_above_below_0.4']:.2f} | "
                    f"{r['above_ce']:.2f} | {r['nl2_below_in_zoom']:.2f} | "
                    f"{r['ce_below_in_zoom']:.2f} |\n")
    with open(os.path.join(HERE, "space.json"), "w") as f:
        json.dump(space(nl2, ce), f, indent=1)
    close = [ce, nl2, nl3] + [named[k] for k in "ABEF"]
    plots.write_figures(close, HERE)
    far = [ce, nl2, printed] + [named[k] for k in "CD"]
    plots.plot_phenotypes(far, os.path.join(HERE, "rejected.png"),
                          title="Binary phenotypes: the printed NL1 and readings that fail")
    near_one_figure({"cross_entropy": ce, "neuroloss3": nl3,
                     **{named[k].name: named[k] for k in "ABEF"}}, nl2,
                    os.path.join(HERE, "near_one.png"))
    for r in lines:
        print({k: v for k, v in r.items() if k != "equation"})


if __name__ == "__main__":
    main()
