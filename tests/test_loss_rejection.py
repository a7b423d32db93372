import jax.numpy as jnp
import numpy as np
import pytest

from lfe.training import compile as compile_lib
from lfe.training import loss_rejection as lr
from lfe.training import losses

LABELS = np.random.default_rng(0).integers(0, 10, 64).astype(np.int32)
FREE = lr.free_logits(LABELS, 10)
FAST = lr.Settings(steps=40, learning_rate=0.1)


def ce(y, yhat):
    return -jnp.sum(y * jnp.log(yhat + 1e-7), axis=-1)


def constant(y, yhat):
    return jnp.zeros(y.shape[:-1]) + 0.0 * jnp.sum(yhat, axis=-1) + 3.0


def wrong_class(y, yhat):  # minimising it lowers the correct class's probability
    return jnp.sum(y * yhat, axis=-1)


def test_cross_entropy_passes_free_logits():
    score = lr.fit(ce, FREE, FAST)
    assert score.finite and score.final == 1.0 and len(score.curve) == 40
    assert score.best == max(score.curve) and score.mean == pytest.approx(np.mean(score.curve))


def test_library_genome_runs_in_data_form():
    # a genome loss runs as the shared data-form program with its genome's codes as params (one
    # compilation per probe for every genome; its values and gradients equal the unrolled
    # form's, tests/test_compile.py), any other loss as itself
    loss = losses.get("cross_entropy")
    program, params = lr.as_program(loss)
    assert program == compile_lib.GenomeProgram("paper")
    expected = compile_lib.genome_params(loss.genome, loss.sign)
    assert all(np.array_equal(params[k], expected[k]) for k in expected)
    assert lr.as_program(ce) == (compile_lib.Closed(ce), ())


def test_constant_loss_keeps_the_initial_accuracy_and_fails():
    # init_scale 0: all logits equal, argmax is class 0 -> accuracy = share of label 0
    score = lr.fit(constant, FREE, lr.Settings(steps=40, learning_rate=0.1, init_scale=0.0))
    assert score.curve == pytest.approx([np.mean(LABELS == 0)] * 40)
    reference = lr.fit(ce, FREE, FAST)
    assert not lr.passes(lr.fit(constant, FREE, FAST), reference)
    assert lr.passes(reference, reference)


def test_loss_that_rewards_the_wrong_class_fails():
    score = lr.fit(wrong_class, FREE, FAST)
    assert score.final == 0.0
    assert not lr.passes(score, lr.fit(ce, FREE, FAST), metric="best")


def test_non_finite_loss_fails():
    score = lr.fit(lambda y, yhat: jnp.sum(jnp.log(yhat - 2.0), axis=-1), FREE, FAST)
    assert not score.finite and (score.final, score.best, score.mean) == (0.0, 0.0, 0.0)
    assert not lr.passes(score, score)


def test_linear_probe_generalises_on_separable_blobs():
    # shapes as FREE's (64 samples, 64 features, 10 classes): the compiled probes are reused
    rng = np.random.default_rng(1)
    centers = rng.standard_normal((10, 64))
    y_train, y_eval = rng.integers(0, 10, 64), rng.integers(0, 10, 64)
    x_train = centers[y_train] + 0.3 * rng.standard_normal((64, 64))
    x_eval = centers[y_eval] + 0.3 * rng.standard_normal((64, 64))
    problem = lr.linear(x_train, y_train, x_eval, y_eval, 10)
    assert lr.fit(ce, problem, FAST).best >= 0.9
    assert lr.fit(wrong_class, problem, FAST).final <= 0.2


def test_image_features_pool_and_standardise():
    images = np.zeros((2, 4, 4, 1), np.uint8)
    images[0, :2, :2] = 255  # top-left block of image 0 white
    train, evals = lr.image_features(images, images[:1], pool=2)
    assert train.shape == (2, 4) and evals.shape == (1, 4)
    # feature 0 is 1.0 for image 0 and 0.0 for image 1: standardised to +1 / -1
    np.testing.assert_allclose(train[:, 0], [1.0, -1.0], atol=1e-4)
    np.testing.assert_allclose(train[:, 1:], 0.0)
    with pytest.raises(ValueError, match="pool 3"):
        lr.image_features(images, images, pool=3)


def test_bad_problems_and_settings_are_refused():
    with pytest.raises(ValueError, match="labels must lie"):
        lr.free_logits(np.array([0, 10]), 10)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        lr.linear(np.zeros((3, 2)), np.zeros(2, int), np.zeros((1, 2)), np.zeros(1, int), 2)
    with pytest.raises(ValueError, match="optimizer"):
        lr.Settings(optimizer="rmsprop")
    with pytest.raises(ValueError, match="steps"):
        lr.Settings(steps=0)
    with pytest.raises(ValueError, match="metric"):
        lr.fit(ce, FREE, FAST).metric("auc")


def test_gradient_equivalence():
    a = lr.gradient_signature(ce, samples=32)
    assert np.linalg.norm(a) == pytest.approx(1.0)
    # a positive scale and a term of y alone do not change the signature
    b = lr.gradient_signature(lambda y, yhat: 2.0 * ce(y, yhat) + jnp.sum(y, axis=-1),
                              samples=32)
    mse = lr.gradient_signature(lambda y, yhat: jnp.sum((y - yhat) ** 2, axis=-1), samples=32)
    zero = lr.gradient_signature(constant, samples=32)
    assert lr.equivalent(a, b) and not lr.equivalent(a, mse)
    assert not np.any(zero) and not lr.equivalent(zero, zero)
    assert lr.equivalence_groups([a, mse, zero, b]) == [[0, 3]]
