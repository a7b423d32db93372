"""Tests for lfe.training.models: registry, exact parameter counts, shapes, train vs eval
behaviour."""

import functools
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lfe.core import malloc
from lfe.training import models
from lfe.training.models import common


def _init(model, shape=(2, 32, 32, 3)):
    return model.init(jax.random.PRNGKey(0), jnp.zeros(shape, jnp.float32), train=False)


def _shapes(model, shape=(2, 32, 32, 3)):
    """Variable shapes without running anything (fast)."""
    init = functools.partial(model.init, train=False)
    return jax.eval_shape(init, jax.random.PRNGKey(0), jnp.zeros(shape, jnp.float32))


def _count(tree):
    return sum(x.size for x in jax.tree.leaves(tree))


@pytest.mark.parametrize(
    "name, kwargs, expected",
    [
        ("convnet", {}, 13_930),
        ("resnet9v2", {}, 30_426),
        ("resnet9v2", {"final_preact": True}, 30_490),
    ],
)
def test_trainable_parameter_counts(name, kwargs, expected):
    params = _shapes(models.get_model(name, num_classes=10, **kwargs))["params"]
    assert _count(params) == expected
    paper = {"convnet": 14_000, "resnet9v2": 30_000}[name]  # "14,000" / "30,000" in §3.5.1
    assert abs(_count(params) - paper) / paper < 0.03


def test_parameter_counts_scale_with_classes():
    for name, expected in (("convnet", 13_440 + 4900), ("resnet9v2", 30_096 + 3300)):
        assert _count(_shapes(models.get_model(name, num_classes=100))["params"]) == expected


def test_keras_batchnorm_defaults():
    bn = common.batch_norm(train=True, dtype=jnp.float32, param_dtype=jnp.float32)
    assert (bn.momentum, bn.epsilon) == (0.99, 1e-3)


@pytest.mark.parametrize("name", ["convnet", "resnet9v2"])
@pytest.mark.parametrize("size", [32, 48])
def test_output_shapes_are_logits(name, size):
    model = models.get_model(name, num_classes=7)
    x = jnp.asarray(np.random.default_rng(0).random((3, size, size, 3), np.float32))
    variables = _init(model, x.shape)
    logits = model.apply(variables, x, train=False)
    assert logits.shape == (3, 7) and logits.dtype == jnp.float32
    # logits, not probabilities: rows do not sum to one
    assert not np.allclose(np.asarray(logits).sum(-1), 1.0)


@pytest.mark.parametrize("name", ["convnet", "resnet9v2"])
def test_train_mode_updates_stats_and_uses_dropout_eval_does_not(name):
    model = models.get_model(name, num_classes=10, dropout_rate=0.5)
    x = jnp.asarray(np.random.default_rng(1).random((8, 32, 32, 3), np.float32))
    variables = _init(model)
    out1, upd = model.apply(
        variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(1)}, mutable=["batch_stats"]
    )
    out2, _ = model.apply(
        variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(2)}, mutable=["batch_stats"]
    )
    assert not np.allclose(out1, out2)  # dropout active
    changed = jax.tree.map(
        lambda a, b: bool(jnp.any(a != b)), variables["batch_stats"], upd["batch_stats"]
    )
    assert all(jax.tree.leaves(changed))  # every BN's running stats moved

    eval1, upd_eval = model.apply(variables, x, train=False, mutable=["batch_stats"])
    eval2 = model.apply(variables, x, train=False)
    np.testing.assert_array_equal(eval1, eval2)  # deterministic, no dropout rng needed
    same = jax.tree.map(
        lambda a, b: bool(jnp.all(a == b)), variables["batch_stats"], upd_eval["batch_stats"]
    )
    assert all(jax.tree.leaves(same))  # eval uses running averages, never updates them
    # eval of one example does not depend on the rest of the batch (running statistics)
    np.testing.assert_allclose(model.apply(variables, x[:1], train=False), eval1[:1], atol=1e-6)


def test_dropout_rate_is_a_field_that_keeps_params_compatible():
    model = models.get_model("convnet", num_classes=10)
    assert model.dropout_rate == 0.1
    assert models.get_model("resnet9v2", num_classes=10).dropout_rate == 0.5
    variables = _init(model)
    x = jnp.ones((4, 32, 32, 3))
    out = model.clone(dropout_rate=0.4).apply(variables, x, train=False)
    np.testing.assert_array_equal(out, model.apply(variables, x, train=False))


def test_compute_dtype_is_configurable_params_stay_float32():
    model = models.get_model("convnet", num_classes=10, dtype=jnp.bfloat16)
    variables = _init(model)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
    assert model.apply(variables, jnp.ones((2, 32, 32, 3)), train=False).dtype == jnp.bfloat16


@pytest.mark.parametrize("name", ["convnet", "resnet9v2"])
def test_taps_conv_matches_xla_conv(name):
    x = jnp.asarray(np.random.default_rng(2).random((2, 35, 30, 3), np.float32))  # odd sizes
    a = models.get_model(name, num_classes=10, conv_impl="xla")
    b = models.get_model(name, num_classes=10, conv_impl="taps")
    variables = _init(a, x.shape)
    assert jax.tree.structure(variables) == jax.tree.structure(_init(b, x.shape))
    kwargs = {"train": True, "rngs": {"dropout": jax.random.PRNGKey(0)}, "mutable": ["batch_stats"]}
    np.testing.assert_allclose(
        a.apply(variables, x, **kwargs)[0], b.apply(variables, x, **kwargs)[0], atol=1e-5
    )
    with pytest.raises(ValueError, match="available: auto, taps, xla"):
        _shapes(models.get_model(name, num_classes=10, conv_impl="cudnn"))


