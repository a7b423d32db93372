"""``mode: report`` — a run directory's tables (``lfe.experiments.tables``) and figures.

Tables are built from recorded cells only (``lfe.experiments.cells``), so a report can be
(re)made at any time from a run directory: the paper's table layouts for compare, eliminate and
transfer runs, Figure 4 from an evolution's state and Figures 2–3 for its best genomes and the
elimination's finalists.

``run(config, workdir)`` turns a finished run directory (evolve, eliminate, transfer, compare
or a whole pipeline) into ``<workdir>/report/``.
"""

from __future__ import annotations

import os

import ml_collections

from lfe.core import fileio
from lfe.experiments import cells, defaults, tables
from lfe.training import plots


def _evolution_report(source: str, out: str, name: str) -> list[str]:
    """Figure 4, Figures 2–3 of the 3 best genomes, and the best genomes' table."""
    from lfe.core import evolution, rundir
    from lfe.core import genome as genome_lib
    from lfe.core.state import State
    from lfe.training import losses as losses_lib

    saved = rundir.load_state(source)
    if saved is None:
        return []
    state = State.from_dict(saved)
    config = fileio.read_json(os.path.join(source, "config.json"))
    band = tuple(config.get("ce_band") or ()) or None
    files = [plots.plot_evolution(evolution.history(state),
                                  os.path.join(out, f"{name}_figure4.png"), ce_band=band)]
    top = evolution.best(state, int(config.get("top_k") or 10))
    chosen = [losses_lib.get(tables.BASELINE)] + [
        losses_lib.from_genome(genome_lib.from_dict(b["genome"]), b["sign"],
                               name=f"cand{b['id']} ({100 * b['fitness']:.1f}%)")
        for b in top[:3]]
    files += plots.write_figures(chosen, out, prefix=f"{name}_best_")
    summary = evolution.summary(state)
    rung = "rung_arrivals" in summary  # a run with rungs: where each scored candidate stopped
    steps = list(config.get("rungs") or ())

    def stage(b: dict) -> str:
        if not rung or b["stage"] != "surrogate":
            return b["stage"]
        return b["stage"] + (" (full)" if b["rung"] is None
                             else f" (rung {b['rung'] + 1}: {steps[b['rung']]} steps)")

    rows = [[str(i + 1), f"cand{b['id']}", stage(b), f"{100 * b['fitness']:.2f}",
             f"`{b['equation']}`"] for i, b in enumerate(top)]
    raw = [[i + 1, f"cand{b['id']}", stage(b), b["fitness"], b["equation"]]
           for i, b in enumerate(top)]
    note = (f"{summary['iterations']} iterations, {summary['evaluated']} evaluations, "
            f"{summary['successful_children']} successful children.")
    if rung:
        note += (f" Rungs at {steps} steps of the surrogate run: children arriving "
                 f"{summary['rung_arrivals']}, promoted {summary['rung_promoted']}, stopped "
                 f"there {summary['stopped_at_rung']} (a stopped child's fitness is its best "
                 "validation accuracy at that rung).")
    if band:
        note += " " + _beat_ce(state, band)
    table = tables.Table("Best genomes of the search", ["rank", "loss", "stage", "fitness (%)",
                                                 "equation"], rows,
                  ["rank", "loss", "stage", "fitness", "equation"], raw, note)
    return files + tables.write_tables([table], out, name)


def _beat_ce(state: dict, band: tuple[float, float, float]) -> str:
    """A sentence: how many scored candidates beat cross-entropy's mean and best (``band`` is
    its (max, mean, min) on the surrogate protocol, as Figure 4 draws it)."""
    from lfe.core import evolution

    best, mean = band[0], band[1]
    m, b = evolution.count_above(state, mean), evolution.count_above(state, best)
    parts = [f"{m[s]} of {m[s + '_scored']} {label} beat cross-entropy's mean "
             f"({100 * mean:.2f}%), {b[s]} its best run ({100 * best:.2f}%)"
             for s, label in (("initial", "initial genomes"), ("rescored", "re-scored ones"),
                              ("surrogate", "children")) if s != "rescored" or m[s + "_scored"]]
    return "Scored on the surrogate protocol (failed ones excluded): " + "; ".join(parts) + "."


