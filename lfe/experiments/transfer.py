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

import itertools
import os

import ml_collections

from lfe import executors
from lfe.experiments import cells, report
from lfe.training import fitness, losses, progressive

TRAIN_FN = "lfe.experiments.cells:train_task"
AXES = ("architecture", "dataset", "augmentation")


def setting(architecture: str, dataset: str, augmentation: str, protocol,
            train_split: str = "train+val", eval_split: str = "test") -> ml_collections.ConfigDict:
    """One column of a transfer table: ``protocol`` trained on ``dataset``."""
    return ml_collections.ConfigDict({
        "architecture": architecture, "dataset": dataset, "augmentation": augmentation,
        "protocol": protocol, "train_split": train_split, "eval_split": eval_split})


def _override(protocol: dict, overrides: dict) -> dict:
    out = dict(protocol)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            value = _override(out[key], value)
        out[key] = value
    return out


def grid(architectures: dict, datasets: list[str], augmentations: dict | None = None,
         **split_kwargs) -> ml_collections.ConfigDict:
    """Settings for every architecture × dataset × augmentation, keyed
    ``<architecture>__<dataset>__<augmentation>``. ``architectures``: name -> protocol;
    ``augmentations``: name -> protocol overrides (``{}`` keeps the architecture's own)."""
    augmentations = augmentations if augmentations is not None else {"default": {}}
    out = ml_collections.ConfigDict()
    for (arch, protocol), dataset, (aug, overrides) in itertools.product(
            architectures.items(), datasets, augmentations.items()):
        proto = _override(cells.to_plain(protocol), cells.to_plain(overrides))
        out[f"{arch}__{dataset}__{aug}"] = setting(arch, dataset, aug, proto, **split_kwargs)
    return out


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
        out[name] = (fitness.loss_spec(losses.resolve(spec)), smoothing)
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
            base = cells.to_plain(st.protocol)
            for index, (loss, (spec, smoothing)) in enumerate(entries.items()):
                protocol = with_label_smoothing(base, smoothing) if smoothing else base
                meta = {"loss": loss, "loss_index": index, "seed": seed, "setting": name,
                        "spec": spec, "label_smoothing": smoothing, "protocol": protocol,
                        **{axis: st[axis] for axis in AXES}}
                out.append(cells.Cell(
                    f"{cells.safe_name(name)}/{cells.safe_name(loss)}__seed{seed}", meta,
                    config.get("train_fn") or TRAIN_FN,
                    (spec, protocol, st.dataset, config.get("data_dir", ""), seed,
                     st.get("train_split", "train"), st.get("eval_split", "val"))))
    return out


def run(config, workdir: str) -> list[report.Table]:
    todo = build_cells(config)
    os.makedirs(workdir, exist_ok=True)
    # a cell is its (setting, loss, seed): more seeds or losses only add cells, but a setting
    # or variant that changes under the same name would mix two experiments in one column
    cells.claim_workdir(workdir, config, ("settings", "variants"))
    done = cells.run_cells(todo, os.path.join(workdir, "cells"), config.executor,
                           config.get("workers") or None, ray_options=config.get("ray"),
                           label=f"transfer ({workdir})")
    tables = report.transfer_tables(list(done.values()), cells.to_plain(config))
    report.write_tables(tables, workdir, "results", heading=config.title)
    for table in tables:
        print(report.to_markdown(table))
    missing = len(todo) - len(done)
    if missing:
        raise ValueError(f"transfer: {missing} cells failed; rerun the same command to retry "
                         "them (finished cells are kept)")
    return tables


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.mode = "transfer"
    c.title = "Transfer"
    c.losses = "neuroloss1,neuroloss2,neuroloss3,cross_entropy"  # names or genome JSON paths
    # key -> {"loss": spec, "label_smoothing": a, "name": display name (default: the key)}
    c.variants = ml_collections.ConfigDict()
    c.settings = ml_collections.ConfigDict()  # name -> transfer.setting(...)
    c.seeds = 5
    c.data_dir = ""
    c.executor = "pool"
    c.workers = 0
    c.ray = executors.ray_config()  # used only with executor "ray"
    c.train_fn = TRAIN_FN
    # Report layout: "loss" tables (rows losses; sub-tables by `split` axes, columns by
    # `columns` axes) or a "tau" table (Kendall's τ of each setting vs `reference`).
    # `order`: labels in the order the paper prints them (others follow, numbers numerically).
    c.layout = ml_collections.ConfigDict({"kind": "loss", "split": ("dataset",),
                                          "columns": ("architecture",), "rows": (),
                                          "order": ()})
    c.metric = "final"  # "final": last evaluation's accuracy; "best": best over evaluations
    c.p_values = ("greater", "two-sided")  # Welch vs cross-entropy per column; () for none
    c.reference = ""  # the setting the "tau" layout ranks against
    c.paper = ml_collections.ConfigDict()  # column title -> {loss: published value}
    return c
