"""Integrity checks per second: the batched check vs the authors'-style per-candidate loop.

    python -m bench.integrity [--n 10000] [--archive 1000,2000] [--repeats 3] [--no-write]

Both judge the same random genomes (authors' init, paper op set, seed 0) in the same order, each
accepted one joining the archive before the next is judged (``commit=True``), in two settings:

* **empty**: the archive starts empty (novelty only against genomes accepted in the batch);
* **archive**: the archive starts with the phenotypes and equations of 3,000 accepted genomes, the
  size a paper-scale search reaches: 1,000 initial ones (``integrity.sample_valid`` with seed 1)
  then 2,000 children (each a ``genome.mutate`` of a parent drawn uniformly from the accepted
  genomes so far, with the same generator, judged 256 at a time against the archive as it
  stands; accepted children join the archive and the parent pool).

The script asserts that verdicts (reason and orientation) and accepted phenotypes are identical
before it reports speed. The reference is ``lfe.core.reference.check`` (one genome at a time: graph
walk, NumPy phenotype, a Python loop for the shape rule, the new phenotype compared with every
archived one in a Python loop). Repeats alternate the two so that load from other processes hits
both; CPU time (``time.process_time``) is reported next to wall time. JAX is never imported.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time

import numpy as np

from bench import common
from lfe.core import genome as genome_lib
from lfe.core import integrity, reference


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def prefilled_archive(n_initial: int, n_children: int, seed: int = 1) -> integrity.Archive:
    """The archive of a search that accepted ``n_initial`` random genomes, then ``n_children``
    mutants of uniformly drawn accepted genomes (see the module docstring)."""
    rng = np.random.default_rng(seed)
    archive = integrity.Archive()
    pool = [g for g, _ in integrity.sample_valid(rng, n_initial, archive)]
    while len(archive) < n_initial + n_children:
        kids = [genome_lib.mutate(rng, pool[rng.integers(len(pool))]) for _ in range(256)]
        verdicts = integrity.check_batch(kids, archive, commit=True,
                                         max_commit=n_initial + n_children - len(archive))
        pool += [g for g, v in zip(kids, verdicts, strict=True) if v.ok]
    return archive


def stages(genomes, archive: integrity.Archive) -> dict[str, float]:
    """CPU seconds of the batched check's stages, best of 5 (step 4 is the rest of a full run)."""
    opset = genomes[0].opset

    def best(fn):
        runs = [timed(fn) for _ in range(5)]
        return runs[0][0], min(r[2] for r in runs)

    out = {}
    args, out["encode genomes"] = best(lambda: genome_lib.arg_array(genomes, np.int64))
    (codes, depth), out["step 1: structure (table look-up)"] = best(
        lambda: integrity.structure(args))
    live = np.flatnonzero(codes == 0)
    ops, t = best(lambda: genome_lib.op_array([genomes[i] for i in live.tolist()], np.int64))
    out["encode genomes"] += t
    expr, out["step 2: evaluate distinct expressions"] = best(
        lambda: integrity.evaluate(ops, args[live], depth[live], opset))
    roots = np.unique(expr.root)

    def shape():
        raw = expr.phenotypes(roots)
        c, s = integrity.shape_rules(raw)
        return integrity.normalise(raw[c == 0], s[c == 0])
    _, out["step 3: phenotypes, shape rule, normalise"] = best(shape)
    copies = iter([archive.copy() for _ in range(5)])  # copied outside the timed calls
    _, total = best(lambda: integrity.check_batch(genomes, next(copies), commit=True))
    out["step 4: novelty, equations, verdicts (rest)"] = total - sum(out.values())
    out["_total"], out["_live"], out["_distinct"] = total, len(live), len(roots)
    return out


