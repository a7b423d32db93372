"""lfe.training.schedules where it delegates to optax: bit-identical to the hand-written form it
replaced, value by value and through the optimizers' updates."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lfe.training import schedules


def _hand_constant(peak_value):  # the form `schedules.constant` had before optax
    return lambda count: jnp.full((), peak_value, jnp.float32)


def _bits(x) -> np.ndarray:
    return np.asarray(x, np.float32).view(np.int32)


@pytest.mark.parametrize("peak", [1e-3, 0.1, 0.4, 3e-4, 1 / 3])
def test_constant_is_the_hand_written_value_at_every_step(peak):
    steps = jnp.arange(96_188, dtype=jnp.int32)  # every step of the longest protocol, and then

    def values(fn):
        return jax.jit(jax.vmap(lambda c: jnp.asarray(fn(c), jnp.float32)))(steps)

    np.testing.assert_array_equal(_bits(values(schedules.constant(peak))),
                                  _bits(values(_hand_constant(peak))))
    assert jnp.asarray(schedules.constant(peak)(7)).dtype == jnp.float32


@pytest.mark.parametrize("optimizer", ["adam", "sgd_nesterov"])
def test_constant_schedule_gives_bit_identical_updates(optimizer):
    cfg = {"optimizer": optimizer, "schedule": "constant", "learning_rate": 0.1,
           "weight_decay": 5e-4 if optimizer == "sgd_nesterov" else 0.0}
    new = schedules.make_optimizer(cfg)
    if optimizer == "adam":
        old = optax.chain(schedules.scale_by_keras_adam(0.9, 0.999, 1e-7),
                          optax.scale_by_learning_rate(_hand_constant(0.1)))
    else:
        old = optax.chain(optax.add_decayed_weights(5e-4),
                          optax.sgd(_hand_constant(0.1), momentum=0.9, nesterov=True))
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)}

    @jax.jit
    def run(grads):
        out = []
        for tx in (new, old):
            p, state = params, tx.init(params)
            for g in grads:
                updates, state = tx.update({"w": g}, state, p)
                p = optax.apply_updates(p, updates)
            out.append(p["w"])
        return out

    a, b = run(jnp.asarray(rng.normal(size=(20, 5, 3)) * 10.0 ** rng.integers(-6, 1, (20, 1, 1)),
                           jnp.float32))
    np.testing.assert_array_equal(_bits(a), _bits(b))


def test_weight_decay_on_kernels_only_spares_biases_and_batchnorm():
    """``weight_decay_on="kernels"`` (a Keras ``kernel_regularizer=l2(c)``, WRN/SE-ResNeXt's
    reference code, as 2c): only leaves named ``kernel`` are decayed; "all" decays every one."""
    params = {"conv": {"kernel": jnp.array(2.0), "bias": jnp.array(2.0)},
              "bn": {"scale": jnp.array(2.0), "bias": jnp.array(2.0)}}
    zero = jax.tree.map(jnp.zeros_like, params)
    cfg = {"optimizer": "sgd_nesterov", "schedule": "constant", "learning_rate": 0.1,
           "weight_decay": 1e-3, "momentum": 0.0}
    kernels, _ = schedules.make_optimizer({**cfg, "weight_decay_on": "kernels"}).update(
        zero, schedules.make_optimizer({**cfg, "weight_decay_on": "kernels"}).init(params),
        params)
    assert float(kernels["conv"]["kernel"]) == pytest.approx(-0.1 * 1e-3 * 2.0)
    assert [float(x) for x in (kernels["conv"]["bias"], kernels["bn"]["scale"],
                               kernels["bn"]["bias"])] == [0.0, 0.0, 0.0]
    tx = schedules.make_optimizer(cfg)  # "all", the default
    every, _ = tx.update(zero, tx.init(params), params)
    assert all(float(x) == pytest.approx(-0.1 * 1e-3 * 2.0) for x in jax.tree.leaves(every))
    with pytest.raises(ValueError, match="unknown weight_decay_on 'biases'; available: all, "
                                         "kernels"):
        schedules.make_optimizer({**cfg, "weight_decay_on": "biases"})
