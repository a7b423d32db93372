"""7. One accelerator: ConvNet candidates/hour (sequential vs vmapped), the EfficientNetV2-S
surrogate, bf16 against float32, the K the vmap executor chooses, peak device memory.

    python -m bench.gpu_suite [--synthetic | --data-dir DIR] [--out DIR] [--budget-s 400]
                              [--tiny] [--no-write] [--benchmarks PATH]
    python -m bench.gpu_suite --from-json results.json   # write the section of a finished run

Every measurement is a real, shortened training run through the library's entry points, timed
at its evaluation boundaries (``log_fn``), with each validation pass timed on its own:

* ConvNet, sequential: ``lfe.training.train.run`` as ``fitness.train_once`` calls it, with an
  evolved genome's loss in the data form — a gate run (800 steps, no validation) and a
  surrogate run (validation of 5,000 images every 100 steps), after one untimed warm-up run with
  another genome (the process's first compile: CUDA, cuDNN and autotuning start-up, and the
  step that every later candidate of the process reuses).
* ConvNet, vmapped: ``lfe.training.population.run`` with K library-loss genomes, K = 1, 8, 32,
  128; its step is compiled once per K per process and reused by every later population.
* EfficientNetV2-S: ``protocol.surrogate_protocol()`` (96 px, batch 64, RandAugment, dropout
  0.1) through ``train.run``, shortened, with bf16 compute (``with_precision``) and in float32
  (bf16 first, so that each run's peak memory is its own).
* K choice: ``lfe.training.k_choice`` on the ConvNet surrogate protocol — what the ``vmap``
  executor measures and picks on this device (K = 1, 2, 4, ... 128 while each doubling gains
  10%).
* Precision: the ConvNet surrogate with bf16 compute; then, as time allows, the ConvNet
  surrogate and EfficientNetV2-S runs under ``jax.default_matmul_precision("highest")`` (full
  float32) against JAX's default (on NVIDIA GPUs XLA may use TF32 for float32 convolutions).

From the boundary times: the first interval minus one steady interval is "compile + setup"
(init, compiles, first evaluation's compile); steady s/step and s/evaluation are medians over
the later intervals. Per-candidate time is extrapolated to the real protocol: gate 800 steps +
surrogate 2,000 or 8,000 steps with an evaluation every 100 (all candidates pass the gate, none
stops early: an upper bound). Peak device memory is the process's ``peak_bytes_in_use`` after
each measurement (it cannot be reset: a measurement that did not raise it used at most that).
Rows run in the order above until ``--budget-s`` would be passed (each row's expected time is
estimated from the rows before it); results go to ``--out``/gpu_suite.json after every
measurement, so a run cut short keeps what it measured. ``--tiny`` shrinks everything (data,
steps, K, a two-stage EfficientNetV2) to run on a CPU: it checks the code path, its figures mean
nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import platform
import statistics
import time

from bench import common
from bench.gpu_suite_report import render, write

FULL = {"train": 50_000, "val": 5_000, "eval_every": 100, "gate_steps": 800, "sur_steps": 1000,
        "pop_steps": 300, "ks": (1, 8, 32, 128), "eff_steps": 400, "eff_batch": 64,
        "eff_size": 96, "eval_batch": 500, "k_max": 128}
TINY = {"train": 512, "val": 64, "eval_every": 2, "gate_steps": 4, "sur_steps": 6,
        "pop_steps": 4, "ks": (2,), "eff_steps": 4, "eff_batch": 8, "eff_size": 32,
        "eval_batch": 64, "k_max": 2}


def load_data(args, sizes):
    """(Dataset, description): random uint8 CIFAR-10-shaped images or the real CIFAR-10."""
    import numpy as np

    from lfe.training import data as data_lib

    if args.synthetic or args.tiny:
        rng = np.random.default_rng(0)
        n, v = sizes["train"], sizes["val"]
        x = rng.integers(0, 256, (n + v, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, 10, n + v).astype(np.int32)
        return (data_lib.from_arrays(x[:n], y[:n], x[n:], y[n:], x[n:], y[n:], num_classes=10),
                f"synthetic: random uint8 images of CIFAR-10's shape, {n:,} train / {v:,} val, "
                "labels 0-9 (throughput only: accuracies are chance)")
    ds = data_lib.load("cifar10", data_dir=args.data_dir or None)
    return ds, f"CIFAR-10 ({len(ds.train_labels):,} train / {len(ds.val_labels):,} val)"


def device_memory() -> dict:
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    return {k: stats.get(k) for k in ("peak_bytes_in_use", "bytes_in_use", "bytes_limit")}


@contextlib.contextmanager
def evaluation_starts(clock: dict):
    """Sets ``clock["eval"]`` when a validation pass of ``train.run``/``population.run`` starts
    (the steps before it are synchronised: both runs fetch their metrics first)."""
    from lfe.training import population
    from lfe.training import train as train_lib

    evaluate, population_fns = train_lib.evaluate, population._population_fns

    def timed_evaluate(*args):
        clock.setdefault("eval", time.perf_counter())
        return evaluate(*args)

    def timed_population_fns(*args):
        step_fn, eval_fn, eval_aug = population_fns(*args)

        def timed_eval(*eval_args):
            clock.setdefault("eval", time.perf_counter())
            return eval_fn(*eval_args)

        return step_fn, timed_eval, eval_aug

    train_lib.evaluate, population._population_fns = timed_evaluate, timed_population_fns
    try:
        yield
    finally:
        train_lib.evaluate, population._population_fns = evaluate, population_fns


def timeline(run) -> dict:
    """Runs ``run(log_fn)``; from the times of its evaluation boundaries (``log_fn`` calls), the
    compile + setup time, the steady s/step and s/evaluation."""
    marks: dict[int, tuple[float, float]] = {}  # step -> (time, its evaluation's duration)
    clock: dict[str, float] = {}

    def log(*args):  # train.run: log(record); population.run: log(candidate, record)
        step, now = int(args[-1]["step"]), time.perf_counter()
        if step not in marks:
            marks[step] = (now, now - clock.pop("eval", now))

    start = time.perf_counter()
    with evaluation_starts(clock):
        results = run(log)
    wall = time.perf_counter() - start
    steps = sorted(marks)
    if not steps:
        raise RuntimeError("the run reached no evaluation boundary")
    times, evals = [start] + [marks[s][0] for s in steps], [marks[s][1] for s in steps]
    bounds = [0] + steps
    per_step = [(times[i + 1] - times[i] - evals[i]) / (bounds[i + 1] - bounds[i])
                for i in range(1, len(steps))]
    step_s = statistics.median(per_step) if per_step else float("nan")
    eval_s = statistics.median(evals[1:]) if len(evals) > 1 else evals[0]
    first = times[1] - start
    return {"steps": steps[-1], "wall_s": wall, "first_interval_s": first, "step_s": step_s,
            "eval_s": eval_s, "compile_s": first - steps[0] * step_s - eval_s,
            "status": sorted({r.status for r in results}), **device_memory()}


def protocol(base, steps: int, sizes, *, validate: bool):
    p = base.copy_and_resolve_references()
    p.steps, p.validate, p.stop_rules = steps, validate, ()
    p.eval_every, p.eval_batch_size = sizes["eval_every"], sizes["eval_batch"]
    if p.get("phases"):
        p.phases = [dict(p.phases[0], steps=steps, image_size=sizes["eff_size"])]
        p.batch_size = sizes["eff_batch"]
    return p


def model_for(proto, model=None):
    """The protocol's model (its ``model_kwargs``: the precision), or ``model`` with the
    protocol's compute dtype (the tiny EfficientNetV2)."""
    from lfe.core import protocol as protocol_lib
    from lfe.training.models import get_model

    if model is not None:
        dtype = protocol_lib.precision(proto)
        return model if dtype == "float32" else model.clone(dtype=dtype)
    return get_model(proto.model, num_classes=10, **dict(proto.get("model_kwargs") or {}))