def compare(genomes, archive: integrity.Archive, repeats: int) -> dict:
    """Times both checks ``repeats`` times from the same starting archive; checks agreement."""
    n, rows = len(genomes), []
    for r in range(repeats):
        phenotypes, equations = list(archive.phenotypes), set(archive.equations)
        ref, ref_wall, ref_cpu = timed(lambda p=phenotypes, e=equations: [
            reference.check(g, p, e) for g in genomes])
        fresh = archive.copy()  # copied outside the timed call
        got, wall, cpu = timed(lambda f=fresh: integrity.check_batch(genomes, f, commit=True))
        want = [(reason, sign if reason == "ok" else 1) for reason, sign in ref]
        have = [(v.reason, v.sign if v.ok else 1) for v in got]
        agree = sum(x == y for x, y in zip(have, want, strict=True))
        accepted = [v.phenotype for v in got if v.ok]
        same = len(accepted) == len(phenotypes) - len(archive) and all(
            np.array_equal(x, y) for x, y in zip(accepted, phenotypes[len(archive):],
                                                 strict=True))
        if agree != n or not same:
            sys.exit(f"verdicts differ: {n - agree} of {n}; phenotypes equal: {same}")
        rows.append([r + 1, n / ref_wall, n / wall, ref_wall / wall, ref_cpu, cpu, ref_cpu / cpu])
        print(f"  repeat {r + 1}: reference {n / ref_wall:,.0f}/s, batched {n / wall:,.0f}/s, "
              f"{ref_wall / wall:.1f}x wall, {ref_cpu / cpu:.1f}x CPU", flush=True)
    return {"rows": rows, "counts": collections.Counter(v.reason for v in got),
            "accepted": len(accepted), "agree": agree}


HEADERS = ["repeat", "reference genomes/s", "batched genomes/s", "speed-up (wall)",
           "reference CPU s", "batched CPU s", "speed-up (CPU)"]

