"""Training steps/s of the paper's evaluation networks at their paper resolution and batch.

    JAX_PLATFORMS=cpu python bench/model_speed.py [--steps=3] [--models=davidnet,...]

One jitted train step (forward, cross-entropy, backward, Adam 1e-3, BN statistics update) on a
fixed synthetic uint8 batch, normalised inside the step as the data pipeline would; one warm-up
step (compile) is timed separately, then `--steps` steps. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lfe.training import models  # noqa: E402

# (label, registry name, image side, batch): App. D / §3.5 settings
CASES = (
    ("EffNetV2-S (surrogate)", "efficientnetv2_s", 96, 64),
    ("EffNetV2-S (phase 1)", "efficientnetv2_s", 128, 64),
    ("WRN-28-10", "wideresnet28_10", 32, 128),
    ("SE-ResNeXt-29 4x64d", "seresnext29", 32, 128),
    ("DavidNet", "davidnet", 32, 512),
)


def train_step(model, tx, state, images, labels, key):
    """One step; `images` uint8 [B, H, W, 3] → (new state, loss)."""
    params, stats, opt = state
    x = (images.astype(jnp.float32) - 127.5) / 128.0

    def loss_fn(p):
        logits, upd = model.apply(
            {"params": p, "batch_stats": stats}, x, train=True,
            rngs={"dropout": key}, mutable=["batch_stats"],
        )  # fmt: skip
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), upd

    (loss, upd), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt = tx.update(grads, opt, params)
    return (optax.apply_updates(params, updates), upd["batch_stats"], opt), loss


def measure(name: str, size: int, batch: int, steps: int) -> dict[str, float]:
    model = models.get_model(name, num_classes=10)
    tx = optax.adam(1e-3)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8))
    labels = jnp.asarray(rng.integers(0, 10, batch), jnp.int32)
    init = jax.jit(functools.partial(model.init, train=False))
    variables = init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)))
    state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))
    step = jax.jit(functools.partial(train_step, model, tx), donate_argnums=0)
    key = jax.random.PRNGKey(1)
    start = time.perf_counter()
    state, loss = step(state, images, labels, key)
    loss.block_until_ready()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        state, loss = step(state, images, labels, key)
    loss.block_until_ready()
    per_step = (time.perf_counter() - start) / steps
    params = sum(x.size for x in jax.tree.leaves(variables["params"]))
    return {"params": params, "compile_s": compile_s, "step_s": per_step}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps after warm-up")
    parser.add_argument("--models", default="", help="comma-separated registry names (all)")
    args = parser.parse_args(argv)
    chosen = set(filter(None, args.models.split(",")))
    print(f"backend: {jax.default_backend()}, devices: {jax.device_count()}, "
          f"cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("| model | image | batch | params | warm-up step (s) | s/step | steps/s | images/s |")
    print("|---|---|---|---|---|---|---|---|")
    for label, name, size, batch in CASES:
        if chosen and name not in chosen:
            continue
        r = measure(name, size, batch, args.steps)
        print(
            f"| {label} | {size} | {batch} | {r['params'] / 1e6:.2f}M | {r['compile_s']:.1f} "
            f"| {r['step_s']:.2f} | {1 / r['step_s']:.3f} | {batch / r['step_s']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
