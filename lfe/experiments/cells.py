"""Resumable grids of training cells: the one mechanism behind compare, elimination and transfer.

A *cell* is one independent training run (a loss, a protocol, a dataset, a seed). Its record is
written atomically to ``<directory>/<key>.json`` the moment it finishes — keys may contain ``/``
(``stage2/cand17__seed0``) — so a grid interrupted at any point (even by SIGKILL) resumes where
it stopped: a cell whose file exists is never trained again. Each record holds its loss's
``loss_fingerprint`` (``lfe.training.losses.fingerprint``): a finished cell whose fingerprint
differs from its grid's loss of that name stops the grid with one line instead of being
reused. Cells fan out over an executor (``lfe.executors.make``) running the worker task
``train_cell`` (``lfe.worker``). A cell that raises or loses its worker runs again as
``lfe.core.retry`` allows (``max_retries``), then is recorded as failed in
``<directory>/<key>.failed.json`` (its meta, ``status: "error"``, the error, the attempts):
``read_cells`` never returns it, the grid goes on, the mode ends with one line
(``check_complete``) and a rerun trains it again (a success removes the failed file).

    cells = [Cell("cross_entropy__seed0", {"loss": "cross_entropy", "seed": 0, ...},
                  (spec, protocol, "cifar10", data_dir, 0))]
    records = run_cells(cells, workdir + "/cells", executor="inprocess")  # key -> record
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import sys
import time
from typing import Any

from lfe import executors, worker
from lfe.core import fileio, protocol
from lfe.core import retry as retry_policy

SAFE = re.compile(r"[^A-Za-z0-9_.+=-]+")
FAILED = ".failed.json"  # suffix of a failed cell's record


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


def task_args(cell: Cell, directory: str) -> tuple:
    """The worker's arguments for ``cell``: its ``args``, and, when its protocol checkpoints
    (``checkpoint_every`` > 0), the absolute checkpoint folder ``<directory>/../checkpoints/<key>``
    after ``train_cell``'s defaults for any split arguments left out."""
    if not protocol.checkpoint_every(cell.args[1]):
        return cell.args
    params = list(inspect.signature(worker.train_cell).parameters.values())
    folder = os.path.join(os.path.dirname(os.path.abspath(directory)), "checkpoints", cell.key)
    return (*cell.args, *(p.default for p in params[len(cell.args):-1]), folder)


def read_cells(directory: str, failed: bool = False) -> dict[str, dict]:
    """Every finished cell under ``directory`` (recursively), keyed like ``Cell.key``; with
    ``failed``, the records of the cells that failed instead (``<key>.failed.json``)."""
    found = {}
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            if (not name.endswith(".json") or name.startswith(".")
                    or name.endswith(FAILED) != failed):
                continue
            path = os.path.join(root, name)
            suffix = len(FAILED if failed else ".json")
            key = os.path.relpath(path, directory)[:-suffix].replace(os.sep, "/")
            try:
                found[key] = fileio.read_json(path)
            except ValueError:
                print(f"warning: ignoring unreadable cell {path}; it will be rerun",
                      file=sys.stderr)
    return found


