"""``mode: compare`` — train a grid of losses × seeds with one protocol and tabulate the result.

Each (loss, seed) cell is one real training run; its record is written to
``<workdir>/cells/<loss>__seed<k>.json`` (atomically) the moment it finishes, so an interrupted
grid resumes where it stopped and never retrains a finished cell. ``results.md`` /
``results.csv`` hold mean ± std of the best validation accuracy per loss, Welch's t-test against
cross-entropy (one-sided "greater", as the paper's Table 4, and two-sided), the paper's
numbers beside ours when the config gives them and the run's dataset and protocol are the ones
they were measured on (``tables.paper_values``), and the command that made the run.
``results_paired.md`` / ``.csv`` are a side note: each loss against cross-entropy over the seeds
both ran (``paired_table``: the same seed gives every loss the same initial weights and batch
order), with the paired t-test.
"""

from __future__ import annotations

import os

import ml_collections

from lfe.core import rundir
from lfe.experiments import cells, defaults, tables
from lfe.training import losses

BASELINE = "cross_entropy"


def _names(spec) -> list[str]:
    return [s.strip() for s in spec.split(",") if s.strip()] if isinstance(spec, str) \
        else list(spec)


def cell_id(loss_name: str, seed: int) -> str:
    return f"{loss_name}__seed{seed}"


def finished_cells(workdir: str) -> dict[str, dict]:
    return cells.read_cells(os.path.join(workdir, "cells"))


def label(spec: str, records: dict[str, dict] | None = None) -> str:
    """A loss's name in cell ids and tables: a library name as is; a genome file (say
    ``results/run/best.json#1``) by its loss's own name (``cand9``) as its finished cells
    recorded it, else as the file gives it (the spec itself if it can no longer be read)."""
    for r in (records or {}).values():
        if r.get("spec") == spec:
            return r["loss"]
    try:
        return losses.resolve(spec).name
    except ValueError:
        return spec


def grid(config) -> list[cells.Cell]:
    """The (loss, seed) cells of a comparison, seeds outermost (so a partial grid is balanced)."""
    names = _names(config.losses)
    loss_defs = {n: losses.resolve(n) for n in names}  # fail fast on bad names
    _distinct_names(loss_defs)
    specs = {n: losses.to_spec(d) for n, d in loss_defs.items()}  # once per loss, not per seed
    seeds = list(range(config.seeds)) if isinstance(config.seeds, int) else list(config.seeds)
    protocol = config.protocol.to_dict()
    data_dir = config.get("data_dir", "")
    out = []
    for s in seeds:
        for n in names:
            name = loss_defs[n].name
            meta = {"loss": name, "seed": s, "dataset": config.dataset, "protocol": protocol}
            if name != n:
                meta["spec"] = n
            out.append(cells.Cell(cell_id(name, s), meta,
                                  (specs[n], protocol, config.dataset, data_dir, s)))
    return out


def _distinct_names(loss_defs: dict[str, losses.LossDef]) -> None:
    """Two losses of one grid must not share a name (cell ids and table rows are by name):
    two runs' ``best.json#1`` may both be a ``cand<id>`` of the same id."""
    seen: dict[str, str] = {}
    for spec, d in loss_defs.items():
        if d.name in seen:
            raise ValueError(f"losses {seen[d.name]!r} and {spec!r} are both named {d.name!r}; "
                             f"name one explicitly, e.g. 'other_{d.name}={spec}'")
        seen[d.name] = spec


def run(config, workdir: str) -> tables.Table:
    defaults.check(config)
    todo = grid(config)
    os.makedirs(workdir, exist_ok=True)
    with rundir.lock(workdir):  # one controller per run directory
        return _run(config, workdir, todo)


def _run(config, workdir: str, todo: list[cells.Cell]) -> tables.Table:
    rundir.claim(workdir, config, fixed=("protocol", "dataset"))
    done = cells.run_cells(todo, os.path.join(workdir, "cells"), config.executor,
                           config.get("workers") or None, ray_options=config.get("ray"),
                           label=f"compare ({workdir})",
                           max_retries=config.get("max_task_retries"))
    table = results_table(done, config)
    write_results(table, workdir, paired_table(done, config))
    cells.check_complete(todo, done, os.path.join(workdir, "cells"), f"compare ({workdir})")
    return table


def by_loss(records: dict[str, dict], names: list[str]) -> dict[str, list[float]]:
    """Per loss, the best validation accuracies (%) of its finished runs."""
    return {n: [100 * cells.accuracy(c) for c in records.values() if c["loss"] == n]
            for n in names}


def _revisions(records: dict[str, dict]) -> str:
    revs = sorted({str(r.get("git_revision") or "unknown")[:7] for r in records.values()})
    return ", ".join(revs) if revs else "none yet"


def results_table(records: dict[str, dict], config) -> tables.Table:
    """Table 4's layout: per loss, runs, mean ± std (%), Welch p vs cross-entropy (one-sided
    "greater" and two-sided), the paper's value when the config gives it for this run's
    dataset and protocol; the note ends with the command that made the run."""
    column = "validation accuracy (%)"
    p = config.protocol
    note = (f"Best validation accuracy over evaluations every {p.eval_every} steps; {p.steps} "
            f"steps of `{p.model}` on {config.dataset}. Per-run records: `cells/`. "
            f"Runs made by code revision(s) {_revisions(records)}.")
    paper, omitted = tables.paper_values(config)
    names = [label(n, records) for n in _names(config.losses)]
    return tables.loss_table(config.get("title") or "Loss comparison", names,
                             {column: by_loss(records, names)},
                             p_values=("greater", "two-sided"),
                             paper={column: paper} if paper else {},
                             note=note + tables.provenance(config, omitted))


def _seed(key: str, record: dict) -> int:
    """A cell's seed: its record's, or its id's ``__seed<k>`` (records older than the field)."""
    return int(record["seed"]) if "seed" in record else int(key.rsplit("__seed", 1)[1])


def paired_table(records: dict[str, dict], config) -> tables.Table:
    """The side note to ``results_table``: each loss against cross-entropy, runs paired by
    seed (Welch's test, the paper's, ignores the pairing)."""
    names = [label(n, records) for n in _names(config.losses)]
    by_seed = {n: {_seed(key, c): 100 * cells.accuracy(c) for key, c in records.items()
                   if c["loss"] == n} for n in names}
    note = ("Side note to the table above, whose test (Welch's, as the paper's) treats the "
            "runs as unpaired: every loss trained with seed k starts from the same initial "
            "weights and sees the same batches, so its run can be paired with cross-entropy's "
            "run of seed k. Difference: the loss's best validation accuracy minus "
            "cross-entropy's, in points, over the seeds both ran.")
    return tables.paired_table(f"{config.get('title') or 'Loss comparison'}: paired by seed",
                               names, by_seed, baseline=BASELINE, note=note)


def write_results(table: tables.Table, workdir: str, paired: tables.Table | None = None) -> None:
    tables.write_tables([table], workdir, "results")
    print(tables.to_markdown(table))
    if paired is not None and paired.rows:
        tables.write_tables([paired], workdir, "results_paired")
        print(tables.to_markdown(paired))


def default_config() -> ml_collections.ConfigDict:
    return defaults.compare()  # JAX-free, for configs/