def test_registry_lists_and_rejects_unknown_names():
    assert {"convnet", "resnet9v2"} <= set(models.available())
    with pytest.raises(ValueError, match="unknown model 'nope'.*convnet.*resnet9v2"):
        models.get_model("nope", num_classes=10)


def test_registry_register_and_duplicates():
    class Tiny(nn.Module):
        num_classes: int

        @nn.compact
        def __call__(self, x, *, train: bool):
            return nn.Dense(self.num_classes)(x.mean(axis=(1, 2)))

    with models.temporary_model("tiny_test_model", Tiny):
        assert "tiny_test_model" in models.available()
        assert models.get_model("tiny_test_model", num_classes=3).num_classes == 3
        with pytest.raises(ValueError, match="already registered"):
            models.register("tiny_test_model", Tiny)
        models.register("tiny_test_model", "lfe.training.models.convnet:ConvNet", overwrite=True)
        assert type(models.get_model("tiny_test_model", num_classes=3)).__name__ == "ConvNet"
    assert "tiny_test_model" not in models.available()


def test_temporary_model_restores_a_replaced_model_even_after_an_error():
    before = models.get_model("convnet", num_classes=10)
    with pytest.raises(RuntimeError), models.temporary_model("convnet", "lfe.training.models."
                                                             "resnet9v2:ResNet9V2"):
        assert type(models.get_model("convnet", num_classes=10)).__name__ == "ResNet9V2"
        raise RuntimeError
    assert models.get_model("convnet", num_classes=10) == before


def test_auto_conv_impl_decision_table():
    # taps only for training on a multi-threaded CPU backend with glibc's default malloc
    # (BENCHMARKS.md §3); 0 threads = unknown counts as multi-threaded
    for train, backend, threads, tuned in itertools.product(
            (True, False), ("cpu", "gpu", "tpu"), (0, 1, 2, 16), (True, False)):
        want = "taps" if (train and backend == "cpu" and threads != 1 and not tuned) else "xla"
        assert common.choose_conv_impl(train=train, backend=backend, cpu_threads=threads,
                                       malloc_tuned=tuned) == want
    assert common.xla_cpu_threads(2, "") == 2 and common.xla_cpu_threads(1, "") == 1
    assert common.xla_cpu_threads(16, "--xla_cpu_multi_thread_eigen=false") == 1  # pool workers
    assert common.resolve_conv_impl("taps", train=False) == "taps"
    assert common.resolve_conv_impl("xla", train=True) == "xla"


def _old_resolve_conv_impl(impl, *, train=True):
    """`resolve_conv_impl` as it was: reading the environment at every call."""
    cores = len(common.os.sched_getaffinity(0))
    single = cores == 1 or "--xla_cpu_multi_thread_eigen=false" in common.os.environ.get(
        "XLA_FLAGS", "")
    if impl == "auto":
        taps = (train and common.jax.default_backend() == "cpu" and not single
                and not malloc.tuned())
        return "taps" if taps else "xla"
    return impl


@pytest.fixture
def fresh_auto():
    common.auto_conv_impl.cache_clear()
    yield
    common.auto_conv_impl.cache_clear()  # later tests read this process's own environment


def test_auto_conv_impl_gives_what_the_environment_gave_before(monkeypatch, fresh_auto):
    tuned = malloc.env({}).get("GLIBC_TUNABLES", "")
    for cores, flags, tunables, opt_out, backend, train in itertools.product(
            ({0}, {0, 1}, set(range(16))),
            ("", "--xla_cpu_multi_thread_eigen=false", "--xla_force_host_platform_device_count=2"),
            ("", tuned), (None, "1"), ("cpu", "gpu"), (True, False)):
        monkeypatch.setattr(common.os, "sched_getaffinity", lambda pid, c=cores: c,
                            raising=False)
        monkeypatch.setenv("XLA_FLAGS", flags)
        monkeypatch.setenv("GLIBC_TUNABLES", tunables)
        if opt_out is None:
            monkeypatch.delenv(malloc.OPT_OUT, raising=False)
        else:
            monkeypatch.setenv(malloc.OPT_OUT, opt_out)
        monkeypatch.setattr(common.jax, "default_backend", lambda b=backend: b)
        common.auto_conv_impl.cache_clear()
        assert common.resolve_conv_impl("auto", train=train) == _old_resolve_conv_impl(
            "auto", train=train), (cores, flags, tunables, opt_out, backend, train)


def test_auto_conv_impl_is_read_once_per_process(monkeypatch, fresh_auto):
    monkeypatch.setattr(common.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.setenv("GLIBC_TUNABLES", "")  # glibc's default malloc (see lfe.core.malloc)
    monkeypatch.setattr(common.jax, "default_backend", lambda: "cpu")
    assert common.resolve_conv_impl("auto", train=True) == "taps"
    assert common.resolve_conv_impl("auto", train=False) == "xla"
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    assert common.resolve_conv_impl("auto", train=True) == "taps"  # decided already
    common.auto_conv_impl.cache_clear()
    assert common.resolve_conv_impl("auto", train=True) == "xla"
