"""Figures 2 and 3 of the paper: normalised binary phenotypes, and their zoom near ŷ → 1;
Figure 4 (the evolution); the elimination and training curves.

The x axis is the probability ŷ given to the correct class (the phenotype's index 0 is ŷ = 1).
Curves are min–max normalised over the full range [eps, 1-eps]; the zoom reuses the full
range's normalisation so both figures show the same values. Each figure says so in a caption
(``PHENOTYPE_CAPTION``), and a loss with a genome shows its equation in the legend.

Figure 3 has two panels: the paper's linear view of ŷ in [0.99, 1], and 1 − ŷ from 1e-2 down to
1e-7 on a log scale, where what happens within 1e-5 of ŷ = 1 can be seen. A dot marks a curve's
minimum when it is not at an end. NeuroLoss 2 and 3 have theirs at ŷ ≈ 0.99998 (1 − ŷ ≈ 1.4e-5,
the value the paper reports): their ŷ/(y+ε) node is ŷ/ε on the wrong class (y = 0, ε = 1e-7), so
the wrong class's term falls from ln(1/ε) to ln(1/2ε) as its probability grows past ε; this
outweighs the correct class's own slope only within ~1e-5 of ŷ = 1. In the linear panel the
rise looks like a spike at ŷ = 1; the log panel shows it is a smooth valley (``ZOOM_NOTE``).
"""

from __future__ import annotations

import os
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from lfe.core import equation, integrity  # noqa: E402
from lfe.core.ops import EPS  # noqa: E402
from lfe.training.losses import LossDef  # noqa: E402

ZOOM_FROM = 0.99  # Figure 3 shows ŷ in [ZOOM_FROM, 1]
PHENOTYPE_CAPTION = (
    "Binary phenotype: the loss summed over two classes for the target (1, 0) and the "
    "prediction (ŷ, 1 − ŷ), as the correct class's probability ŷ goes from ε to 1 − ε "
    "(ε = 1e-7). Normalised loss: each curve scaled to [0, 1] by its minimum and maximum over "
    "that range.")
ZOOM_NOTE = (
    "Same scaling as Figure 2. A dot marks a minimum short of ŷ = 1. Within 1e-4 of 1 it comes "
    "from an ε guard: in the paper's NeuroLosses ŷ/(y+ε), which is ŷ/ε on the wrong class "
    "(y = 0); their minimum is at ŷ ≈ 0.99998, as the paper notes, and the rise at ŷ = 1 on the "
    "left is the valley on the right.")
EVOLUTION_NOTE = (
    "Validation accuracy of the population after each iteration (0: the initial population). "
    "Regularized evolution removes the oldest member whatever its fitness, so the population "
    "best can fall; the best so far cannot.")
LEGEND_WIDTH = 64  # characters per legend line
MIN_DEPTH = 1e-5  # a marked minimum lies this far (normalised) below both ends of the zoom


def normalised_phenotype(loss: LossDef, p: np.ndarray | None = None) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """``(yhat_correct, curve)``: the oriented loss's phenotype, normalised on the full range."""
    full = integrity.phenotype_of(loss.term)
    lo, hi = float(np.min(full)), float(np.max(full))
    span = hi - lo if hi - lo >= integrity.FLAT_RANGE else 1.0
    if p is None:
        p = np.linspace(EPS, 1.0 - EPS, integrity.N_POINTS)
        curve = full
    else:
        curve = integrity.phenotype_of(loss.term, p=p)
    return 1.0 - p, (curve - lo) / span


def minimum_location(loss: LossDef) -> float:
    """ŷ of the correct class at the global minimum of ``loss``'s binary phenotype (oriented as
    trained), in float32 as training computes it, on a grid of the wrong class's probability p
    log-spaced from 1e-12 to 1e-3 (1-p rounds to 1 below 6e-8) then linear to 1-eps. Near a
    shallow minimum float32 leaves the location uncertain by a few 1e-6 (flat steps)."""
    p = np.concatenate([np.geomspace(1e-12, 1e-3, 4000, endpoint=False),
                        np.linspace(1e-3, 1.0 - EPS, 4000)])
    curve = integrity.phenotype_of(loss.term, p=p)
    return float(np.float32(1.0 - p[int(np.argmin(curve))]))


def legend_label(loss: LossDef, extra: str = "") -> str:
    """``name: equation`` (shared nodes named once) for a loss with a genome, else its name;
    ``extra`` appended; wrapped to ``LEGEND_WIDTH`` characters a line."""
    text = loss.name
    if loss.genome is not None:
        text += ": " + equation.text(loss.genome, loss.sign, style="let")
    return "\n".join(textwrap.wrap(text + extra, LEGEND_WIDTH, subsequent_indent="    "))