# Development history of the batched check (CPU ms for the 10,000 genomes of the empty-archive
# setting, best of 7-9 runs of /tmp-free scripts that time each stage as ``stages`` does, on this
# machine under a load average of 14-23; the reference took ~600-780 ms CPU).
ATTEMPTS = [
    ["H5 (c0824d7): bit-mask structure, all distinct nodes evaluated, all near pairs within the "
     "batch decided exactly, recursive equation text", "5.1", "7.1", "25.1", "9.4", "58.2",
     "105"],
    ["step 4: within-batch novelty only against curves accepted earlier (norm-sorted, early "
     "exit), archive extended once per batch", "4.8", "6.1", "23.9", "9.3", "17.8", "62"],
    ["step 1 by a 65,536-entry table of wirings; args encoded for all, ops for live genomes "
     "only; level-1 values cached per op set; ufuncs write into the value table; equations "
     "formatted once per node, in id order", "4.1", "1.5", "21.1", "8.7", "15.3", "51"],
    ["step 3: steps' signs by comparing neighbours (no diff), counts as uint8 sums, zero-step "
     "fill only via the non-zero steps of the few curves with gaps; float64 copy of each curve "
     "made once in step 4", "4.4", "1.5", "22.9", "7.3", "14.4", "50.5"],
    ["tried, not kept: a 2-thread pool over the op groups of step 2 (the NumPy/SciPy ufuncs "
     "release the GIL): on this loaded 2-core machine 115-170 ms wall and 27-30 ms CPU vs "
     "44-79 ms wall and 15 ms CPU serially", "", "", "", "", "", ""],
]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--archive", default="1000,2000", help="initial,children of the archive")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md")
    a = p.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    genomes = [genome_lib.random_genome(rng, "paper", "authors") for _ in range(a.n)]
    integrity.check_batch(genomes[:256], integrity.Archive(), commit=True)  # imports, tables
    n_initial, n_children = (int(x) for x in a.archive.split(","))
    (full, _, build_cpu) = timed(lambda: prefilled_archive(n_initial, n_children))
    settings = {"empty archive": integrity.Archive(), f"archive of {len(full):,}": full}
    results, profiles = {}, {}
    for name, archive in settings.items():
        print(name, flush=True)
        results[name] = compare(genomes, archive, a.repeats)
        profiles[name] = stages(genomes, archive)

    summary, sections = [], []
    for name, res in results.items():
        rows = res["rows"]
        walls, cpus = [r[3] for r in rows], [r[6] for r in rows]
        summary.append([name, statistics.median(r[1] for r in rows),
                        statistics.median(r[2] for r in rows), common.spread(walls),
                        common.spread(cpus), f"{res['agree']:,}/{a.n:,}",
                        "met" if statistics.median(walls) >= 100 else "not met"])
        st = profiles[name]
        counts = res["counts"]
        sections.append("\n\n".join([
            f"**{name}** ({res['accepted']} accepted, bit-identical phenotypes). Verdicts: "
            + ", ".join(f"{r} {counts[r]}" for r in integrity.REASONS if counts[r]) + ".",
            common.table(HEADERS, rows),
            f"Where the batched check's time goes (CPU ms, best of 5; {st['_live']:,} genomes "
            f"pass step 1, {st['_distinct']:,} distinct losses):",
            common.table(["stage", "CPU ms", "share"],
                         [[k, 1e3 * v, f"{100 * v / st['_total']:.0f}%"] for k, v in st.items()
                          if not k.startswith("_")]),
        ]))
    body = "\n\n".join([
        f"{a.n:,} random genomes (authors' init, paper op set, seed {a.seed}) judged in order, "
        f"each accepted one joining the archive before the next (`commit=True`), by the batched "
        f"check (`lfe.core.integrity.check_batch`, one call) and by the authors'-style reference "
        f"(`lfe.core.reference.check`, one genome at a time, novelty compared one by one in a "
        f"Python loop). Settings: an empty archive, and the archive a paper-scale search reaches: "
        f"the phenotypes and equations of {n_initial:,} initial genomes (`sample_valid`, seed 1) "
        f"and "
        f"{n_children:,} accepted children (mutants of uniformly drawn accepted genomes, same "
        f"generator, judged 256 at a time; built in {build_cpu:.1f} s CPU, not timed below). "
        f"The batched check builds two tables once per process in the untimed warm-up call: "
        f"the step-1 table of all 65,536 wirings (~70 ms CPU) and the level-1 node values "
        f"(~3 ms).",
        common.table(["setting", "reference genomes/s (median)", "batched genomes/s (median)",
                      "speed-up wall, median (min–max)", "speed-up CPU, median (min–max)",
                      "same verdicts", "goal ≥ 100×"], summary),
        *sections,
        "What limits each number. *Empty archive*: the reference's ~0.8–0.9 s CPU is mostly "
        "Python: the graph walk of all 10,000 genomes and the shape-rule loop over the ~1,200 "
        "that pass step 1; its float32 op evaluations are the same as the batched check's. The "
        "batched check's floor is that float work: the ~2,500 distinct nodes (1,000 points × 2 "
        "classes; SciPy's Bessel ops alone ~6 ms, `div` ~2 ms) cost ~16 ms CPU of step 2 and "
        "must stay bit-identical to the reference's; reading 100,000 ints out of 10,000 Python "
        "genome objects costs ~4 ms more. With everything else at zero the ratio would be "
        "< 45×, so ≥ 100× is **not met** and cannot be with exact phenotypes on one core. "
        "*Archive of 3,000*: the reference compares each candidate that reaches step 4 with the "
        "archived phenotypes one by one (all 3,000 for every accepted one), ~3.6 s CPU; the "
        "batched check decides the same novelty from the few archived curves in each "
        "candidate's norm window, so its time is nearly that of the empty setting and the ratio "
        "rises to ~50–58× CPU (one repeat hit by other load: 26×), still **not met**: 100× "
        "would need the whole batch in ~36 ms CPU, below steps 1–3 plus the genome reading "
        "here (~35–40 ms). The ratio grows only slowly "
        "with the archive: with 6,000 archived phenotypes (`--archive 2000,4000 --repeats 2 "
        "--no-write`) it was 68–70× CPU, because the reference's cost is mostly the full scans "
        "for the candidates it accepts, and fewer are accepted as the archive fills. "
        "Wall-time ratios swing more than CPU ratios because other processes share the 2 "
        "cores (load average ~15–20 during these runs).",
        "Table of attempts (CPU ms for the empty-archive setting; each row adds to the one "
        "above; development measurements, best of 7–9 runs on this machine under load):",
        common.table(["change", "encode", "step 1", "step 2", "step 3", "step 4 + rest",
                      "total"], ATTEMPTS),
    ])
    print(body)
    if not a.no_write:
        common.write_section("integrity", "1. Integrity checks per second", body)


if __name__ == "__main__":
    main()
