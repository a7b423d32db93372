"""Per-candidate wall time of a fitness worker, before and after a change, in one run.

    python -m bench.fitness_wall [--before=REV] [--after=REV] [--candidates=4] [--repeats=1]
        [--no-write]

A worker process evaluates ``--candidates`` random accepted genomes one after another with
``lfe.worker.evaluate_candidate`` (the gate, then the surrogate), as a pool worker does, on real
CIFAR-10 ($LFE_DATA_DIR) or random data of the same shapes. The same worker runs on this tree
("after") and on a snapshot of revision ``--before`` ("before", ``git archive``), interleaved,
with the same Python environment, genomes and seeds. Each worker starts with an empty
persistent compilation cache, so "after" gains only from compiling once per process.

Protocols: ``configs/quickstart.py``'s (gate 200 steps, surrogate 600, ConvNet, batch 128), with
the gate's threshold at 0 so that every candidate runs both;
``--protocols=paper`` takes the paper's ConvNet ones (gate 800, surrogate 8,000: ~10 min per
candidate here). Reported: the first candidate (dataset load, init, compiles) and the median of
the later ones (what a long-lived worker pays per candidate), and after/before ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEFORE = "4e376a2"  # the last revision that compiled every candidate's steps again


def fitness_config(protocols: str) -> dict:
    """The fitness config (plain data) of ``protocols``: "quickstart" or "paper"."""
    if protocols == "quickstart":
        from configs import quickstart

        return quickstart.get_config().fitness.to_dict()
    if protocols == "paper":
        from lfe.core import protocol

        return protocol.fitness_config().to_dict()
    raise ValueError(f"unknown protocols {protocols!r}; available: quickstart, paper")


def worker(candidates: int, protocols: str) -> dict:
    """Evaluates ``candidates`` genomes in this process; their wall times and records."""
    import numpy as np

    from lfe import worker as worker_lib
    from lfe.core import genome, integrity

    config = fitness_config(protocols)
    config["data_dir"] = os.environ.get("LFE_DATA_DIR", "")
    config["gate_min_train_accuracy"] = 0.0  # every candidate runs the gate and the surrogate
    compile_s = [0.0]  # XLA compile time (trace + lowering + backend compile), all functions

    def on_duration(event: str, seconds: float, **_) -> None:
        if event.startswith("/jax/core/compile/"):
            compile_s[0] += seconds

    import jax.monitoring

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    pairs = integrity.sample_valid(np.random.default_rng(0), candidates, integrity.Archive())
    out = []
    for i, (g, verdict) in enumerate(pairs):
        spec = {"name": f"c{i}", "genome": genome.to_dict(g), "sign": verdict.sign}
        start, cpu, compile_s[0] = time.perf_counter(), time.process_time(), 0.0
        record = worker_lib.evaluate_candidate(spec, config, seed=i)
        out.append({"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu,
                    "compile_s": compile_s[0], "status": record["status"],
                    "fitness": record["fitness"], "steps": record["steps"]})
    return {"candidates": out}


def snapshot(revision: str, into: str) -> str:
    """The tree of ``revision`` extracted into ``into`` (``git archive``)."""
    archive = subprocess.run(["git", "archive", revision], cwd=ROOT, capture_output=True,
                             check=True).stdout
    os.makedirs(into, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    return into


def spawn(tree: str, candidates: int, protocols: str, cache: str) -> dict:
    from lfe.core import malloc

    env = {**malloc.env(os.environ), "PYTHONPATH": tree, "LFE_COMPILATION_CACHE": cache,
           "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    cmd = [sys.executable, "-c", "import sys; sys.argv[0] = 'bench'; from bench import "
           "fitness_wall as f; f.main(sys.argv[1:])", "--worker",
           f"--candidates={candidates}", f"--protocols={protocols}"]
    # the worker code is this file's, run against `tree`'s lfe: copy it there
    here = os.path.abspath(__file__)
    there = os.path.join(tree, "bench", "fitness_wall.py")
    if os.path.abspath(there) != here:
        os.makedirs(os.path.dirname(there), exist_ok=True)
        with open(here) as src:
            code = src.read()
        with open(there, "w") as dst:
            dst.write(code)
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        raise RuntimeError(f"worker in {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def summary(result: dict) -> dict:
    """First candidate and median of the later ones: wall, process CPU and compile seconds."""
    out = {}
    for key in ("wall", "cpu", "compile"):
        values = [c[f"{key}_s"] for c in result["candidates"]]
        later = values[1:] or values
        out[key] = {"first": values[0], "later": statistics.median(later), "each": values}
    return out


def report(runs: dict[str, list[dict]], args) -> str:
    from bench import common

    rows = []
    for side in ("before", "after"):
        for r, res in enumerate(runs[side]):
            s = summary(res)
            statuses = ", ".join(sorted({c["status"] for c in res["candidates"]}))
            rows.append([side, r + 1] + [f"{s[k]['first']:.1f} / {s[k]['later']:.1f}"
                                         for k in ("wall", "cpu", "compile")]
                        + [" / ".join(f"{w:.0f}" for w in s["wall"]["each"]), statuses])
    ratios = {k: [] for k in ("wall", "cpu")}
    for before, after in zip(runs["before"], runs["after"], strict=True):
        b, a = summary(before), summary(after)
        for k in ratios:
            ratios[k].append((a[k]["first"] / b[k]["first"], a[k]["later"] / b[k]["later"]))
    gaps = [abs(x["fitness"] - y["fitness"])
            for b, a in zip(runs["before"], runs["after"], strict=True)
            for x, y in zip(b["candidates"], a["candidates"], strict=True)
            if x["fitness"] is not None and y["fitness"] is not None]
    text = (f"Before = revision {args.before} (every candidate compiles its train and eval "
            f"steps again), after = {f'revision {args.after}' if args.after else 'this tree'} "
            f"(one compile per process and protocol "
            f"shape; the genome is an argument of the step). {args.candidates} candidates per "
            f"worker process, {args.protocols} protocols, {args.repeats} repeat(s), sides "
            f"interleaved, empty compilation cache per worker. Seconds, as first candidate / "
            f"median of the later ones; CPU = process CPU time over all threads (less "
            f"sensitive to other load than wall time); compile = JAX's trace, lowering and "
            f"XLA compile time inside the candidate.\n\n")
    text += common.table(["side", "repeat", "wall", "CPU", "compile", "wall, each candidate",
                          "status"], rows)
    text += "\n\nafter / before, per repeat (first candidate, later candidates): " + "; ".join(
        f"{k} " + ", ".join(f"{f:.2f} / {later:.2f}" for f, later in ratios[k])
        for k in ratios)
    text += (". Largest fitness difference between the sides, same genome and seed: "
             + (f"{max(gaps):.4f}" if gaps else "none comparable")
             + " (float rounding differs between the forms; 600 steps amplify it).\n")
    return text


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--before", default=BEFORE)
    p.add_argument("--after", default="", help="a revision to snapshot (default: this tree)")
    p.add_argument("--candidates", type=int, default=4)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--protocols", default="quickstart")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.candidates, args.protocols)), flush=True)
        return
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        old = snapshot(args.before, os.path.join(tmp, "before"))
        new = snapshot(args.after, os.path.join(tmp, "after")) if args.after else ROOT
        for r in range(args.repeats):
            order = ("before", "after") if r % 2 == 0 else ("after", "before")
            for side in order:
                tree = old if side == "before" else new
                cache = os.path.join(tmp, f"cache-{side}-{r}")
                res = spawn(tree, args.candidates, args.protocols, cache)
                runs[side].append(res)
                s = summary(res)
                print(f"repeat {r + 1} {side:6s} " + ", ".join(
                    f"{k} first {s[k]['first']:.1f} s, later {s[k]['later']:.1f} s"
                    for k in ("wall", "cpu", "compile")), flush=True)
    body = report(runs, args)
    print(body)
    if not args.no_write:
        from bench import common

        common.write_section("fitness_wall", "2f. Per-candidate wall time of a fitness worker "
                             "(before / after issue #17)", body)


if __name__ == "__main__":
    main()