def sequential(ds, loss, proto, *, model=None, matmul=None) -> dict:
    """``train.run`` as ``fitness.train_once`` calls it: the loss in the protocol's form (an
    evolved genome's data form), the step compiled once per process and shared by later runs."""
    import jax

    from lfe.training import train as train_lib
    from lfe.training.data import pipeline

    model = model_for(proto, model)
    ctx = jax.default_matmul_precision(matmul) if matmul else contextlib.nullcontext()
    with ctx:
        return timeline(lambda log: [train_lib.run(
            model, loss.training_loss(proto.get("loss_form", "data")), proto, seed=0,
            train_images=ds.train_images, train_labels=ds.train_labels,
            val_images=ds.val_images if proto.validate else None,
            val_labels=ds.val_labels if proto.validate else None,
            train_batches=pipeline.train_batches, eval_batches=pipeline.eval_batches,
            log_fn=log)])


def vmapped(ds, k: int, proto) -> dict:
    """``population.run`` with K library genomes (repeated past the library's size)."""
    from bench.population import _losses
    from lfe.training import population

    losses = _losses(k)
    return timeline(lambda log: population.run(
        model_for(proto), [x.genome for x in losses], [x.sign for x in losses],
        proto, train_images=ds.train_images, train_labels=ds.train_labels,
        val_images=ds.val_images, val_labels=ds.val_labels, seeds=list(range(k)), log_fn=log))


