import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lfe.core import genome as G
from lfe.core import integrity as I
from lfe.core import reference as R
from lfe.training import compile as C


def test_to_loss_sums_over_classes_and_applies_sign():
    g = G.make([("ln", ["yhat"]), ("mul", ["y", "h0"]), ("neg", ["h0"]), ("neg", ["h0"]),
                ("neg", ["h1"])])
    y = jnp.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    p = jnp.array([[0.2, 0.7, 0.1], [0.5, 0.25, 0.25]])
    want = -np.log(np.array([0.7, 0.5]) + 1e-7)
    np.testing.assert_allclose(C.to_loss(g, 1)(y, p), want, rtol=1e-6)
    np.testing.assert_allclose(C.to_loss(g, -1)(y, p), -want, rtol=1e-6)
    loss = jax.jit(C.to_loss(g, 1))
    assert loss(y, p).shape == (2,) and loss(y, p).dtype == jnp.float32
    with pytest.raises(ValueError):
        C.to_loss(g, 0)


def test_to_loss_is_differentiable_and_has_no_dead_branches():
    # sqrt(|x|) of a negative region etc.: only the active ops are traced.
    g = G.make([("div", ["yhat", "y"]), ("div_sqrt", ["yhat", "h0"]), ("ln", ["h1"]),
                ("min", ["y", "h0"]), ("add", ["h2", "h3"])])
    loss = C.to_loss(g, -1)
    y = jax.nn.one_hot(jnp.array([1, 0]), 3)
    grad = jax.grad(lambda logits: loss(y, jax.nn.softmax(logits)).mean())(jnp.ones((2, 3)))
    assert np.all(np.isfinite(np.asarray(grad)))


def _evaluate_batch(enc, y, yhat):
    """``evaluate_one`` vmapped over encoded genomes, as population training batches it."""
    one = jax.vmap(C.evaluate_one, in_axes=(0, 0, 0, None, None))
    return np.asarray(jax.jit(one)(enc["ops"], enc["args"], enc["order"], y, yhat))


def test_batched_evaluator_matches_per_genome_graphs():
    rng = np.random.default_rng(0)
    gs = [g for g in (G.random_genome(rng) for _ in range(600)) if not G.has_cycle(g)][:300]
    y, yhat = I.phenotype_inputs(50)
    enc = C.encode(gs)
    batched = _evaluate_batch(enc, y, yhat)
    assert batched.shape == (len(gs), 50, 2)
    for g, row in zip(gs, batched, strict=True):
        single = np.asarray(C.graph_fn(g)(jnp.asarray(y), jnp.asarray(yhat)))
        np.testing.assert_allclose(row, single, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_batched_evaluator_matches_numpy_reference():
    rng = np.random.default_rng(1)
    gs = [g for g in (G.random_genome(rng) for _ in range(400)) if not G.has_cycle(g)]
    enc = C.encode(gs)
    y, yhat = I.phenotype_inputs()
    ph = _evaluate_batch(enc, y, yhat).sum(-1)
    close = [np.allclose(a, R.phenotype(g), rtol=1e-4, atol=1e-6, equal_nan=True)
             for a, g in zip(ph, gs, strict=True)]
    assert np.mean(close) > 0.98