def run_cells(cells: list[Cell], directory: str, executor: str = "inprocess",
              workers: int | None = None, label: str = "cells",
              ray_options: Any = None, max_retries: int | None = None) -> dict[str, dict]:
    """Trains the cells without a record in ``directory``; returns key -> record of all cells
    that have one (a failed cell is missing from the result). ``ray_options``: a config's
    ``ray`` block (``executors.ray_config()``), used when ``executor`` is ``"ray"``;
    ``max_retries``: a config's ``max_task_retries`` (None: ``lfe.core.retry``'s default)."""
    limit = retry_policy.DEFAULT_MAX_RETRIES if max_retries is None else int(max_retries)
    done = read_cells(directory)
    prints = fingerprints(cells)  # before any training: a bad spec fails here, not after a run
    records = {c.key: _same_loss(c, done[c.key], prints[c.key], directory)
               for c in cells if c.key in done}
    todo = [c for c in cells if c.key not in done]
    print(f"{label}: {len(records)} cells done, {len(todo)} to run", flush=True)
    if not todo:
        return records
    by_key = {c.key: c for c in todo}
    target = worker.target("train_cell")
    pool = executors.make(executor, workers or None, ray_options)
    start, finished, queue = time.time(), 0, list(todo)
    attempts: dict[str, list[bool]] = {}  # failed attempts per cell (True: worker lost)
    try:
        while queue or pool.pending:
            while queue and pool.pending < pool.capacity:
                cell = queue.pop(0)
                pool.submit(cell.key, target, *task_args(cell, directory))
            for key, outcome in pool.wait_any():
                if outcome.error is not None:
                    tries = attempts.setdefault(key, [])
                    tries.append(outcome.lost)
                    if not outcome.timed_out and retry_policy.again(tries, limit):
                        print(f"  {key}: {outcome.error} ({retry_policy.describe(tries, limit)})"
                              "; running it again", file=sys.stderr, flush=True)
                        queue.insert(0, by_key[key])
                        continue
                    finished += 1
                    _write_failed(directory, by_key[key], outcome.error, len(tries))
                    print(f"  [{finished}/{len(todo)}] {key}: FAILED after {len(tries)} "
                          f"attempt(s): {outcome.error}", file=sys.stderr, flush=True)
                    continue
                finished += 1
                record = {**by_key[key].meta, **outcome.value,
                          "loss_fingerprint": prints[key],
                          "git_revision": fileio.git_revision(), "finished_at": time.time()}
                fileio.write_json_atomic(os.path.join(directory, key + ".json"), record)
                if os.path.exists(os.path.join(directory, key + FAILED)):
                    os.remove(os.path.join(directory, key + FAILED))  # it failed before
                records[key] = record
                eta = (time.time() - start) / finished * (len(todo) - finished)
                print(f"  [{finished}/{len(todo)}] {key}: {100 * record['accuracy']:.2f}% "
                      f"({record['status']}, {record['wall_time_s']:.0f}s) "
                      f"ETA {eta / 60:.1f} min", flush=True)
    finally:
        pool.close()
    return records


def fingerprints(cells: list[Cell]) -> dict[str, str]:
    """Per cell key, what its loss computes (``losses.fingerprint`` of its spec, ``args[0]``),
    computed once per distinct spec."""
    from lfe.training import losses  # lazily: importing cells needs no JAX

    memo: dict[str, str] = {}
    out = {}
    for c in cells:
        text = json.dumps(c.args[0], sort_keys=True)
        if text not in memo:
            memo[text] = losses.fingerprint(c.args[0])
        out[c.key] = memo[text]
    return out


def _same_loss(cell: Cell, record: dict, fingerprint: str, directory: str) -> dict:
    """``record`` if it was trained with ``cell``'s loss (records older than the fingerprint
    cannot tell, and are trusted); else one line naming the cell and what to do."""
    old = record.get("loss_fingerprint")
    if old is not None and old != fingerprint:
        raise ValueError(
            f"{os.path.join(directory, cell.key)}.json was trained with another loss named "
            f"{cell.meta.get('loss', cell.key)!r} (fingerprint {old}, this grid's is "
            f"{fingerprint}); move that file aside to retrain the cell, or name this loss "
            "differently")
    return record


def _write_failed(directory: str, cell: Cell, error: str, attempts: int) -> None:
    fileio.write_json_atomic(os.path.join(directory, cell.key + FAILED), {
        **cell.meta, "status": "error", "error": error, "attempts": attempts,
        "git_revision": fileio.git_revision(), "finished_at": time.time()})


def check_complete(cells: list[Cell], records: dict[str, dict], directory: str,
                   label: str) -> None:
    """Raises one line when some of ``cells`` have no record (they failed; their errors are in
    ``<directory>/<key>.failed.json``): how many, and that rerunning the command retries them."""
    failed = [c.key for c in cells if c.key not in records]
    if failed:
        raise ValueError(f"{label}: {len(failed)} of {len(cells)} cells failed (errors in "
                         f"{os.path.join(directory, '<key>' + FAILED)}); rerun the same command "
                         "to retry them (finished cells are kept)")


def accuracy(record: dict, final: bool = False) -> float:
    """A cell's accuracy: best over evaluations, or the last one with ``final`` (records of
    older versions hold only ``best_val_accuracy``)."""
    if final and "final_accuracy" in record:
        return float(record["final_accuracy"])
    return float(record["accuracy"] if "accuracy" in record else record["best_val_accuracy"])
