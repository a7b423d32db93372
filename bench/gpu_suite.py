"""7. One accelerator: ConvNet candidates/hour (sequential vs vmapped), the EfficientNetV2-S
surrogate, float32 matmul precision, peak device memory.

    python -m bench.gpu_suite [--synthetic | --data-dir DIR] [--out DIR] [--budget-s 400]
                              [--tiny] [--no-write] [--benchmarks PATH]
    python -m bench.gpu_suite --from-json results.json   # write the section of a finished run

Every measurement is a real, shortened training run through the library's entry points, timed
at its evaluation boundaries (``log_fn``), with each validation pass timed on its own:

* ConvNet, sequential: ``lfe.training.train.run`` as ``fitness.train_once`` calls it — a gate
  run (800 steps, no validation) and a surrogate run (validation of 5,000 images every 100
  steps), each compiling its own step as every candidate does, after one untimed warm-up run
  (the process's first compile: CUDA, cuDNN and autotuning start-up).
* ConvNet, vmapped: ``lfe.training.population.run`` with K library-loss genomes, K = 1, 8, 32,
  128; its step is compiled once per K per process and reused by every later population.
* EfficientNetV2-S: ``protocol.surrogate_protocol()`` (96 px, batch 64, RandAugment, dropout
  0.1) through ``train.run``, shortened.
* Precision: the ConvNet surrogate and EfficientNetV2-S runs again under
  ``jax.default_matmul_precision("highest")`` (full float32) against JAX's default (on NVIDIA
  GPUs XLA may use TF32 for float32 convolutions and matmuls). lfe has no bf16 compute option.

From the boundary times: the first interval minus one steady interval is "compile + setup"
(init, compiles, first evaluation's compile); steady s/step and s/evaluation are medians over
the later intervals. Per-candidate time is extrapolated to the real protocol: gate 800 steps +
surrogate 2,000 or 8,000 steps with an evaluation every 100 (all candidates pass the gate, none
stops early: an upper bound). Peak device memory is the process's ``peak_bytes_in_use`` after
each measurement (it cannot be reset: a measurement that did not raise it used at most that).
Results go to ``--out``/gpu_suite.json after every measurement, so a run cut short keeps what
it measured. ``--tiny`` shrinks everything (data, steps, K, a two-stage EfficientNetV2) to run
on a CPU in seconds: it checks the code path, its figures mean nothing.
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

FULL = {"train": 50_000, "val": 5_000, "eval_every": 100, "gate_steps": 800, "sur_steps": 1000,
        "pop_steps": 300, "ks": (1, 8, 32, 128), "eff_steps": 400, "eff_batch": 64,
        "eff_size": 96, "eval_batch": 500}
TINY = {"train": 512, "val": 64, "eval_every": 2, "gate_steps": 4, "sur_steps": 6,
        "pop_steps": 4, "ks": (2,), "eff_steps": 4, "eff_batch": 8, "eff_size": 32,
        "eval_batch": 64}
GATE, SURROGATE_STEPS, EFF_STEPS, EVAL_EVERY = 800, (2000, 8000), 8000, 100


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


def sequential(ds, loss, proto, *, model=None, precision=None) -> dict:
    """``train.run`` as ``fitness.train_once`` calls it (a fresh compile, as per candidate)."""
    import jax

    from lfe.training import train as train_lib
    from lfe.training.data import pipeline
    from lfe.training.models import get_model

    model = model or get_model(proto.model, num_classes=10)
    ctx = jax.default_matmul_precision(precision) if precision else contextlib.nullcontext()
    with ctx:
        return timeline(lambda log: [train_lib.run(
            model, loss.loss, proto, seed=0, train_images=ds.train_images,
            train_labels=ds.train_labels, val_images=ds.val_images if proto.validate else None,
            val_labels=ds.val_labels if proto.validate else None,
            train_batches=pipeline.train_batches, eval_batches=pipeline.eval_batches,
            log_fn=log)])


def vmapped(ds, k: int, proto) -> dict:
    """``population.run`` with K library genomes (repeated past the library's size)."""
    from bench.population import _losses
    from lfe.training import population
    from lfe.training.models import get_model

    losses = _losses(k)
    return timeline(lambda log: population.run(
        get_model("convnet", num_classes=10), [x.genome for x in losses], [x.sign for x in losses],
        proto, train_images=ds.train_images, train_labels=ds.train_labels,
        val_images=ds.val_images, val_labels=ds.val_labels, seeds=list(range(k)), log_fn=log))


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
    eff_model = tiny_effnet() if args.tiny else None
    loss, other = losses.get("cross_entropy"), losses.get("neuroloss2")

    full = not args.tiny  # --tiny: no warm-up run, no "highest" rows, K = 2 only
    plan = [(full, "warm-up (first compile)", "convnet", 1, "default",
             lambda: sequential(ds, other, sur)),
            (True, "sequential gate", "convnet", 1, "default", lambda: sequential(ds, loss, gate)),
            (True, "sequential surrogate", "convnet", 1, "default",
             lambda: sequential(ds, loss, sur)),
            (full, "sequential surrogate", "convnet", 1, "highest",
             lambda: sequential(ds, loss, sur, precision="highest")),
            (True, "surrogate", "efficientnetv2_s", 1, "default",
             lambda: sequential(ds, loss, eff, model=eff_model))]
    plan += [(True, "vmapped", "convnet", k, "default", lambda k=k: vmapped(ds, k, pop))
             for k in sizes["ks"]]
    plan += [(full, "surrogate", "efficientnetv2_s", 1, "highest",
              lambda: sequential(ds, loss, eff, model=eff_model, precision="highest"))]
    for wanted, name, model, k, precision, fn in plan:
        if not wanted:
            continue
        elapsed = time.perf_counter() - start
        like = [r for r in result["rows"] if r["model"] == model and r["name"] == name]
        guess = (like[-1]["compile_s"] + (like[-1]["wall_s"] - like[-1]["compile_s"]) * k
                 / like[-1]["k"]) if like else 0.0
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
        result["rows"].append(row)
        print(json.dumps(row), flush=True)
        gc.collect()
        if args.out:
            save(result, args.out)
    result["total_s"] = time.perf_counter() - start
    return result


def save(result: dict, out: str) -> str:
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "gpu_suite.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    return path


def _row(result, name, model="convnet", k=1, precision="default"):
    return next((r for r in result["rows"] if (r["name"], r["model"], r["k"], r["precision"])
                 == (name, model, k, precision)), None)


def _gib(x) -> str:
    return "n/a" if x is None else f"{x / 2 ** 30:.2f}"


def render(result: dict) -> str:
    """The BENCHMARKS.md section body of a results dict (what ``measure`` returns)."""
    rows, lines = result["rows"], []
    peak = 0
    table = []
    for r in rows:
        rose = (r["peak_bytes_in_use"] or 0) > peak
        peak = max(peak, r["peak_bytes_in_use"] or 0)
        name = r["name"] + ("" if r["status"] == ["ok"] else f" ({', '.join(r['status'])})")
        table.append([name, r["model"], r["k"], r["precision"], r["steps"], r["compile_s"],
                      1 / r["step_s"], r["k"] / r["step_s"], r["eval_s"],
                      ("" if rose else "≤ ") + _gib(r["peak_bytes_in_use"])])
    lines.append(common.table(
        ["run", "model", "K", "matmul precision", "steps", "compile + setup s", "steps/s",
         "candidate-steps/s", "s per 5k evaluation", "peak device GiB"], table))
    gate, sur = _row(result, "sequential gate"), _row(result, "sequential surrogate")
    cand = []
    if gate and sur:
        for n in SURROGATE_STEPS:
            s = (gate["compile_s"] + GATE * gate["step_s"] + sur["compile_s"] + n * sur["step_s"]
                 + n / EVAL_EVERY * sur["eval_s"])
            cand.append(["sequential (`train.run`)", 1, n, s, 3600 / s,
                         gate["compile_s"] + sur["compile_s"]])
    for r in (r for r in rows if r["name"] == "vmapped"):
        for n in SURROGATE_STEPS:
            s = ((GATE + n) * r["step_s"] + n / EVAL_EVERY * r["eval_s"]) / r["k"]
            cand.append(["vmapped (`population.run`)", r["k"], n, s, 3600 / s,
                         r["compile_s"]])
    if cand:
        lines.append(f"ConvNet candidates/hour, extrapolated to the real protocol (gate {GATE} "
                     "steps, then the surrogate with a 5,000-image evaluation every 100 steps; "
                     "every candidate passes the gate and none stops early). Sequential: both "
                     "compiles are paid per candidate; vmapped: the compile is paid once per K "
                     "per process, so it is left out of the per-candidate time.")
        lines.append(common.table(["mode", "K", "surrogate steps", "s per candidate",
                                   "candidates/h", "compile s"], cand))
    e = _row(result, "surrogate", "efficientnetv2_s")
    if e:
        s = e["compile_s"] + EFF_STEPS * e["step_s"] + EFF_STEPS / EVAL_EVERY * e["eval_s"]
        g = gate["compile_s"] + GATE * gate["step_s"] if gate else 0.0
        lines.append(
            f"EfficientNetV2-S surrogate (96 px, batch 64, RandAugment): {1 / e['step_s']:.1f} "
            f"steps/s, {e['eval_s']:.2f} s per evaluation, compile + setup {e['compile_s']:.0f} s "
            f"→ {EFF_STEPS:,} steps + {EFF_STEPS // EVAL_EVERY} evaluations + compile = "
            f"**{s / 60:.1f} min per candidate** ({(s + g) / 60:.1f} min with the ConvNet gate; "
            f"2,000 candidates ≈ {2000 * (s + g) / 3600:.0f} h on one device). The paper: ~3 min "
            "per candidate on an A100 (2,000 candidates in ~100 h).")
    prec = []
    for model, name in (("convnet", "sequential surrogate"), ("efficientnetv2_s", "surrogate")):
        d, h = _row(result, name, model), _row(result, name, model, precision="highest")
        if d and h:
            prec.append([model, 1 / d["step_s"], 1 / h["step_s"], h["step_s"] / d["step_s"],
                         d["compile_s"], h["compile_s"]])
    if prec:
        lines.append("float32 matmul/convolution precision: JAX's default (XLA may use TF32 on "
                     "NVIDIA GPUs) against `jax.default_matmul_precision(\"highest\")` (full "
                     "float32). **A bf16 compute option is not built in lfe yet**, so bf16 was "
                     "not measured.")
        lines.append(common.table(["model", "default steps/s", "highest steps/s",
                                   "highest / default time", "compile s (default)",
                                   "compile s (highest)"], prec))
    if result.get("errors"):
        lines.append("Failed: " + "; ".join(result["errors"]) + ".")
    if result["skipped"]:
        lines.append("Skipped (time budget): " + "; ".join(result["skipped"]) + ".")
    head = (f"Device: **{result['device']}** ({result['platform']}), jax {result['jax']} "
            f"(jaxlib {result['jaxlib']}, flax {result.get('flax', '?')}), Python "
            f"{result['python']}; revision {result['revision']}, {result['date']}; measured "
            f"with `{result['command']}` "
            f"({result['total_s']:.0f} s). Data: {result['data']}."
            + (" **--tiny: a code-path check, not a measurement.**" if result["tiny"] else "")
            + "\n\nEach row is one shortened training run; compile + setup = first evaluation "
            "interval minus one steady interval; steps/s = steady, evaluations excluded; peak "
            "device memory is the process's peak after the row (≤: the row did not raise it).")
    return "\n\n".join([head, *lines])


def write(result: dict, path: str) -> str:
    slug = result["device"].lower().replace("nvidia ", "").replace(" ", "-")
    return common.write_section(f"gpu-suite-{slug}", f"7. One accelerator: {result['device']}",
                                render(result), path=path)


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
