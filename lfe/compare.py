"""``mode: compare`` — train a grid of losses × seeds with one protocol and tabulate the result.

Each (loss, seed) cell is one real training run; its record is written to
``<workdir>/cells/<loss>__seed<k>.json`` (atomically) the moment it finishes, so an interrupted
grid resumes where it stopped and never retrains a finished cell. ``results.md`` /
``results.csv`` hold mean ± std of the best validation accuracy per loss, Welch's t-test against
cross-entropy (one-sided "greater", as the paper's Table 4, and two-sided), and the paper's
numbers beside ours when the config gives them.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time

import ml_collections

from lfe import executors, fileio, fitness, losses, stats

BASELINE = "cross_entropy"


def _names(spec) -> list[str]:
    return [s.strip() for s in spec.split(",") if s.strip()] if isinstance(spec, str) \
        else list(spec)


def cell_id(loss_name: str, seed: int) -> str:
    return f"{loss_name}__seed{seed}"


def _check_workdir(config, workdir: str) -> None:
    """A work directory belongs to one protocol: refuse to mix results of different ones."""
    path = os.path.join(workdir, "config.json")
    mine = {"protocol": config.protocol.to_dict(), "dataset": config.dataset}
    if os.path.exists(path):
        saved = fileio.read_json(path)
        theirs = {"protocol": saved.get("protocol"), "dataset": saved.get("dataset")}
        if json.loads(json.dumps(theirs)) != json.loads(json.dumps(mine)):
            raise ValueError(f"{workdir} holds a grid with a different protocol or dataset; "
                             "use a new --workdir")
    fileio.write_json_atomic(path, json.loads(json.dumps(config.to_dict())))


def finished_cells(workdir: str) -> dict[str, dict]:
    cells = {}
    directory = os.path.join(workdir, "cells")
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        if name.endswith(".json") and not name.startswith("."):
            try:
                cells[name[:-5]] = fileio.read_json(os.path.join(directory, name))
            except ValueError:
                print(f"warning: ignoring unreadable cell {name}; it will be rerun",
                      file=sys.stderr)
    return cells


def run(config, workdir: str) -> dict:
    names = _names(config.losses)
    specs = {n: fitness.loss_spec(losses.resolve(n)) for n in names}  # fail fast on bad names
    seeds = list(range(config.seeds)) if isinstance(config.seeds, int) else list(config.seeds)
    os.makedirs(workdir, exist_ok=True)
    _check_workdir(config, workdir)
    done = finished_cells(workdir)
    todo = [(n, s) for s in seeds for n in names if cell_id(n, s) not in done]
    print(f"compare: {len(done)} cells done, {len(todo)} to run "
          f"({len(names)} losses x {len(seeds)} seeds) in {workdir}")
    executor = executors.make(config.executor, config.get("workers") or None)
    protocol = config.protocol.to_dict()
    start, finished = time.time(), 0
    try:
        queue = list(todo)
        while queue or executor.pending:
            while queue and executor.pending < executor.capacity:
                n, s = queue.pop(0)
                executor.submit(cell_id(n, s), fitness.train_task, specs[n], protocol,
                                config.dataset, config.get("data_dir", ""), s)
            for key, outcome in executor.wait_any():
                if outcome.error is not None:
                    print(f"  {key}: FAILED ({outcome.error}); rerun to retry", file=sys.stderr)
                    continue
                name, seed = key.rsplit("__seed", 1)
                record = {"loss": name, "seed": int(seed), **outcome.value,
                          "git_revision": fileio.git_revision(), "dataset": config.dataset,
                          "protocol": protocol}
                fileio.write_json_atomic(os.path.join(workdir, "cells", key + ".json"), record)
                done[key] = record
                finished += 1
                eta = (time.time() - start) / finished * (len(todo) - finished)
                print(f"  [{finished}/{len(todo)}] {key}: best val acc "
                      f"{100 * record['best_val_accuracy']:.2f}% ({record['status']}, "
                      f"{record['wall_time_s']:.0f}s) ETA {eta / 60:.1f} min", flush=True)
    finally:
        executor.close()
    table = results_table(done, names, dict(config.get("paper") or {}))
    write_results(table, workdir, config)
    return table


def results_table(cells: dict[str, dict], names: list[str], paper: dict) -> list[dict]:
    """One row per loss: n, mean, std (in %), Welch p vs cross-entropy, the paper's value."""
    by_loss = {n: [100 * c["best_val_accuracy"] for c in cells.values() if c["loss"] == n]
               for n in names}
    base = by_loss.get(BASELINE, [])
    rows = []
    for n in names:
        s = stats.summarize(by_loss[n])
        rows.append({"loss": n, "n": s.n, "mean": s.mean, "std": s.std,
                     "p_greater": stats.welch(by_loss[n], base, "greater") if n != BASELINE
                     else None,
                     "p_two_sided": stats.welch(by_loss[n], base) if n != BASELINE else None,
                     "paper": paper.get(n, ""), "values": by_loss[n]})
    return rows


def _p(p) -> str:
    if p is None:
        return "-"
    return "n/a" if p != p else ("p < 0.001" if p < 0.001 else f"p = {p:.3f}")


def format_markdown(rows: list[dict], title: str) -> str:
    best = max((r["mean"] for r in rows if r["n"]), default=None)
    lines = [f"# {title}", "",
             "| loss | runs | validation accuracy (%) | Welch p (> CE, one-sided) | "
             "Welch p (two-sided) | paper |", "|---|---|---|---|---|---|"]
    for r in rows:
        cell = f"{r['mean']:.3f} ± {r['std']:.3f}" if r["n"] else "-"
        if r["n"] and r["mean"] == best:
            cell = f"**{cell}**"
        lines.append(f"| {r['loss']} | {r['n']} | {cell} | {_p(r['p_greater'])} | "
                     f"{_p(r['p_two_sided'])} | {r['paper'] or '-'} |")
    return "\n".join(lines) + "\n"


def write_results(rows: list[dict], workdir: str, config) -> None:
    title = config.get("title") or "Loss comparison"
    md = format_markdown(rows, title)
    command = config.get("command") or ""
    md += (f"\nBest validation accuracy over evaluations every {config.protocol.eval_every} "
           f"steps; {config.protocol.steps} steps of `{config.protocol.model}` on "
           f"{config.dataset}. Per-run records: `cells/`. Code: {fileio.git_revision()}.\n")
    if command:
        md += f"\nReproduce: `{command}`\n"
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(workdir, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["loss", "runs", "mean", "std", "p_greater_vs_ce", "p_two_sided_vs_ce",
                    "paper", "values"])
        for r in rows:
            w.writerow([r["loss"], r["n"], r["mean"], r["std"], r["p_greater"],
                        r["p_two_sided"], r["paper"], " ".join(f"{v:.2f}" for v in r["values"])])
    print(md)


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.mode = "compare"
    c.title = "Loss comparison"
    c.losses = "cross_entropy,neuroloss1,neuroloss2,neuroloss3"
    c.seeds = 5  # an int n means seeds 0..n-1
    c.dataset = "cifar10"
    c.data_dir = ""
    c.protocol = fitness.training_protocol()
    c.executor = "pool"  # "inprocess" | "pool"
    c.workers = 0  # 0 = one per core
    c.paper = ml_collections.ConfigDict()
    c.command = ""
    return c
