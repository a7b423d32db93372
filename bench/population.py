"""4. Many candidates on one device: K vmapped ConvNet candidates vs K sequential runs.

    python -m bench.population [--quick] [--ks 1,2,4,8,16,32,64] [--steps 50] [--budget-s 600]
                               [--shared-data] [--json out.json] [--no-write]

Both sides train the ConvNet (batch 128, CIFAR-10 shapes, Adam, the gate's schedule) on the
training images of ``$LFE_DATA_DIR`` (random uint8 images of the same shape when it is unset)
with the backend JAX picks (CPU here; set nothing on a GPU host):

* sequential: ``lfe.training.train``'s jitted step (``accumulating_train_step``) with one genome
loss
  compiled by ``compile.to_loss``, host batches from ``lfe.training.data.pipeline`` as
  ``train.run`` feeds
  them. K sequential runs process K × steps candidate-steps at this same rate.
* vmapped: ``lfe.training.population``'s step for K candidates with K different genome losses (the
  library's genomes, repeated past 12), per-candidate batch orders (``--shared-data``: one).

Each side is compiled and warmed up (3 steps), then timed over ``--steps`` steps (device
synchronised at both ends). Throughput is candidate-steps per second; the ratio is vmapped over
sequential. Compile time is reported separately: a sequential run compiles once per candidate,
a population once per K. ``--budget-s`` stops adding larger K once spent (the table says which
K ran); ``--quick`` is K = 1, 2, 4 over 10 steps. ``--json`` also writes the rows to a file.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time

from bench import common

QUICK_KS, FULL_KS = (1, 2, 4), (1, 2, 4, 8, 16, 32, 64)


def _data():
    import numpy as np

    from lfe.training import data as data_lib

    if os.environ.get("LFE_DATA_DIR"):
        d = data_lib.load("cifar10")
        return d.train_images, d.train_labels, "CIFAR-10 train split ($LFE_DATA_DIR)"
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (45000, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, 10, 45000).astype(np.int32), "random uint8 images (no $LFE_DATA_DIR)")


def _losses(k: int):
    from lfe.training import losses as losses_lib

    library = [losses_lib.get(n) for n in losses_lib.available()]
    library = [x for x in library if x.genome is not None]
    return [library[i % len(library)] for i in range(k)]


def _sync(tree):
    import jax

    jax.block_until_ready(tree)


def sequential_rate(images, labels, steps: int) -> tuple[float, float]:
    """(steps/s of one candidate, compile+warm-up seconds) through lfe.training.train's jitted
    step."""
    import jax

    from lfe.core import protocol as protocol_lib
    from lfe.training import parallel
    from lfe.training import train as train_lib
    from lfe.training.data import pipeline
    from lfe.training.models import get_model
    from lfe.training.schedules import make_optimizer

    protocol = protocol_lib.fitness_config().gate
    model = get_model("convnet", num_classes=10)
    loss = _losses(1)[0]
    step = jax.jit(functools.partial(
        train_lib.accumulating_train_step, loss_fn=loss.loss, num_classes=10,
        augment_fn=train_lib.image_augment(train_lib.unit_preprocess, train=True)),
        donate_argnums=(0, 1))
    t0 = time.perf_counter()
    state = train_lib.create_train_state(jax.random.PRNGKey(0), model, images.shape[1:],
                                         make_optimizer(protocol))
    rng = parallel.replicate(jax.random.PRNGKey(1), None)
    totals = train_lib.zero_totals()
    batches = pipeline.train_batches(images, labels, 128, 0)
    for _ in range(3):
        state, totals = step(state, totals, next(batches), rng)
    _sync(totals)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        state, totals = step(state, totals, next(batches), rng)
    _sync(totals)
    return steps / (time.perf_counter() - t0), compile_s


def population_rate(images, labels, k: int, steps: int, shared: bool) -> tuple[float, float]:
    """(candidate-steps/s of a K population, compile+warm-up seconds) via
    lfe.training.population."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from lfe.core import protocol as protocol_lib
    from lfe.training import compile as compile_lib
    from lfe.training import population, progressive
    from lfe.training import train as train_lib
    from lfe.training.data import pipeline
    from lfe.training.models import get_model
    from lfe.training.schedules import make_optimizer

    protocol = protocol_lib.fitness_config().gate
    model = get_model("convnet", num_classes=10)
    losses = _losses(k)
    step, _, _ = population._population_fns(model, progressive.resolve_augment("unit"), "paper",
                                             shared)
    t0 = time.perf_counter()
    keys = jax.vmap(lambda s: jax.random.split(jax.random.PRNGKey(s)))(jnp.arange(k))
    tx = make_optimizer(protocol)
    states = jax.vmap(lambda r: train_lib.create_train_state(r, model, images.shape[1:], tx))(
        keys[:, 0])
    codes = {n: jnp.asarray(v) for n, v in compile_lib.encode([x.genome for x in losses]).items()}
    signs = jnp.asarray([x.sign for x in losses], jnp.float32)
    totals = jax.tree.map(lambda x: jnp.broadcast_to(x, (k, *x.shape)), train_lib.zero_totals())
    device_images, active = jax.device_put(images), jnp.ones(k, bool)
    positions = np.arange(len(labels))
    streams = [pipeline.train_batches(positions, labels, 128, s) for s in range(1 if shared else k)]

    def one(states, totals):
        batches = [next(s) for s in streams]
        index = np.stack([b["image"] for b in batches]).astype(np.int32)
        label = np.stack([b["label"] for b in batches])
        if shared:
            index, label = index[0], label[0]
        return step(states, totals, device_images, index, label, keys[:, 1], codes, signs, active)

    for _ in range(3):
        states, totals = one(states, totals)
    _sync(totals)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        states, totals = one(states, totals)
    _sync(totals)
    if not np.all(np.asarray(totals["first_nonfinite"]) < 0):
        raise RuntimeError("a library loss diverged in the benchmark")
    return k * steps / (time.perf_counter() - t0), compile_s


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ks", default="")
    parser.add_argument("--steps", type=int, default=0)
    parser.add_argument("--budget-s", type=float, default=600.0)
    parser.add_argument("--shared-data", action="store_true")
    parser.add_argument("--json", default="")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    import jax

    ks = [int(x) for x in args.ks.split(",")] if args.ks else list(
        QUICK_KS if args.quick else FULL_KS)
    steps = args.steps or (10 if args.quick else 50)
    images, labels, source = _data()
    backend = f"{jax.default_backend()} ({jax.devices()[0].device_kind})"
    start = time.perf_counter()
    seq, seq_compile = sequential_rate(images, labels, steps)
    print(f"sequential: {seq:.1f} candidate-steps/s (compile+warm-up {seq_compile:.1f} s)",
          flush=True)
    rows = []
    for k in ks:
        if time.perf_counter() - start > args.budget_s:
            print(f"budget of {args.budget_s:.0f} s spent: stopping before K={k}")
            break
        rate, compile_s = population_rate(images, labels, k, steps, args.shared_data)
        rows.append({"k": k, "vmapped": rate, "sequential": seq, "ratio": rate / seq,
                     "compile_s": compile_s, "sequential_compile_s": seq_compile * k})
        print(f"K={k}: {rate:.1f} candidate-steps/s, {rate / seq:.2f}x sequential "
              f"(compile+warm-up {compile_s:.1f} s)", flush=True)
    best = max(rows, key=lambda r: r["ratio"]) if rows else None
    result = {"backend": backend, "steps": steps, "data": source, "shared_data": args.shared_data,
              "rows": rows, "best_k": best["k"] if best and best["ratio"] > 1 else 1}
    body = common.table(
        ["K", "vmapped cand-steps/s", "sequential cand-steps/s", "ratio",
         "population compile+warm-up s", "K sequential compiles+warm-ups s"],
        [[r["k"], r["vmapped"], r["sequential"], r["ratio"], r["compile_s"],
          r["sequential_compile_s"]] for r in rows])
    text = (f"Backend: {backend}. {steps} timed steps per side after 3 warm-up steps; ConvNet, "
            f"batch 128, Adam; data: {source}; "
            f"{'one shared batch order' if args.shared_data else 'per-candidate batch orders'}."
            f"\n\n{body}\n\nBest K: {result['best_k']} (1 = sequential is fastest; this is "
            "what `population.MEASURED_K` records for the backend and what the `vmap` "
            "executor's default K uses).")
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if not args.no_write:
        common.write_section(f"population-{jax.default_backend()}",
                             f"4. Many candidates on one device ({jax.default_backend()})", text)
    return result


if __name__ == "__main__":
    main()
