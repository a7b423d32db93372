"""3. Parallel fitness on CPU: the process-pool executor vs one process using every core.

    python -m bench.pool [--quick] [--candidates N] [--steps 800] [--repeats 1] [--no-write]

Both sides evaluate the same candidates (library genome losses, seeds 0..N-1) on the gate
protocol (``protocol.fitness_config().gate``: ConvNet, batch 128, Adam 1e-3, warm-up 800 of a
cosine over 8,000, 800 steps, no validation) on the real CIFAR-10 of ``$LFE_DATA_DIR``, through
``lfe.worker.train_cell`` submitted to ``lfe.executors.pool.ProcessPoolExecutor``:

* pool: one worker per core, each pinned to its core with single-threaded XLA (the ``pool``
  executor as evolution uses it);
* one process: a single unpinned worker whose XLA uses every core (intra-op threads).

Workers are started and have loaded the data before the clock starts (a long evolution amortises
that); each candidate's compilation is timed, since every new loss compiles its own step.
Candidates per hour = N / wall time; the ratio is pool over one process (goal ≥ 1.3×).
``--quick`` runs 100-step gates of 2 candidates per core.
"""

from __future__ import annotations

import argparse
import os
import time

from bench import common


def _warm(seconds: float) -> int:
    """Worker warm-up: import the trainer, load the data, hold the worker for a moment (so each
    worker takes one warm-up task)."""
    from lfe.training import fitness

    fitness.load_dataset("cifar10", "")
    time.sleep(seconds)
    return os.getpid()


def _specs(n: int) -> list[dict]:
    from lfe.training import losses as losses_lib

    names = [x for x in losses_lib.available() if losses_lib.get(x).genome is not None]
    return [losses_lib.to_spec(losses_lib.get(names[i % len(names)])) for i in range(n)]


def measure(workers: int, pin: bool, specs: list[dict], protocol: dict) -> dict:
    """Wall time of evaluating ``specs`` on a fresh ProcessPoolExecutor(workers, pin)."""
    from lfe import worker
    from lfe.executors.pool import ProcessPoolExecutor

    ex = ProcessPoolExecutor(workers, pin=pin)
    try:
        for i in range(workers):
            ex.submit(f"warm{i}", "bench.pool:_warm", 2.0)
        while ex.pending:
            for key, outcome in ex.wait_any():
                if outcome.error:
                    raise RuntimeError(f"{key}: {outcome.error}")
        t0 = time.perf_counter()
        for i, spec in enumerate(specs):
            ex.submit(f"{i:04d}", worker.TRAIN_CELL, spec, protocol, "cifar10", "", i)
        results = {}
        while ex.pending:
            for key, outcome in ex.wait_any():
                if outcome.error:
                    raise RuntimeError(f"candidate {key}: {outcome.error}")
                results[key] = outcome.value
        wall = time.perf_counter() - t0
    finally:
        ex.close()
    ordered = [results[k] for k in sorted(results)]
    return {"wall_s": wall, "per_hour": 3600 * len(specs) / wall,
            "train_accs": [r["best_train_accuracy"] for r in ordered],
            "steps": sum(r["steps_run"] for r in ordered)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--candidates", type=int, default=0)
    parser.add_argument("--steps", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if not os.environ.get("LFE_DATA_DIR"):
        raise SystemExit("set LFE_DATA_DIR to the CIFAR-10 binary directory")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from lfe.core import protocol as protocol_lib

    cores = len(os.sched_getaffinity(0))
    n = args.candidates or 2 * cores
    protocol = protocol_lib.fitness_config().gate
    protocol.steps = args.steps or (100 if args.quick else 800)
    specs = _specs(n)
    rows = []
    for repeat in range(args.repeats):
        one = measure(1, False, specs, protocol.to_dict())
        pool = measure(cores, True, specs, protocol.to_dict())
        ratio = pool["per_hour"] / one["per_hour"]
        diff = max(abs(a - b) for a, b in zip(pool["train_accs"], one["train_accs"],
                                                strict=True))
        rows.append([repeat + 1, one["wall_s"], one["per_hour"], pool["wall_s"],
                     pool["per_hour"], ratio, diff])
        print(f"repeat {repeat + 1}: one process {one['per_hour']:.1f}/h, pool of {cores} "
              f"{pool['per_hour']:.1f}/h, ratio {ratio:.2f}x", flush=True)
    ratios = [r[5] for r in rows]
    body = common.table(
        ["repeat", "one process: wall s", "candidates/h", f"pool ({cores} pinned): wall s",
         "candidates/h", "ratio", "max |Δ best train acc|"], rows)
    text = (f"{n} candidates (library genome losses, seeds 0..{n - 1}), gate protocol "
            f"({protocol.steps} steps, batch 128, ConvNet, real CIFAR-10), workers warm before "
            f"the clock starts.\n\n{body}\n\nRatio pool / one process, median (min–max) over "
            f"{len(ratios)} repeat(s): {common.spread(ratios)}×. Goal: ≥ 1.3×.\n\n"
            "The Δ column: the same candidates give the same training accuracies up to float "
            "summation order. Other jobs on the machine distort this ratio (Linux autogroup "
            "shares CPU between sessions regardless of nice): run it alone.")
    print(text)
    if not args.no_write:
        common.write_section("pool", "3. Parallel fitness on CPU", text)
    return {"rows": rows}


if __name__ == "__main__":
    main()
