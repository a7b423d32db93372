"""Resumable grids of training cells: the one mechanism behind compare, elimination and transfer.

A *cell* is one independent training run (a loss, a protocol, a dataset, a seed). Its record is
written atomically to ``<directory>/<key>.json`` the moment it finishes — keys may contain ``/``
(``stage2/cand17__seed0``) — so a grid interrupted at any point (even by SIGKILL) resumes where
it stopped: a cell whose file exists is never trained again. Cells fan out over an executor
(``lfe.executors.make``) running the worker task ``train_cell`` (``lfe.worker``); a cell that
raises is reported and left for the next run to retry.

    cells = [Cell("cross_entropy__seed0", {"loss": "cross_entropy", "seed": 0, ...},
                  (spec, protocol, "cifar10", data_dir, 0))]
    records = run_cells(cells, workdir + "/cells", executor="inprocess")  # key -> record
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
from typing import Any

from lfe import executors, worker
from lfe.core import fileio

SAFE = re.compile(r"[^A-Za-z0-9_.+=-]+")


def safe_name(name: str) -> str:
    """``name`` usable as one path component (display names like ``CE_0.10`` stay readable)."""
    return SAFE.sub("_", name).strip("._") or "_"


@dataclasses.dataclass(frozen=True)
class Cell:
    """One training run: the worker's ``train_cell`` applied to ``args`` (plain data).

    ``meta`` (loss, seed, protocol, ...) is stored with the result, so every cell file says
    what produced it.
    """

    key: str
    meta: dict
    args: tuple


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
    target = worker.target("train_cell")
    pool = executors.make(executor, workers or None, ray_options)
    start, finished, queue = time.time(), 0, list(todo)
    try:
        while queue or pool.pending:
            while queue and pool.pending < pool.capacity:
                cell = queue.pop(0)
                pool.submit(cell.key, target, *cell.args)
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


def accuracy(record: dict, final: bool = False) -> float:
    """A cell's accuracy: best over evaluations, or the last one with ``final`` (records of
    older versions hold only ``best_val_accuracy``)."""
    if final and "final_accuracy" in record:
        return float(record["final_accuracy"])
    return float(record["accuracy"] if "accuracy" in record else record["best_val_accuracy"])