def interior_minimum(curve: np.ndarray, depth: float = MIN_DEPTH) -> int | None:
    """The index of a normalised ``curve``'s minimum when it lies at least ``depth`` below both
    ends (a float32 ripple on a curve falling to its end is not one), else None."""
    i = int(np.argmin(curve))
    return i if curve[i] < min(curve[0], curve[-1]) - depth else None


def plot_phenotypes(losses: list[LossDef], path: str, *, zoom: bool = False,
                    title: str | None = None) -> str:
    """Writes Figure 2 (``zoom=False``) or Figure 3 (``zoom=True``, module docstring) for
    ``losses`` as a PNG, with the caption that explains its axes."""
    if not zoom:
        fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
        for loss in losses:
            ax.plot(*normalised_phenotype(loss), label=legend_label(loss), linewidth=1.6)
        _axes(ax, r"$\hat{y}$ of the correct class")
        ax.set_title(title or "Binary phenotypes")
        return _finish(fig, [ax], path, legend=bool(losses), note=PHENOTYPE_CAPTION, below=True)
    p = np.geomspace(EPS, 1.0 - ZOOM_FROM, 2000)
    fig, (lin, log) = plt.subplots(1, 2, figsize=(10.0, 4.4), dpi=120)
    for loss in losses:
        x, curve = normalised_phenotype(loss, p)
        at = interior_minimum(curve)
        extra = "" if at is None else f" (min at ŷ = 1 − {p[at]:.1e})"
        line, = lin.plot(x, curve, label=legend_label(loss, extra), linewidth=1.6)
        log.plot(p, curve, linewidth=1.6, color=line.get_color())
        if at is not None:
            lin.plot(x[at], curve[at], "o", color=line.get_color(), markersize=4)
            log.plot(p[at], curve[at], "o", color=line.get_color(), markersize=4)
    _axes(lin, r"$\hat{y}$ of the correct class")
    lin.set_xlim(ZOOM_FROM, 1.0)
    lin.set_title(r"near $\hat{y}\to 1$")
    _axes(log, r"$1-\hat{y}$ (log scale; $\hat{y}\to 1$ at the right)")
    log.set_xscale("log")
    log.set_xlim(1.0 - ZOOM_FROM, EPS)
    log.set_title(r"the last $10^{-2}$, down to $1-\hat{y}=\epsilon$")
    fig.suptitle(title or r"Binary phenotypes near $\hat{y}\to 1$")
    return _finish(fig, [lin, log], path, legend=bool(losses),
                   note=PHENOTYPE_CAPTION + " " + ZOOM_NOTE, below=True)


def _axes(ax, xlabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel("normalised loss")


def _finish(fig, axes, path: str, *, legend: bool, note: str = "", below: bool = False) -> str:
    """Grids, the legend (inside the first axes, or under the axes with ``below``), ``note``
    under everything, and the figure saved as ``path`` with all of it included."""
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    extra = []
    if legend and below:
        extra.append(fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center",
                                bbox_to_anchor=(0.5, 0.0), fontsize=7, frameon=False))
    elif legend:
        axes[0].legend(fontsize=8)
    if note:
        top = 0.0
        if extra:  # under the legend: its height is known once drawn
            fig.canvas.draw()
            top = extra[0].get_window_extent().transformed(fig.transFigure.inverted()).y0
        extra.append(fig.text(0.01, top - 0.01, textwrap.fill(note, int(19 * fig.get_figwidth())),
                              fontsize=7, va="top", ha="left", color="0.3"))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, bbox_inches="tight", bbox_extra_artists=extra, pad_inches=0.15)
    plt.close(fig)
    return path


def write_figures(losses: list[LossDef], directory: str, prefix: str = "") -> list[str]:
    """Figures 2 and 3 as ``<prefix>phenotypes.png`` and ``<prefix>phenotypes_zoom.png``."""
    return [plot_phenotypes(losses, os.path.join(directory, f"{prefix}phenotypes.png")),
            plot_phenotypes(losses, os.path.join(directory, f"{prefix}phenotypes_zoom.png"),
                            zoom=True)]