def _elimination_report(source: str, out: str, name: str) -> list[str]:
    """The stage table, the per-stage figure and Figures 2–3 for the finalists."""
    from lfe.training import losses as losses_lib

    path = os.path.join(source, "elimination.json")
    if not os.path.exists(path):
        return []
    summary = fileio.read_json(path)
    candidates = {c["name"]: c for c in fileio.read_json(os.path.join(source,
                                                                      "candidates.json"))}
    files = tables.write_tables(tables.elimination_tables(summary, candidates), out, name)
    files.append(plots.plot_elimination(summary["stages"], os.path.join(out, f"{name}.png")))
    finalists = [losses_lib.resolve(os.path.join(source, f["path"]))
                 for f in summary.get("finalists", [])]
    if finalists:
        files += plots.write_figures([losses_lib.get(tables.BASELINE)] + finalists, out,
                                     prefix=f"{name}_finalists_")
    return files


def _cells_report(source: str, out: str, name: str, mode: str) -> list[str]:
    records = cells.read_cells(os.path.join(source, "cells"))
    config = fileio.read_json(os.path.join(source, "config.json"))
    if mode == "compare":
        from lfe.experiments import compare

        table = compare.results_table(records, ml_collections.ConfigDict(config))
        curves = plots.plot_curves(list(records.values()), os.path.join(out, f"{name}_curves.png"),
                                   title=config.get("title") or "Validation accuracy")
        paired = compare.paired_table(records, ml_collections.ConfigDict(config))
        extra = tables.write_tables([paired], out, f"{name}_paired") if paired.rows else []
        return tables.write_tables([table], out, name) + extra + [curves]
    return tables.write_tables(tables.transfer_tables(list(records.values()), config), out, name,
                        heading=config.get("title", ""))


def report_dir(source: str, out: str, name: str) -> list[str]:
    """The report files of one run directory (its mode read from its ``config.json``)."""
    path = os.path.join(source, "config.json")
    mode = fileio.read_json(path).get("mode") if os.path.exists(path) else None
    if mode == "evolve":
        return _evolution_report(source, out, name)
    if mode == "eliminate":
        return _elimination_report(source, out, name)
    if mode in ("transfer", "compare"):
        return _cells_report(source, out, name, mode)
    return []


def run_dirs(source: str) -> list[tuple[str, str]]:
    """(name, directory) of every run directory under ``source`` (itself included), in
    pipeline order: evolve, eliminate, then transfers."""
    found = []
    for root, dirs, _ in os.walk(source):
        dirs[:] = sorted(d for d in dirs if d not in ("cells", "report", "tensorboard",
                                                      "finalists"))
        if os.path.exists(os.path.join(root, "config.json")):
            rel = os.path.relpath(root, source)
            found.append(("run" if rel == "." else rel.replace(os.sep, "_"), root))
    rank = {"evolve": 0, "eliminate": 1}
    return sorted(found, key=lambda nd: (rank.get(nd[0], 2), nd[0]))


def run(config, workdir: str) -> list[str]:
    """Turns the run directory ``config.run_dir`` (default ``workdir``; a single mode's or a
    whole pipeline's) into ``<workdir>/report/``: tables (.md, .csv), figures, README.md."""
    source = config.get("run_dir") or workdir
    if not os.path.isdir(source):
        raise ValueError(f"no run directory at {source!r}")
    out = os.path.join(workdir, "report")
    files = []
    for name, directory in run_dirs(source):
        if os.path.abspath(directory) != os.path.abspath(out):
            files += report_dir(directory, out, name)
    if not files:
        raise ValueError(f"nothing to report in {source!r}: no evolve, eliminate, transfer or "
                         "compare run directory with results")
    lines = [f"# Report of `{source}`", "", f"Code: {fileio.git_revision()}.", ""]
    for path in files:
        rel = os.path.relpath(path, out)
        lines.append(f"- ![{rel}]({rel})" if rel.endswith(".png") else f"- [{rel}]({rel})")
    for path in files:
        if path.endswith(".md"):
            lines += ["", open(path).read()]
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"report: {len(files)} files in {out}")
    return files + [os.path.join(out, "README.md")]


def default_config() -> ml_collections.ConfigDict:
    return defaults.report()  # JAX-free, for configs/
