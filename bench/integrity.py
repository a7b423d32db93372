"""Integrity checks per second: the batched check vs the authors'-style per-candidate loop.

    python -m bench.integrity [--n 10000] [--repeats 3] [--no-write]

Both judge the same random genomes (authors' init, paper op set) in the same order with novelty
against everything accepted so far (``commit=True``); the script asserts that the verdicts
(reason and orientation) and the accepted phenotypes are identical before it reports speed. The
reference is ``lfe.reference.check`` (one genome at a time: graph walk, NumPy phenotype, a Python
loop for the shape rule, one-by-one novelty comparisons). Repeats alternate the two so that load
from other processes hits both; the ratio is taken per repeat. JAX is never imported.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time

import numpy as np

from bench import common
from lfe import genome as genome_lib
from lfe import integrity, reference


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def run_reference(genomes):
    phenotypes, equations = [], set()
    return [reference.check(g, phenotypes, equations) for g in genomes], phenotypes


def stages(genomes, opset) -> dict[str, float]:
    """CPU seconds of the batched check's stages (the rest is novelty and the verdicts)."""
    out = {}
    (ops, args), _, out["encode genomes"] = timed(lambda: integrity.encode(genomes))
    (codes, depth), _, out["step 1: structure"] = timed(
        lambda: integrity.structure(ops, args, opset))
    live = np.nonzero(codes == 0)[0]
    expr, _, out["step 2: evaluate distinct expressions"] = timed(
        lambda: integrity.evaluate(ops[live], args[live], depth[live], opset))
    roots = np.unique(expr.root)
    raw = expr.phenotypes(roots)
    (c, s), _, out["step 3: shape rule + normalise"] = timed(
        lambda: (lambda c, s: (c, integrity.normalise(raw[c == 0], s[c == 0])))(
            *integrity.shape_rules(raw)))
    out["_live"], out["_distinct"] = len(live), len(roots)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md")
    a = p.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    genomes = [genome_lib.random_genome(rng, "paper", "authors") for _ in range(a.n)]
    integrity.check_batch(genomes[:256], integrity.Archive(), commit=True)  # warm imports

    rows, ratios, cpu_ratios = [], [], []
    for r in range(a.repeats):
        (ref, ref_ph), ref_wall, ref_cpu = timed(lambda: run_reference(genomes))
        got, wall, cpu = timed(lambda: integrity.check_batch(genomes, integrity.Archive(),
                                                             commit=True))
        want = [(reason, sign if reason == "ok" else 1) for reason, sign in ref]
        have = [(v.reason, v.sign if v.ok else 1) for v in got]
        agree = sum(x == y for x, y in zip(have, want, strict=True))
        accepted = [v.phenotype for v in got if v.ok]
        same_ph = len(accepted) == len(ref_ph) and all(
            np.array_equal(x, y) for x, y in zip(accepted, ref_ph, strict=True))
        if agree != a.n or not same_ph:
            sys.exit(f"verdicts differ: {a.n - agree} of {a.n}; phenotypes equal: {same_ph}")
        ratios.append(ref_wall / wall)
        cpu_ratios.append(ref_cpu / cpu)
        rows.append([r + 1, a.n / ref_wall, a.n / wall, ratios[-1], ref_cpu, cpu,
                     cpu_ratios[-1]])
        print(f"repeat {r + 1}: reference {a.n / ref_wall:,.0f}/s, batched {a.n / wall:,.0f}/s, "
              f"{ratios[-1]:.1f}x wall, {cpu_ratios[-1]:.1f}x CPU", flush=True)

    counts = collections.Counter(v.reason for v in got)
    st = stages(genomes, genomes[0].opset)
    best_cpu = min(row[5] for row in rows)
    rest = best_cpu - sum(v for k, v in st.items() if not k.startswith("_"))
    body = "\n\n".join([
        f"{a.n:,} random genomes (authors' init, paper op set, seed {a.seed}), judged in order "
        f"with novelty against all accepted so far. Verdicts (reason and orientation) of the two "
        f"agree on {agree:,}/{a.n:,} genomes and the {len(accepted)} accepted phenotypes are "
        f"bit-identical (same NumPy ops in float32, so no float32 tie differences arise).",
        common.table(["repeat", "reference genomes/s", "batched genomes/s", "speed-up (wall)",
                      "reference CPU s", "batched CPU s", "speed-up (CPU)"], rows),
        f"Speed-up, median (min–max) over {a.repeats} repeats: wall {common.spread(ratios)}×, "
        f"CPU time {common.spread(cpu_ratios)}×. Goal: ≥ 100×.",
        "Verdicts: " + ", ".join(f"{r} {counts[r]}" for r in integrity.REASONS if counts[r]) + ".",
        "Where the batched check's time goes (CPU s, one run; "
        f"{st['_live']:,} genomes pass step 1, {st['_distinct']:,} distinct losses):",
        common.table(["stage", "CPU s", "share"],
                     [[k, v, f"{100 * v / best_cpu:.0f}%"] for k, v in st.items()
                      if not k.startswith("_")]
                     + [["step 4: novelty, equations, verdicts (rest)", rest,
                         f"{100 * rest / best_cpu:.0f}%"]]),
        "What limits it: ~90% of random genomes fail step 1, which the reference already does "
        "in ~10 µs each, and the reference's time (~0.8 s CPU for 10,000) is mostly its Python "
        "shape-rule loop over the ~12% that pass. For those the batched check still pays the "
        "float32 evaluation of every distinct node (1,000 points × 2 classes; SciPy's Bessel "
        "and erf ops dominate) and, largest, step 4: random genomes give clusters of "
        "near-identical curves (~13,000 pairs within 0.01 among ~580 distinct ones), each "
        "pair decided exactly, plus one equation string and one Verdict per candidate. "
        "100× would need the whole batch in ~8 ms of CPU: less than steps 2–3 alone cost here.",
    ])
    print(body)
    if not a.no_write:
        common.write_section("integrity", "1. Integrity checks per second", body)


if __name__ == "__main__":
    main()