def k_choice_run(proto, max_k: int) -> dict:
    """What the ``vmap`` executor's K choice (``lfe.training.k_choice``) measures and picks for
    ``proto`` on this device (its table and disk cache bypassed)."""
    from lfe.training import k_choice

    rows, start = [], time.perf_counter()
    rate = k_choice.measure(proto, image_shape=(32, 32, 3), num_classes=10, on_row=rows.append)
    choice = k_choice.choose(proto, image_shape=(32, 32, 3), num_classes=10, table={}, file="",
                             rate=rate, max_k=max_k)
    failed = [r for r in choice.rates if "error" in r]
    return {"k": choice.k, "source": choice.source, "rows": rows + failed,
            "wall_s": time.perf_counter() - start, "max_k": max_k}


def tiny_effnet():
    from lfe.training.models import efficientnetv2, get_model

    stages = (efficientnetv2.EFFNETV2_S[3]._replace(repeats=1, features=16),)
    return get_model("efficientnetv2_s", num_classes=10, stages=stages, stem_features=8,
                     head_features=16)


def protocols():
    """(the fitness config: gate, surrogate, ...; the paper's EfficientNetV2-S surrogate)."""
    from lfe.core import protocol as protocol_lib

    return protocol_lib.fitness_config(), protocol_lib.surrogate_protocol()


