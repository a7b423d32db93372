"""2. ConvNet training throughput: the project's step vs the same model and loss in PyTorch.

    python -m bench.convnet_throughput [--quick] [--repeats=3] [--no-write]

Batch 128, CIFAR-10 shapes (uint8 [128, 32, 32, 3] → float in [0, 1] inside the step), Adam in
the Keras form with the warmup-cosine schedule, for each loss: an evolved-genome loss
(NeuroLoss3, a genome of `lfe.training.losses`), a random genome that passes the integrity check
(`lfe.core.integrity.sample_valid`, seed 0) and cross-entropy (its genome). Variants, each in its
own process, run interleaved (variant order rotates every repeat) so that load changes hit all:

- `jax_step`: the step `lfe.training.train.run` compiles (`train._program_step`, jitted with
  donation), the loss in the data form (what fitness trains), on batches already on the device:
  the pure step rate. `jax_step_unrolled`: the same with the unrolled loss (`compile.to_loss`).
- `jax_run`: `lfe.training.train.run` end to end (data form; the training set resident on the
  device, real CIFAR-10 when $LFE_DATA_DIR is set, else random uint8 data of the same shapes),
  evaluation of 5,000 images every 100 steps; steps/s over the whole call (init and compile
  included), the marginal rate between a short and a long run (compile excluded), and the
  steps alone (`TrainResult.timing`: setup, first step and evaluation excluded).
- `torch_eager`, `torch_compile`: `bench.torch_convnet` (needs bench/requirements.txt), with
  `torch.set_num_threads` = the cores this process may use, the cores XLA uses.

Each timed block reports wall steps/s and CPU ms per step (process CPU time over all threads:
less sensitive to other processes than wall time on a loaded machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ("jax_step", "jax_step_unrolled", "jax_run", "torch_eager", "torch_compile")
LOSSES = ("neuroloss3", "random_genome", "cross_entropy")
BATCH = 128


def _loss_genome(name: str):
    """(genome, sign) of a loss name of LOSSES."""
    import numpy as np

    from lfe.core import integrity
    from lfe.training import losses

    if name == "random_genome":
        (g, verdict), = integrity.sample_valid(np.random.default_rng(0), 1, integrity.Archive())
        return g, verdict.sign
    loss = losses.get(name)
    return loss.genome, loss.sign


def _synthetic(n: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, 10, n).astype(np.int32))


def _blocks(step_once, steps: int, blocks: int) -> list[dict]:
    """Times `blocks` blocks of `steps` calls; `step_once()` returns something to wait on."""
    out = []
    for _ in range(blocks):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            last = step_once()
        last()  # wait for the device / the lazy value
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        out.append({"steps_per_s": steps / wall, "cpu_ms_per_step": 1000 * cpu / steps})
    return out


def worker_jax_step(loss: str, steps: int, blocks: int, conv_impl: str = "auto",
                    form: str = "data") -> dict:
    """The step `train.run` compiles (`train._program_step`, jitted with donation) on batches
    already on the device; the loss in the data form (what fitness trains: the genome is an
    argument) or unrolled (`compile.to_loss`, compiled per genome)."""
    import functools

    import jax
    import numpy as np

    from lfe.training import compile as compile_lib
    from lfe.training import train
    from lfe.training.models import get_model
    from lfe.training.schedules import shared_optimizer

    g, sign = _loss_genome(loss)
    loss_fn = compile_lib.data_loss(g, sign) if form == "data" else compile_lib.to_loss(g, sign)
    program, params = compile_lib.as_program(loss_fn)
    model = get_model("convnet", num_classes=10, conv_impl=conv_impl)
    state = train.create_train_state(jax.random.PRNGKey(0), model, (32, 32, 3),
                                     shared_optimizer(train.default_config()))
    step = jax.jit(functools.partial(
        train._program_step, program=program,
        augment_fn=train.image_augment(train.unit_preprocess, train=True), num_classes=10),
        donate_argnums=(0, 1))
    images, labels = _synthetic(8 * BATCH, 0)
    batches = [jax.device_put({"image": images[i::8], "label": labels[i::8]}) for i in range(8)]
    key, params = jax.random.PRNGKey(1), jax.device_put(params)
    holder = {"state": state, "totals": train.zero_totals(), "i": 0}

    def step_once():
        holder["state"], holder["totals"] = step(holder["state"], holder["totals"],
                                                 batches[holder["i"] % 8], key, params, None)
        holder["i"] += 1
        totals = holder["totals"]
        return lambda: jax.block_until_ready(totals)

    t = time.perf_counter()
    step_once()()
    compile_s = time.perf_counter() - t
    _blocks(step_once, 10, 1)  # warm-up
    from lfe.training.models import common

    result = {"blocks": _blocks(step_once, steps, blocks), "compile_s": compile_s,
              "conv_impl": common.resolve_conv_impl(conv_impl), "form": form}
    loss_value = float(np.asarray(jax.device_get(holder["totals"]["loss"])) / holder["i"])
    return {**result, "mean_loss": loss_value}


def worker_jax_run(loss: str, steps: int, blocks: int) -> dict:
    from lfe.training import compile as compile_lib
    from lfe.training import train
    from lfe.training.models import get_model

    g, sign = _loss_genome(loss)
    if os.environ.get("LFE_DATA_DIR"):
        from lfe.training import data

        ds = data.load("cifar10")
        arrays = dict(train_images=ds.train_images, train_labels=ds.train_labels,
                      val_images=ds.val_images[:5000], val_labels=ds.val_labels[:5000])
        source = "CIFAR-10"
    else:
        (xt, yt), (xv, yv) = _synthetic(45_000, 0), _synthetic(5_000, 1)
        arrays = dict(train_images=xt, train_labels=yt, val_images=xv, val_labels=yv)
        source = "synthetic"
    loss_fn = compile_lib.data_loss(g, sign)  # as fitness trains an evolved loss

    def timed(n):
        cfg = train.default_config()
        cfg.steps = n
        wall, cpu = time.perf_counter(), time.process_time()
        result = train.run(get_model("convnet", num_classes=10), loss_fn, cfg, seed=0, **arrays)
        return time.perf_counter() - wall, time.process_time() - cpu, result

    short = 100
    out = []
    for _ in range(blocks):
        w0, c0, _ = timed(short)
        w1, c1, result = timed(steps)
        t = result.timing
        out.append({"steps_per_s": steps / w1, "cpu_ms_per_step": 1000 * c1 / steps,
                    "marginal_steps_per_s": (steps - short) / max(w1 - w0, 1e-9),
                    # the steps alone: without setup, the first step (compile) and evaluation
                    "train_steps_per_s": (steps - 1) / max(t["train_s"], 1e-9),
                    "timing": t, "status": result.status})
    return {"blocks": out, "data": source}


def worker_torch(loss: str, steps: int, blocks: int, compiled: bool) -> dict:
    import numpy as np
    import torch

    from bench import torch_convnet

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    g, sign = _loss_genome(loss)
    step = torch_convnet.make_step(g, sign, compile=compiled)
    images, labels = _synthetic(8 * BATCH, 0)
    batches = [(torch.from_numpy(images[i::8].copy()), torch.from_numpy(labels[i::8].astype(
        np.int64))) for i in range(8)]
    counter = [0]

    def step_once():
        loss_value = step(*batches[counter[0] % 8])
        counter[0] += 1
        return lambda: float(loss_value)

    t = time.perf_counter()
    for _ in range(3):  # compile (forward, backward, update; recompiles settle)
        step_once()()
    compile_s = time.perf_counter() - t
    _blocks(step_once, 10, 1)
    return {"blocks": _blocks(step_once, steps, blocks), "compile_s": compile_s,
            "threads": torch.get_num_threads()}


def worker(variant: str, loss: str, steps: int, blocks: int, conv_impl: str = "auto") -> dict:
    if variant == "jax_step":
        return worker_jax_step(loss, steps, blocks, conv_impl)
    if variant == "jax_step_unrolled":
        return worker_jax_step(loss, steps, blocks, conv_impl, form="unrolled")
    if variant == "jax_run":
        return worker_jax_run(loss, steps, blocks)
    if variant in ("torch_eager", "torch_compile"):
        return worker_torch(loss, steps, blocks, variant == "torch_compile")
    raise ValueError(f"unknown variant {variant!r}; available: {', '.join(VARIANTS)}")


def spawn(variant: str, loss: str, steps: int, blocks: int, *, conv_impl: str = "auto",
          env: dict | None = None, core: int | None = None) -> dict:
    """One worker process. ``env``: its environment (default: this one with `lfe.core.malloc`'s
    settings, as `python -m lfe.main` runs); ``core``: pin it to that core (``taskset``)."""
    from lfe.core import malloc

    cmd = [sys.executable, "-m", "bench.convnet_throughput", f"--worker={variant}",
           f"--losses={loss}", f"--steps={steps}", f"--blocks={blocks}",
           f"--conv-impl={conv_impl}"]
    if core is not None:
        cmd = ["taskset", "-c", str(core), *cmd]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env=malloc.env(os.environ) if env is None else env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="NeuroLoss3 only, fewer steps")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--losses", default=None)
    p.add_argument("--steps", type=int, default=None, help="steps per timed block")
    p.add_argument("--blocks", type=int, default=None, help="timed blocks per process")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--conv-impl", default="auto", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        loss = args.losses or LOSSES[0]
        print(json.dumps(worker(args.worker, loss, args.steps, args.blocks, args.conv_impl)),
              flush=True)
        return

    losses = (args.losses or ("neuroloss3" if args.quick else ",".join(LOSSES))).split(",")
    variants = args.variants.split(",")
    repeats = args.repeats or (2 if args.quick else 3)
    steps = args.steps or (50 if args.quick else 200)
    blocks = args.blocks or (2 if args.quick else 3)
    run_steps = 300 if args.quick else 1000
    results: dict[tuple[str, str], list[dict]] = {}
    for r in range(repeats):
        for loss in losses:
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for v in order:
                n = run_steps if v == "jax_run" else steps
                res = spawn(v, loss, n, 1 if v == "jax_run" else blocks)
                results.setdefault((loss, v), []).append(res)
                best = max(b["steps_per_s"] for b in res["blocks"])
                print(f"repeat {r + 1} {loss:14s} {v:14s} {best:6.1f} steps/s  "
                      f"{min(b['cpu_ms_per_step'] for b in res['blocks']):6.1f} CPU ms/step",
                      flush=True)
    body = report(results, losses, variants, steps, blocks, run_steps, repeats)
    print(body)
    if not args.no_write:
        from bench import common

        common.write_section("convnet_throughput", "2. ConvNet training throughput", body)


def _per_repeat(results, key, field="steps_per_s", best=max) -> list[float]:
    """One number per process (the best of its blocks: the least disturbed by other load)."""
    return [best(b[field] for b in res["blocks"]) for res in results.get(key, [])]


def report(results, losses, variants, steps, blocks, run_steps, repeats) -> str:
    from bench import common

    rows = []
    for loss in losses:
        for v in variants:
            rate = _per_repeat(results, (loss, v))
            cpu = _per_repeat(results, (loss, v), "cpu_ms_per_step", min)
            row = [loss, v, common.spread(rate), common.spread(cpu)]
            if v == "jax_run":
                row.append("marginal " + common.spread(
                    _per_repeat(results, (loss, v), "marginal_steps_per_s")) + "; steps alone "
                    + common.spread(_per_repeat(results, (loss, v), "train_steps_per_s")))
            elif "compile_s" in results[(loss, v)][0]:
                compile_s = statistics.median(r["compile_s"] for r in results[(loss, v)])
                row.append(f"compile {compile_s:.1f} s")
            rows.append(row)
    ratio_rows = []
    for loss in losses:
        for v in variants:
            if v == "jax_step":
                continue
            if "jax_step" in variants and (loss, v) in results:
                mine = _per_repeat(results, (loss, "jax_step"))
                ref = _per_repeat(results, (loss, v))
                wall = [a / b for a, b in zip(mine, ref, strict=True)]
                cpu = [b / a for a, b in zip(_per_repeat(results, (loss, "jax_step"),
                                                         "cpu_ms_per_step", min),
                                             _per_repeat(results, (loss, v), "cpu_ms_per_step",
                                                         min), strict=True)]
                ratio_rows.append([loss, f"jax_step / {v}", common.spread(wall),
                                   common.spread(cpu)])
    threads = len(os.sched_getaffinity(0))
    text = (f"Batch {BATCH}, CIFAR-10 shapes, Keras-form Adam + warmup-cosine, {threads} usable "
            f"cores (XLA default thread pool; torch.set_num_threads({threads})). {repeats} "
            f"repeats, variants interleaved, one process each; a process times {blocks} "
            f"blocks of {steps} steps after compilation and a 10-step warm-up and reports its "
            f"best block. `jax_run` is `lfe.training.train.run` for {run_steps} steps with "
            f"5,000-image "
            f"evaluation every 100 steps, including init and compile; 'marginal' is "
            f"({run_steps} − 100) steps over the time difference to a 100-step run. "
            f"Cells: median (min–max) over repeats.\n\n")
    text += common.table(["loss", "variant", "steps/s", "CPU ms/step", "note"],
                         [r + [""] * (5 - len(r)) for r in rows])
    text += "\n\nRatios per repeat (same repeat, interleaved); CPU ratio = reference CPU time / " \
            "project CPU time:\n\n"
    text += common.table(["loss", "ratio", "wall, median (min–max)", "CPU, median (min–max)"],
                         ratio_rows)
    return text


if __name__ == "__main__":
    main()
