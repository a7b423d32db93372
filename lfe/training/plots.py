"""Figures 2 and 3 of the paper: normalised binary phenotypes, and their zoom near ŷ → 1.

The x axis is the probability ŷ given to the correct class (the phenotype's index 0 is ŷ = 1).
Curves are min–max normalised over the full range [eps, 1-eps]; the zoom reuses the full
range's normalisation so both figures show the same values.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lfe.core import integrity  # noqa: E402
from lfe.core.ops import EPS  # noqa: E402
from lfe.training.losses import LossDef  # noqa: E402

ZOOM_FROM = 0.99  # Figure 3 shows ŷ in [ZOOM_FROM, 1]


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


def plot_phenotypes(losses: list[LossDef], path: str, *, zoom: bool = False,
                    title: str | None = None) -> str:
    """Writes Figure 2 (``zoom=False``) or Figure 3 (``zoom=True``) for ``losses`` as a PNG."""
    p = np.geomspace(EPS, 1.0 - ZOOM_FROM, 2000) if zoom else None
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for loss in losses:
        x, curve = normalised_phenotype(loss, p)
        ax.plot(x, curve, label=loss.name, linewidth=1.6)
    ax.set_xlabel(r"$\hat{y}$ of the correct class")
    ax.set_ylabel("normalised loss")
    if zoom:
        ax.set_xlim(ZOOM_FROM, 1.0)
    ax.set_title(title or ("Binary phenotypes near $\\hat{y}\\to 1$" if zoom
                           else "Binary phenotypes"))
    return _finish(fig, ax, path, legend=bool(losses))


def _finish(fig, ax, path: str, *, legend: bool) -> str:
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_figures(losses: list[LossDef], directory: str, prefix: str = "") -> list[str]:
    """Figures 2 and 3 as ``<prefix>phenotypes.png`` and ``<prefix>phenotypes_zoom.png``."""
    return [plot_phenotypes(losses, os.path.join(directory, f"{prefix}phenotypes.png")),
            plot_phenotypes(losses, os.path.join(directory, f"{prefix}phenotypes_zoom.png"),
                            zoom=True)]


def plot_evolution(rows: list[dict], path: str, *,
                   ce_band: tuple[float, float, float] | None = None) -> str:
    """Figure 4: the population's best / mean / median fitness over iterations.

    ``rows``: dicts with ``iteration``, ``best``, ``mean``, ``median`` (validation accuracy in
    [0, 1]); ``ce_band``: cross-entropy's (max, mean, min) on the same protocol, drawn as lines.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    if rows:
        it = [r["iteration"] for r in rows]
        for key, style in (("best", "-"), ("mean", "--"), ("median", ":")):
            ax.plot(it, [100 * r[key] for r in rows], style, label=key, linewidth=1.6)
    if ce_band is not None:
        for value, name in zip(ce_band, ("CE max", "CE mean", "CE min"), strict=True):
            ax.axhline(100 * value, color="grey", linewidth=1.0,
                       linestyle="-" if name == "CE mean" else "--", label=name)
    ax.set_xlabel("iteration")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Regularized evolution")
    return _finish(fig, ax, path, legend=bool(rows) or ce_band is not None)


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
    return _finish(fig, ax, path, legend=any(lines))


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
    return _finish(fig, ax, path, legend=bool(runs))
