"""Learning-rate schedules and optimizers, built from plain config values.

Schedules are closed forms of the step count (the number of updates already applied), like the
authors' `lr_warmup_cosine_decay`: the learning rate at step 0 is 0. The schedule horizon
`total_steps` is independent of how many steps are actually run: the surrogate uses
T = 64,000 but stops after 8,000, so its learning rate is still warming up (6,400 steps) for most
of the run.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

Schedule = Callable[[jax.Array], jax.Array]


def constant(peak_value: float) -> Schedule:
    """``peak_value`` at every step, as a float32 scalar (``optax.constant_schedule``)."""
    return optax.constant_schedule(np.float32(peak_value))


def warmup_cosine(
    peak_value: float, warmup_steps: int, total_steps: int, hold_steps: int = 0
) -> Schedule:
    """0 → peak linearly over `warmup_steps`, peak for `hold_steps`, cosine to 0 at `total_steps`.

    lr(s) = peak * s / W                                   for s < W
          = peak                                           for W ≤ s < W + H
          = peak * (1 + cos(pi * (s - W - H) / (T - W - H))) / 2, clamped to 0 after T.

    Written out rather than `optax.join_schedules` of `linear_schedule` (+ `constant_schedule`)
    + `cosine_decay_schedule`, because optax's values are not the same float32 numbers: its
    warm-up computes peak - peak * (1 - s / W) (off by up to 2e-5 relative; step 1 of the
    8,000-step ConvNet protocol: 1.2500286e-06 instead of 1.2500001e-06) and its cosine takes
    pi * s / D where this takes pi * (s / D). Measured under jit at every step 0 … T + 1, steps
    that differ: 1,699 for ConvNet T = 8,000 / W = 800, 22 for 100 / 20, 157 for 600 / 100,
    13,733 for EffNetV2 64,000 / 6,400, 25,203 for 96,000 / 6,400 / H = 12,400 (its hold steps
    agree), 35,484 for SGD 96,186 / 1,000.
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
    """0 → peak linearly over `warmup_steps`, then linearly to 0 at `total_steps` (DavidNet).

    Written out (`jnp.interp`) rather than `optax.join_schedules` of two `linear_schedule`s,
    because optax's values are not the same float32 numbers: its ramps compute
    init + (end - init) * (1 - s / T) forms, here peak * s / W and an interpolation. Measured
    under jit at every step 0 … T + 1: 1,282 steps differ for DavidNet's T = 2,940 / W = 1,176
    (step 1: 3.4013606e-04 here, 3.4012794e-04 in optax), 28 for its 60 / 20 smoke run.
    """
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
    sgd_nesterov:  momentum=0.9, Nesterov; `weight_decay` (default 0) times the weights is
                   added to the gradients before momentum (DavidNet, App. D), on every parameter
                   (`weight_decay_on="all"`, the default) or on the kernels of convolutions and
                   dense layers only (`"kernels"`: no decay of biases or BatchNorm, as a Keras
                   `kernel_regularizer=l2(c)` does, whose gradient is 2c · w). The loss is a
                   batch mean, so DavidNet's sum-loss convention (wd · batch_size) maps to wd.
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
            on = _get(cfg, "weight_decay_on", "all")
            if on not in WEIGHT_DECAY_ON:
                raise ValueError(f"unknown weight_decay_on {on!r}; available: "
                                 + ", ".join(WEIGHT_DECAY_ON))
            parts.append(optax.add_decayed_weights(
                weight_decay, mask=kernels_only if on == "kernels" else None))
        parts.append(optax.sgd(schedule, momentum=float(_get(cfg, "momentum", 0.9)), nesterov=True))
        return optax.chain(*parts)
    raise ValueError(f"unknown optimizer {name!r}; available: {', '.join(_OPTIMIZERS)}")


OPTIMIZER_FIELDS = ("optimizer", "learning_rate", "schedule", "warmup_steps", "hold_steps",
                    "total_steps", "b1", "b2", "eps", "keras_eps", "weight_decay", "momentum",
                    "weight_decay_on")
WEIGHT_DECAY_ON = ("all", "kernels")


def kernels_only(params: Any) -> Any:
    """True at every leaf named ``kernel`` (convolutions, dense layers), False elsewhere."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], "key", None) == "kernel", params)


def shared_optimizer(cfg: Any) -> optax.GradientTransformation:
    """``make_optimizer(cfg)``, one object per distinct setting of the fields it reads
    (``OPTIMIZER_FIELDS``): the optimizer is part of a train state's tree structure, so an equal
    object lets a later run of the same setting reuse the compiled step instead of compiling it
    again."""
    fields = {k: _get(cfg, k, None) for k in OPTIMIZER_FIELDS}
    return _cached_optimizer(json.dumps(fields, sort_keys=True, default=str))


@functools.lru_cache(maxsize=32)
def _cached_optimizer(key: str) -> optax.GradientTransformation:
    return make_optimizer({k: v for k, v in json.loads(key).items() if v is not None})

