"""``mode: transfer`` — the final losses across architectures, datasets and augmentations (§4.3).

A transfer experiment is a grid of *settings* (an architecture's training protocol on a dataset
with an augmentation: one column of Tables 8–11, or one entry of Table 3) × losses × seeds. Each
(setting, loss, seed) is an independent cell (``lfe.experiments.cells``): recorded atomically in
``cells/<setting>/<loss>__seed<k>.json`` when it finishes, never retrained on a rerun.

Losses are library names or genome JSON files (an elimination's ``finalists/*.json``);
``variants`` add named versions of a loss with label smoothing (Tables 10–11's CE₀.₁₀). Cells are
scored on ``eval_split`` ("test" for the paper's transfer tables, training on train+val = the full
training set; "val" for the surrogate study) by the last evaluation's accuracy (``metric:
final``) or the best one (``metric: best``, the paper's fitness). ``results.md/csv`` hold the
tables (``lfe.experiments.report.transfer_tables``) in the layout the config names.
"""

from __future__ import annotations

import os

import ml_collections

from lfe.core import rundir
from lfe.experiments import cells, defaults, tables
from lfe.experiments.defaults import grid, setting  # noqa: F401 (API: settings of a config)
from lfe.training import losses, progressive

AXES = ("architecture", "dataset", "augmentation")


def with_label_smoothing(protocol: dict, smoothing: float) -> dict:
    """``protocol`` whose training pipeline ends with label smoothing (targets, not images)."""
    augment = progressive.resolve_augment(protocol.get("augment", "unit"))
    train = list(augment["train"]) + [("smooth_labels", {"smoothing": float(smoothing)})]
    return {**protocol, "augment": {"train": train, "eval": list(augment["eval"])}}


def loss_entries(config) -> dict[str, tuple[dict, float]]:
    """Display name -> (loss spec, label smoothing), in table order; names must be unique."""
    out: dict[str, tuple[dict, float]] = {}
    specs = [s.strip() for s in config.losses.split(",") if s.strip()] \
        if isinstance(config.losses, str) else list(config.losses)
    named = [(losses.resolve(s).name, s, 0.0) for s in specs]
    named += [(v.get("name") or key, v["loss"], float(v.get("label_smoothing", 0.0)))
              for key, v in (config.get("variants") or {}).items()]
    for name, spec, smoothing in named:
        if name in out:
            raise ValueError(f"two losses are named {name!r}; give each a distinct name")
        out[name] = (losses.to_spec(losses.resolve(spec)), smoothing)
    return out


def _seeds(config) -> list[int]:
    return list(range(config.seeds)) if isinstance(config.seeds, int) else list(config.seeds)


def build_cells(config) -> list[cells.Cell]:
    """Every (setting, loss, seed) cell, seeds outermost so a partial run is balanced."""
    if not config.settings:
        raise ValueError("config.settings is empty: nothing to train")
    entries = loss_entries(config)
    out = []
    for seed in _seeds(config):
        for name, st in config.settings.items():
            base = rundir.to_plain(st.protocol)
            for index, (loss, (spec, smoothing)) in enumerate(entries.items()):
                protocol = with_label_smoothing(base, smoothing) if smoothing else base
                meta = {"loss": loss, "loss_index": index, "seed": seed, "setting": name,
                        "spec": spec, "label_smoothing": smoothing, "protocol": protocol,
                        **{axis: st[axis] for axis in AXES}}
                out.append(cells.Cell(
                    f"{cells.safe_name(name)}/{cells.safe_name(loss)}__seed{seed}", meta,
                    (spec, protocol, st.dataset, config.get("data_dir", ""), seed,
                     st.get("train_split", "train"), st.get("eval_split", "val"))))
    return out


def run(config, workdir: str) -> list[tables.Table]:
    defaults.check(config)
    todo = build_cells(config)
    os.makedirs(workdir, exist_ok=True)
    with rundir.lock(workdir):  # one controller per run directory
        return _run(config, workdir, todo)


def _run(config, workdir: str, todo: list[cells.Cell]) -> list[tables.Table]:
    # a cell is its (setting, loss, seed): more seeds or losses only add cells, but a setting
    # or variant that changes under the same name would mix two experiments in one column
    rundir.claim(workdir, config, fixed=("settings", "variants"))
    done = cells.run_cells(todo, os.path.join(workdir, "cells"), config.executor,
                           config.get("workers") or None, ray_options=config.get("ray"),
                           label=f"transfer ({workdir})",
                           max_retries=config.get("max_task_retries"))
    result = tables.transfer_tables(list(done.values()), rundir.to_plain(config))
    tables.write_tables(result, workdir, "results", heading=config.title)
    for table in result:
        print(tables.to_markdown(table))
    cells.check_complete(todo, done, os.path.join(workdir, "cells"), "transfer")
    return result


def default_config() -> ml_collections.ConfigDict:
    return defaults.transfer()  # JAX-free, for configs/
