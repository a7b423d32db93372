"""Resumable grids of training cells: the one mechanism behind compare, elimination and transfer.

A *cell* is one independent training run (a loss, a protocol, a dataset, a seed). Its record is
written atomically to ``<directory>/<key>.json`` the moment it finishes — keys may contain ``/``
(``stage2/cand17__seed0``) — so a grid interrupted at any point (even by SIGKILL) resumes where
it stopped: a cell whose file exists is never trained again. Cells fan out over an executor
(``lfe.executors.make``); a cell that raises is reported and left for the next run to retry.

    cells = [Cell("cross_entropy__seed0", {"loss": "cross_entropy", "seed": 0, ...},
                  "lfe.experiments.cells:train_task", (spec, protocol, "cifar10", data_dir, 0))]
    records = run_cells(cells, workdir + "/cells", executor="inprocess")  # key -> record
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np

from lfe import executors
from lfe.core import fileio
from lfe.training import fitness

SAFE = re.compile(r"[^A-Za-z0-9_.+=-]+")


def safe_name(name: str) -> str:
    """``name`` usable as one path component (display names like ``CE_0.10`` stay readable)."""
    return SAFE.sub("_", name).strip("._") or "_"


@dataclasses.dataclass(frozen=True)
class Cell:
    """One training run: ``fn`` (``"module:function"``) applied to ``args`` (plain data).

    ``meta`` (loss, seed, protocol, ...) is stored with the result, so every cell file says
    what produced it.
    """

    key: str
    meta: dict
    fn: str
    args: tuple


def resolve_fn(target: str):
    """``"module:function"`` -> the function (so tests can substitute a fake trainer)."""
    module, _, name = target.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise ValueError(f"cannot load train function {target!r}: {e}") from None


def read_cells(directory: str) -> dict[str, dict]:
    """Every finished cell under ``directory`` (recursively), keyed like ``Cell.key``."""
    found = {}
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".json") or name.startswith("."):
                continue
            path = os.path.join(root, name)
            key = os.path.relpath(path, directory)[:-5].replace(os.sep, "/")
            try:
                found[key] = fileio.read_json(path)
            except ValueError:
                print(f"warning: ignoring unreadable cell {path}; it will be rerun",
                      file=sys.stderr)
    return found


def run_cells(cells: list[Cell], directory: str, executor: str = "inprocess",
              workers: int | None = None, label: str = "cells",
              ray_options: Any = None) -> dict[str, dict]:
    """Trains the cells without a record in ``directory``; returns key -> record of all cells
    that have one (a failed cell is missing from the result). ``ray_options``: a config's
    ``ray`` block (``executors.ray_config()``), used when ``executor`` is ``"ray"``."""
    done = read_cells(directory)
    records = {c.key: done[c.key] for c in cells if c.key in done}
    todo = [c for c in cells if c.key not in done]
    print(f"{label}: {len(records)} cells done, {len(todo)} to run", flush=True)
    if not todo:
        return records
    by_key = {c.key: c for c in todo}
    pool = executors.make(executor, workers or None, ray_options)
    start, finished, queue = time.time(), 0, list(todo)
    try:
        while queue or pool.pending:
            while queue and pool.pending < pool.capacity:
                cell = queue.pop(0)
                pool.submit(cell.key, resolve_fn(cell.fn), *cell.args)
            for key, outcome in pool.wait_any():
                finished += 1
                if outcome.error is not None:
                    print(f"  {key}: FAILED ({outcome.error}); rerun to retry", file=sys.stderr)
                    continue
                record = {**by_key[key].meta, **outcome.value,
                          "git_revision": fileio.git_revision(), "finished_at": time.time()}
                fileio.write_json_atomic(os.path.join(directory, key + ".json"), record)
                records[key] = record
                eta = (time.time() - start) / finished * (len(todo) - finished)
                print(f"  [{finished}/{len(todo)}] {key}: {100 * record['accuracy']:.2f}% "
                      f"({record['status']}, {record['wall_time_s']:.0f}s) "
                      f"ETA {eta / 60:.1f} min", flush=True)
    finally:
        pool.close()
    return records


@functools.lru_cache(maxsize=4)
def _dataset(name: str, data_dir: str, train_split: str, eval_split: str):
    """The dataset with ``eval_split`` in the validation slot and ``train_split`` for training
    (``"train+val"`` trains on both, as the paper's transfer runs use the full training set)."""
    ds = fitness.load_dataset(name, data_dir)
    if train_split not in ("train", "train+val") or eval_split not in ("val", "test"):
        raise ValueError(f"bad splits {train_split!r}/{eval_split!r}; available: train or "
                         "train+val for training, val or test for evaluation")
    images, labels = ds.train_images, ds.train_labels
    if train_split == "train+val":
        if eval_split == "val":
            raise ValueError("training on train+val needs eval_split 'test'")
        images = np.concatenate([images, ds.val_images])
        labels = np.concatenate([labels, ds.val_labels])
    ev_images, ev_labels = ds.split(eval_split)
    return dataclasses.replace(ds, train_images=images, train_labels=labels,
                               val_images=ev_images, val_labels=ev_labels)


def train_task(spec: dict, protocol: dict, dataset: str, data_dir: str, seed: int,
               train_split: str = "train", eval_split: str = "val") -> dict:
    """Executor entry point for one cell: trains ``spec`` with ``protocol``.

    ``accuracy`` is the best accuracy on ``eval_split`` over the run's evaluations (the paper's
    fitness and elimination metric on the validation split); ``final_accuracy`` the last
    evaluation's (used for test-split tables, where picking the best would select on test).
    """
    data = _dataset(dataset, data_dir, train_split, eval_split)
    result = fitness.train_once(fitness.resolve_spec(spec), ml_collections.ConfigDict(protocol),
                                data, seed)
    final = next((row[2] for row in reversed(result.curve) if row[2] is not None), 0.0)
    return {"accuracy": result.best_val_accuracy, "final_accuracy": final,
            "best_train_accuracy": result.best_train_accuracy, "status": result.status,
            "steps_run": result.steps_run, "wall_time_s": result.wall_time_s,
            "curve": [list(r) for r in result.curve], "message": result.message,
            "train_split": train_split, "eval_split": eval_split}


def to_plain(value: Any) -> Any:
    """A ConfigDict (or nested lists/tuples of them) as plain JSON-able data."""
    if isinstance(value, ml_collections.ConfigDict):
        value = value.to_dict()
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def accuracy(record: dict, final: bool = False) -> float:
    """A cell's accuracy: best over evaluations, or the last one with ``final`` (records of
    older versions hold only ``best_val_accuracy``)."""
    if final and "final_accuracy" in record:
        return float(record["final_accuracy"])
    return float(record["accuracy"] if "accuracy" in record else record["best_val_accuracy"])


def claim_workdir(workdir: str, config, fixed: Sequence[str]) -> None:
    """Records ``config`` in ``workdir/config.json``; a rerun whose ``fixed`` fields differ from
    the recorded ones is refused (its cells would mix two experiments)."""
    path = os.path.join(workdir, "config.json")
    mine = to_plain(config)
    if os.path.exists(path):
        saved = fileio.read_json(path)
        changed = [k for k in fixed if to_plain(saved.get(k)) != to_plain(mine.get(k))]
        if changed:
            raise ValueError(f"{workdir} holds a run with a different {', '.join(changed)}; "
                             "use a new --workdir or the same config")
    fileio.write_json_atomic(path, mine)
