"""The phenotype demo (``mode: phenotypes``): Figures 2–3 and integrity-check statistics.

Writes to the work directory: ``phenotypes.png`` / ``phenotypes_zoom.png`` for the configured
losses, ``integrity_stats.json`` (how many random genomes each rule rejected, the acceptance rate
and the check's throughput) and ``accepted.jsonl`` (the accepted random genomes with their
orientation and equation, importable with ``lfe.training.losses.resolve``).
"""

from __future__ import annotations

import collections
import json
import os
import time

import numpy as np

from lfe.core import equation, genome, integrity
from lfe.training import losses, plots


def integrity_statistics(seed: int, n: int, *, op_set: str, init: str,
                         batch_size: int = 1024) -> tuple[dict, list[dict]]:
    """Runs the check on ``n`` random genomes (novelty against all accepted so far)."""
    rng = np.random.default_rng(seed)
    archive = integrity.Archive()
    counts: collections.Counter = collections.Counter()
    accepted = []
    start = time.perf_counter()
    for first in range(0, n, batch_size):
        batch = [genome.random_genome(rng, op_set, init) for _ in range(min(batch_size, n - first))]
        for g, v in zip(batch, integrity.check_batch(batch, archive, commit=True), strict=True):
            counts[v.reason] += 1
            if v.ok:
                accepted.append({"genome": genome.to_dict(g), "sign": v.sign,
                                 "equation": equation.text(g, v.sign)})
    seconds = time.perf_counter() - start
    stats = {"genomes": n, "accepted": counts["ok"], "acceptance_rate": counts["ok"] / max(n, 1),
             "rejected_by": {r: counts[r] for r in integrity.REASONS if r != "ok"},
             "seconds": round(seconds, 3), "genomes_per_second": round(n / seconds, 1),
             "seed": seed, "op_set": op_set, "init": init}
    return stats, accepted


def run(config, workdir: str) -> dict:
    os.makedirs(workdir, exist_ok=True)
    names = [s.strip() for s in config.losses.split(",") if s.strip()]
    figures = plots.write_figures([losses.resolve(s) for s in names], workdir)
    stats, accepted = integrity_statistics(config.seed, config.num_random, op_set=config.op_set,
                                           init=config.init)
    with open(os.path.join(workdir, "integrity_stats.json"), "w") as f:
        json.dump(stats, f, indent=2)
    with open(os.path.join(workdir, "accepted.jsonl"), "w") as f:
        f.writelines(json.dumps(a) + "\n" for a in accepted)
    print(f"phenotype figures: {', '.join(figures)}")
    print(f"integrity check: {stats['accepted']}/{stats['genomes']} random genomes accepted "
          f"({100 * stats['acceptance_rate']:.1f}%), {stats['genomes_per_second']:.0f} genomes/s")
    for reason, count in stats["rejected_by"].items():
        print(f"  rejected: {reason:<20} {count}")
    for a in accepted[:5]:
        print(f"  accepted e.g.: {a['equation']}")
    return stats