def plot_evolution(rows: list[dict], path: str, *,
                   ce_band: tuple[float, float, float] | None = None) -> str:
    """Figure 4: the population's best / mean / median fitness after each iteration, and the
    best so far (their running maximum; ``EVOLUTION_NOTE`` says why the two differ).

    ``rows``: dicts with ``iteration``, ``best``, ``mean``, ``median`` (validation accuracy in
    [0, 1]); ``ce_band``: cross-entropy's (max, mean, min) on the same protocol, drawn as lines.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    if rows:
        it = [r["iteration"] for r in rows]
        for key, style in (("best", "-"), ("mean", "--"), ("median", ":")):
            ax.plot(it, [100 * r[key] for r in rows], style, label=f"population {key}",
                    linewidth=1.6)
        ax.plot(it, 100 * np.maximum.accumulate([r["best"] for r in rows]), color="tab:red",
                linestyle=(0, (4, 2)), linewidth=1.0, zorder=1, label="best so far")
        _scatter_rungs(ax, rows)
    else:
        ax.text(0.5, 0.5, "no iteration yet: the population forms\nonce the initial genomes "
                "are evaluated", transform=ax.transAxes, ha="center", va="center", color="0.4")
    if ce_band is not None:
        for value, name in zip(ce_band, ("CE max", "CE mean", "CE min"), strict=True):
            ax.axhline(100 * value, color="grey", linewidth=1.0,
                       linestyle="-" if name == "CE mean" else "--", label=name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Regularized evolution")
    return _finish(fig, [ax], path, legend=bool(rows) or ce_band is not None,
                   note=EVOLUTION_NOTE)


def _scatter_rungs(ax, rows: list[dict]) -> None:
    """A run with rungs (``lfe.core.rungs``): each iteration's child at its fitness, marked by
    the rung it stopped at (its fitness there: fewer steps) or as trained in full."""
    kids = [r for r in rows if "child_fitness" in r]
    if not kids:
        return
    groups: dict = {}
    for r in kids:
        groups.setdefault(r["child_rung"], []).append(r)
    markers = "v^<>sd"
    for rung in sorted(groups, key=lambda k: (k is None, k or 0)):
        points = groups[rung]
        label = ("child trained in full" if rung is None else f"child stopped at rung {rung + 1}")
        ax.scatter([r["iteration"] for r in points], [100 * r["child_fitness"] for r in points],
                   s=14, marker="o" if rung is None else markers[rung % len(markers)],
                   alpha=0.7, label=label, zorder=3)


def plot_elimination(stages: list[dict], path: str) -> str:
    """The elimination protocol: each loss's validation accuracy per stage it was trained in.

    ``stages``: ``elimination.json``'s stages (``ranking`` rows with ``loss`` and ``score``;
    ``references`` drawn dashed). A line ends at the stage where the loss was eliminated.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    lines: dict[tuple[str, bool], list[tuple[int, float]]] = {}
    for s in stages:
        for ref, rows in ((False, s["ranking"]), (True, s.get("references", []))):
            for r in rows:
                if r["score"] >= 0:
                    lines.setdefault((r["loss"], ref), []).append((s["stage"], 100 * r["score"]))
    last = stages[-1]["stage"] if stages else 0
    for (name, ref), points in lines.items():
        xs, ys = zip(*points, strict=True)
        finalist = xs[-1] == last
        ax.plot(xs, ys, "--" if ref else "-", marker="o", markersize=3,
                linewidth=1.4 if finalist or ref else 0.6, alpha=1.0 if finalist or ref else 0.4,
                color="grey" if ref else None, label=name if finalist or ref else None)
    ax.set_xticks([s["stage"] for s in stages])
    ax.set_xlabel("stage (trained on phases 1..k)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Loss function elimination protocol")
    return _finish(fig, [ax], path, legend=any(lines))


def plot_curves(records: list[dict], path: str, *, title: str = "Validation accuracy") -> str:
    """Validation accuracy over training steps per loss: the mean over a loss's runs, with a
    band from the lowest to the highest run (``records``: cells with ``loss`` and ``curve`` rows
    ``(step, train_acc, val_acc, loss)``; runs without validation are skipped)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    runs: dict[str, list[dict[int, float]]] = {}
    for r in records:
        points = {int(row[0]): 100 * row[2] for row in r.get("curve", []) if row[2] is not None}
        if points:
            runs.setdefault(r["loss"], []).append(points)
    for name, curves in runs.items():
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        values = np.array([[c[s] for s in steps] for c in curves])
        line, = ax.plot(steps, values.mean(0), linewidth=1.4, label=f"{name} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(steps, values.min(0), values.max(0), alpha=0.15,
                            color=line.get_color(), linewidth=0)
    ax.set_xlabel("step")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title)
    return _finish(fig, [ax], path, legend=bool(runs))
