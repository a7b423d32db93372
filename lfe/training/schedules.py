"""Learning-rate schedules and optimizers, built from plain config values.

Schedules are closed forms of the step count (the number of updates already applied), like the
authors' `lr_warmup_cosine_decay`: the learning rate at step 0 is 0. The schedule horizon
`total_steps` is independent of how many steps are actually run: the surrogate uses
T = 64,000 but stops after 8,000, so its learning rate is still warming up (6,400 steps) for most
of the run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

Schedule = Callable[[jax.Array], jax.Array]


def constant(peak_value: float) -> Schedule:
    return lambda count: jnp.full((), peak_value, jnp.float32)


def warmup_cosine(
    peak_value: float, warmup_steps: int, total_steps: int, hold_steps: int = 0
) -> Schedule:
    """0 → peak linearly over `warmup_steps`, peak for `hold_steps`, cosine to 0 at `total_steps`.

    lr(s) = peak * s / W                                   for s < W
          = peak                                           for W ≤ s < W + H
          = peak * (1 + cos(pi * (s - W - H) / (T - W - H))) / 2, clamped to 0 after T.
    """
    if not 0 <= warmup_steps + hold_steps <= total_steps:
        raise ValueError(
            f"need warmup_steps + hold_steps <= total_steps, got "
            f"{warmup_steps} + {hold_steps} > {total_steps}"
        )
    decay_steps = max(total_steps - warmup_steps - hold_steps, 1)

    def schedule(count):
        s = jnp.asarray(count, jnp.float32)
        warm = peak_value * s / max(warmup_steps, 1)
        t = jnp.clip((s - warmup_steps - hold_steps) / decay_steps, 0.0, 1.0)
        cosine = 0.5 * peak_value * (1.0 + jnp.cos(jnp.pi * t))
        return jnp.where(
            s < warmup_steps, warm, jnp.where(s < warmup_steps + hold_steps, peak_value, cosine)
        )

    return schedule


def warmup_linear(peak_value: float, warmup_steps: int, total_steps: int) -> Schedule:
    """0 → peak linearly over `warmup_steps`, then linearly to 0 at `total_steps` (DavidNet)."""
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"need warmup_steps <= total_steps, got {warmup_steps} > {total_steps}")

    def schedule(count):
        s = jnp.asarray(count, jnp.float32)
        return jnp.interp(
            s,
            jnp.array([0.0, warmup_steps, max(total_steps, warmup_steps + 1)]),
            jnp.array([0.0, peak_value, 0.0]),
        )

    return schedule


_SCHEDULES = ("constant", "warmup_cosine", "warmup_linear")
_OPTIMIZERS = ("adam", "sgd_nesterov")


def _get(cfg: Any, key: str, default: Any) -> Any:
    value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
    return default if value is None else value


def make_schedule(cfg: Any) -> Schedule:
    """Schedule from `cfg.schedule` ("warmup_cosine" | "warmup_linear" | "constant") and
    `learning_rate`, `warmup_steps`, `hold_steps`, `total_steps`."""
    name = _get(cfg, "schedule", "warmup_cosine")
    lr = float(_get(cfg, "learning_rate", 1e-3))
    if name == "constant":
        return constant(lr)
    warmup, total = int(_get(cfg, "warmup_steps", 0)), int(cfg["total_steps"])
    if name == "warmup_cosine":
        return warmup_cosine(lr, warmup, total, int(_get(cfg, "hold_steps", 0)))
    if name == "warmup_linear":
        return warmup_linear(lr, warmup, total)
    raise ValueError(f"unknown schedule {name!r}; available: {', '.join(_SCHEDULES)}")


class KerasAdamState(NamedTuple):
    count: jax.Array
    mu: Any
    nu: Any


def scale_by_keras_adam(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-7
) -> optax.GradientTransformation:
    """Adam as Keras computes it: m / (sqrt(v) + eps) * sqrt(1 - b2^t) / (1 - b1^t).

    Keras' epsilon is the paper's "epsilon hat", added to the *uncorrected* sqrt(v); in optax
    terms its eps is eps / sqrt(1 - b2^t) (≈ 32·eps at t = 1). It only matters when gradients are
    tiny, which evolved losses can produce, so the authors' form is kept.
    """

    def init_fn(params):
        # two separate trees: shared buffers could not both be donated to the train step
        return KerasAdamState(
            jnp.zeros([], jnp.int32),
            jax.tree.map(jnp.zeros_like, params),
            jax.tree.map(jnp.zeros_like, params),
        )

    def update_fn(updates, state, params=None):
        del params
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * jnp.square(g), state.nu, updates)
        count = optax.safe_increment(state.count)
        t = count.astype(jnp.float32)
        alpha = jnp.sqrt(1 - b2**t) / (1 - b1**t)
        updates = jax.tree.map(lambda m, v: alpha * m / (jnp.sqrt(v) + eps), mu, nu)
        return updates, KerasAdamState(count, mu, nu)

    return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(cfg: Any) -> optax.GradientTransformation:
    """Optimizer from `cfg.optimizer` and its fields (ml_collections.ConfigDict or a dict).

    adam:          b1=0.9, b2=0.999, eps=1e-7. eps is Keras' default (optax uses 1e-8) because the
                   authors trained with `tf.optimizers.Adam()`; `keras_eps=True` (default) also
                   keeps Keras' placement of eps (see `scale_by_keras_adam`).
    sgd_nesterov:  momentum=0.9, Nesterov; `weight_decay` (default 0) is added to the gradients
                   before momentum (DavidNet, App. D). The loss is a batch mean, so DavidNet's
                   sum-loss convention (wd · batch_size) maps to wd here.
    """
    name = _get(cfg, "optimizer", "adam")
    schedule = make_schedule(cfg)
    if name == "adam":
        b1, b2 = float(_get(cfg, "b1", 0.9)), float(_get(cfg, "b2", 0.999))
        eps = float(_get(cfg, "eps", 1e-7))
        if _get(cfg, "keras_eps", True):
            scale = scale_by_keras_adam(b1, b2, eps)
        else:
            scale = optax.scale_by_adam(b1, b2, eps)
        return optax.chain(scale, optax.scale_by_learning_rate(schedule))
    if name == "sgd_nesterov":
        parts = []
        weight_decay = float(_get(cfg, "weight_decay", 0.0))
        if weight_decay:
            parts.append(optax.add_decayed_weights(weight_decay))
        parts.append(optax.sgd(schedule, momentum=float(_get(cfg, "momentum", 0.9)), nesterov=True))
        return optax.chain(*parts)
    raise ValueError(f"unknown optimizer {name!r}; available: {', '.join(_OPTIMIZERS)}")
