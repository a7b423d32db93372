
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


# --------------------------------------------------------------------------- the data form

def _accepted_genomes(n: int, seed: int = 0) -> list[tuple]:
    """``n`` random genomes the integrity check accepts, with its orientation."""
    rng, out = np.random.default_rng(seed), []
    while len(out) < n:
        batch = [G.random_genome(rng) for _ in range(500)]
        out += [(g, v.sign) for g, v in zip(batch, I.check_batch(batch, I.Archive()), strict=True)
                if v.ok]
    return out[:n]


def test_data_form_equals_the_unrolled_form_on_1000_accepted_genomes():
    """Loss values and gradients (w.r.t. ŷ) of the data form — one compiled function for every
    genome, the codes as arguments — equal the unrolled form's within float32 tolerance (the
    gradient's scaled by its largest entry: some of these losses reach 1e7, and a different
    evaluation order moves their last bits). The unrolled form runs op by op (compiling 1,000
    functions would take minutes)."""
    pairs = _accepted_genomes(1000)
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    y = jax.nn.one_hot(jax.random.randint(k1, (16,), 0, 10), 10)
    yhat = jax.nn.softmax(3.0 * jax.random.normal(k2, (16, 10)))
    program = C.GenomeProgram("paper")
    data = jax.jit(jax.value_and_grad(lambda q, params: program(params, y, q).mean()))
    worst = 0.0
    for g, s in pairs:
        value, grad = map(np.asarray, data(yhat, C.genome_params(g, s)))
        unrolled = C.to_loss(g, s)
        with jax.disable_jit():
            ref_value, ref = map(np.asarray, jax.value_and_grad(
                lambda q, f=unrolled: f(y, q).mean())(yhat))
        np.testing.assert_allclose(value, ref_value, rtol=1e-5, equal_nan=True, err_msg=str(g))
        np.testing.assert_array_equal(np.isfinite(grad), np.isfinite(ref), err_msg=str(g))
        finite = np.isfinite(ref)
        scale = np.abs(ref[finite]).max(initial=0.0)
        error = np.abs(grad[finite] - ref[finite]).max(initial=0.0) / (scale + 1e-12)
        assert error < 1e-3 or scale < 1e-6, (str(g), error, scale)
        worst = max(worst, error if scale >= 1e-6 else 0.0)
    assert data._cache_size() == 1  # one compile served all 1,000
    print(f"worst scaled gradient difference: {worst:.2e}")


def test_unused_nodes_run_no_op_in_the_data_form():
    """Hidden nodes outside the active graph get the no-op code. Here h2 = exp(1/ŷ) overflows
    for a small ŷ: computed, its Inf derivative times its zero cotangent would make the gradient
    NaN; as a no-op the data form's gradient is finite, as the unrolled form's."""
    g = G.make([("ln", ["yhat"]), ("reciprocal", ["yhat"]), ("exp", ["h1"]), ("abs", ["y"]),
                ("neg", ["h0"])])
    params = C.genome_params(g, 1)
    assert params["ops"][1:4].tolist() == [C.noop_code(g.opset)] * 3
    assert params["ops"][0] != C.noop_code(g.opset)
    y = jax.nn.one_hot(jnp.array([1, 0]), 3)
    logits = jnp.array([[0.0, 0.0, -20.0], [1.0, 0.0, -20.0]])
    for loss in (C.data_loss(g, 1), C.to_loss(g, 1)):
        grad = jax.grad(lambda z, f=loss: f(y, jax.nn.softmax(z)).mean())(logits)
        assert np.all(np.isfinite(np.asarray(grad)))
    with pytest.raises(ValueError, match="sign"):
        C.genome_params(g, 0)


def test_as_program_of_plain_and_data_losses():
    g = G.make([("ln", ["yhat"]), ("mul", ["y", "h0"]), ("neg", ["h0"]), ("neg", ["h0"]),
                ("neg", ["h1"])])
    data = C.data_loss(g, 1)
    assert C.as_program(data) == (C.GenomeProgram("paper"), data.params)
    program, params = C.as_program(C.to_loss(g, 1))
    assert isinstance(program, C.Closed) and params == ()
    y = jnp.array([[0.0, 1.0, 0.0]])
    p = jnp.array([[0.2, 0.7, 0.1]])
    np.testing.assert_allclose(data(y, p), program(params, y, p), rtol=1e-6)
    assert hash(C.GenomeProgram("paper")) == hash(C.GenomeProgram("paper"))