def measure(args) -> dict:
    import jax

    from lfe.core import protocol as protocol_lib
    from lfe.training import losses

    sizes = TINY if args.tiny else FULL
    ds, data = load_data(args, sizes)
    dev = jax.devices()[0]
    result = {"device": dev.device_kind, "platform": dev.platform, "jax": jax.__version__,
              "jaxlib": common.version("jaxlib"), "python": platform.python_version(),
              "command": common.command(), "revision": args.revision or common.git_revision(),
              "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
              "data": data, "tiny": args.tiny, "budget_s": args.budget_s, "sizes": sizes,
              "flax": common.version("flax"), "rows": [], "skipped": [], "errors": []}
    (cfg, paper_surrogate), start = protocols(), time.perf_counter()
    gate = protocol(cfg.gate, sizes["gate_steps"], sizes, validate=False)
    sur = protocol(cfg.surrogate, sizes["sur_steps"], sizes, validate=True)
    pop = protocol(cfg.surrogate, sizes["pop_steps"], sizes, validate=True)
    eff = protocol(paper_surrogate, sizes["eff_steps"], sizes, validate=True)
    bf16 = {name: protocol_lib.with_precision(p.copy_and_resolve_references(), "bfloat16")
            for name, p in (("sur", sur), ("eff", eff))}
    eff_model = tiny_effnet() if args.tiny else None
    # evolved-candidate losses (the data form: one compiled step per process for all genomes)
    loss, other = (losses.from_genome(losses.get(n).genome, losses.get(n).sign, name=n)
                   for n in ("cross_entropy", "neuroloss2"))

    full = not args.tiny  # --tiny: no warm-up run, no "highest" rows, K = 2 only
    plan = [(full, "warm-up (first compile)", "convnet", 1, "default",
             lambda: sequential(ds, other, sur)),
            (True, "sequential gate", "convnet", 1, "default", lambda: sequential(ds, loss, gate)),
            (True, "sequential surrogate", "convnet", 1, "default",
             lambda: sequential(ds, loss, sur)),
            # bf16 first: the process's peak memory cannot be reset, and bf16 needs less
            (True, "surrogate", "efficientnetv2_s", 1, "bfloat16",
             lambda: sequential(ds, loss, bf16["eff"], model=eff_model)),
            (True, "surrogate", "efficientnetv2_s", 1, "default",
             lambda: sequential(ds, loss, eff, model=eff_model))]
    plan += [(True, "vmapped", "convnet", k, "default", lambda k=k: vmapped(ds, k, pop))
             for k in sizes["ks"]]
    plan += [(True, "k choice", "convnet", sizes["k_max"], "default",
              lambda: k_choice_run(cfg.surrogate, sizes["k_max"])),
             (True, "sequential surrogate", "convnet", 1, "bfloat16",
              lambda: sequential(ds, loss, bf16["sur"])),
             (full, "sequential surrogate", "convnet", 1, "highest",
              lambda: sequential(ds, loss, sur, matmul="highest")),
             (full, "surrogate", "efficientnetv2_s", 1, "highest",
              lambda: sequential(ds, loss, eff, model=eff_model, matmul="highest"))]
    for wanted, name, model, k, precision, fn in plan:
        if not wanted:
            continue
        elapsed = time.perf_counter() - start
        guess = expected_s(result["rows"], name, model, k)
        if elapsed + guess > args.budget_s:
            result["skipped"].append(f"{name} {model} K={k} {precision} (expected {guess:.0f} s "
                                     f"after {elapsed:.0f} s of a {args.budget_s:.0f} s budget)")
            continue
        try:
            row = {"name": name, "model": model, "k": k, "precision": precision, **fn()}
        except Exception as e:  # one failed measurement must not cost the others (one GPU lease)
            result["errors"].append(f"{name} {model} K={k} {precision}: {type(e).__name__}: {e}")
            print(result["errors"][-1], flush=True)
            continue
        if name == "k choice":
            result["k_choice"] = row
        else:
            result["rows"].append(row)
        print(json.dumps(row), flush=True)
        gc.collect()
        if args.out:
            save(result, args.out)
    result["total_s"] = time.perf_counter() - start
    return result


def expected_s(rows: list[dict], name: str, model: str, k: int) -> float:
    """A row's expected seconds from the last like row (scaled by K), 0 when none; the K
    choice: what the vmapped rows' compiles and runs at K <= its maximum cost."""
    if name == "k choice":
        return sum(r["compile_s"] + 10 * r["step_s"] for r in rows
                   if r["name"] == "vmapped" and r["k"] <= k)
    like = [r for r in rows if r["model"] == model and r["name"] == name]
    if not like:
        return 0.0
    last = like[-1]
    return last["compile_s"] + (last["wall_s"] - last["compile_s"]) * k / last["k"]


def save(result: dict, out: str) -> str:
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "gpu_suite.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    return path


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("--data-dir", default="", help="CIFAR-10 binaries ($LFE_DATA_DIR)")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--budget-s", type=float, default=400.0)
    parser.add_argument("--out", default="", help="folder for gpu_suite.json and the section")
    parser.add_argument("--revision", default="", help="git revision (a snapshot has no .git)")
    parser.add_argument("--from-json", default="", help="write the section of a results file")
    parser.add_argument("--benchmarks", default=common.BENCHMARKS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            result = json.load(f)
    else:
        result = measure(args)
        if args.out:
            save(result, args.out)
            with open(os.path.join(args.out, "gpu_suite.md"), "w") as f:
                f.write(render(result) + "\n")
    print(render(result))
    if not args.no_write:
        write(result, args.benchmarks)
    return result


if __name__ == "__main__":
    main()
