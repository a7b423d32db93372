"""Tests for lfe.training.models.pretrained: the .npz format, the loader's checks, the Keras
converter.

A generated checkpoint stands in for the published weights: the variables of a shallow
EfficientNetV2 (every block kind: fused expand 1 and 4, MBConv with SE) are written as a Keras
HDF5 weights file, converted with the command, loaded and run.
"""

import functools
import re

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lfe.training.models import efficientnetv2, pretrained

_S = efficientnetv2.EFFNETV2_S
TINY = efficientnetv2.EfficientNetV2(
    num_classes=5,
    stages=(_S[0]._replace(repeats=1), _S[1]._replace(repeats=2), _S[3]._replace(repeats=2)),
    head_features=64,
)
KERAS_LAYER = re.compile(
    r"^(stem_(conv|bn)|top_(conv|bn)|predictions|block[1-6][a-o]_"
    r"(expand_conv|expand_bn|dwconv2|bn|se_reduce|se_expand|project_conv|project_bn))$"
)


def _fast(fn, *args):
    """jit with XLA backend optimisations off: these runs are tiny, their compile is not."""
    return jax.jit(fn).lower(*args).compile({"xla_backend_optimization_level": 0})(*args)


@pytest.fixture(scope="module")
def tiny():
    """(variables, images, eval logits) of the shallow model, with non-trivial BN statistics."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 32, 32, 3)), jnp.float32)

    def make(x):
        variables = TINY.init(jax.random.PRNGKey(0), x, train=False)
        stats = jax.tree.map(lambda s: s + 0.5, variables["batch_stats"])  # not 0 / 1
        variables = {"params": variables["params"], "batch_stats": stats}
        return variables, TINY.apply(variables, x, train=False)

    variables, logits = _fast(make, x)
    return variables, x, logits


@pytest.fixture(scope="module")
def forward():
    """`forward(variables, x)`: eval logits of the shallow model with the variables' classes."""

    def run(variables, x):
        model = TINY.clone(num_classes=variables["params"]["predictions"]["kernel"].shape[-1])
        return _fast(functools.partial(model.apply, train=False), variables, x)

    return run


def _same(a, b):
    return all(jax.tree.leaves(jax.tree.map(lambda u, v: np.array_equal(u, v), a, b)))


def test_keras_h5_convert_load_reproduces_variables_and_forward_pass(tmp_path, tiny, forward):
    variables, x, logits = tiny
    h5, npz = tmp_path / "effnetv2-s.h5", tmp_path / "effnetv2-s.npz"
    pretrained.write_keras_h5(h5, variables)
    with h5py.File(h5, "r") as f:  # Keras names and layouts, as in the published file
        layers = [n.decode() for n in f.attrs["layer_names"]]
        assert all(KERAS_LAYER.match(n) for n in layers), layers
        assert f["block3a_dwconv2/block3a_dwconv2/depthwise_kernel:0"].shape == (3, 3, 192, 1)
        assert f["block3a_se_reduce/block3a_se_reduce/kernel:0"].shape == (1, 1, 192, 12)
        assert f["block3a_se_expand/block3a_se_expand/bias:0"].shape == (192,)
        assert f["block1a_project_conv/block1a_project_conv/kernel:0"].shape == (3, 3, 24, 24)
        names = {n.decode() for n in f["stem_bn"].attrs["weight_names"]}
        assert names == {
            f"stem_bn/{w}:0" for w in ("gamma", "beta", "moving_mean", "moving_variance")
        }
        np.testing.assert_array_equal(
            f["top_bn/top_bn/moving_variance:0"], variables["batch_stats"]["top_bn"]["var"]
        )
    assert pretrained.main(["convert", "--from=keras_h5", str(h5), str(npz)]) == 0
    loaded = pretrained.load_variables(npz, TINY, image_size=32, num_classes=5)
    assert jax.tree.structure(loaded) == jax.tree.structure(variables)
    assert _same(loaded, variables)  # bitwise
    np.testing.assert_array_equal(forward(loaded, x), logits)


def test_keras_names_map_to_flax_paths_and_back_for_the_full_model():
    shapes = jax.eval_shape(
        functools.partial(efficientnetv2.EfficientNetV2(num_classes=1000).init, train=False),
        jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)),
    )  # fmt: skip
    flat = pretrained.flatten(shapes)
    layers = set()
    for path, leaf in flat.items():
        value = np.broadcast_to(np.float32(0), leaf.shape)  # no memory for 21M zeros
        layer, weight, keras_value = pretrained.flax_to_keras(path, value)
        assert KERAS_LAYER.match(layer) and weight.startswith(f"{layer}/"), (path, weight)
        back, back_value = pretrained.keras_to_flax(layer, weight, keras_value)
        assert back == path and back_value.shape == leaf.shape
        layers.add(layer)
    assert {"block6o_project_bn", "block4a_se_expand", "block1b_project_conv"} <= layers
    # stem 1 + 4; fused e1: 2 × 5; fused e4: 8 × 10; MBConv: 30 × 19; top 1 + 4; head 2
    assert len(flat) == 672


def test_keras_weight_names_and_layouts():
    k = np.arange(3 * 3 * 4).reshape(3, 3, 4, 1).astype(np.float32)
    path, value = pretrained.keras_to_flax(
        "block4a_dwconv2", "block4a_dwconv2/depthwise_kernel:0", k
    )
    assert path == "params/block4a/dwconv2/kernel" and value.shape == (3, 3, 1, 4)
    np.testing.assert_array_equal(value[1, 2, 0, :], k[1, 2, :, 0])
    se = np.ones((1, 1, 256, 16), np.float32)
    path, value = pretrained.keras_to_flax("block4a_se_reduce", "block4a_se_reduce/kernel:0", se)
    assert path == "params/block4a/se_reduce/kernel" and value.shape == (256, 16)
    assert pretrained.keras_to_flax("stem_bn", "stem_bn/moving_variance:0", k)[0] == (
        "batch_stats/stem_bn/var"
    )
    assert pretrained.keras_to_flax("top_bn", "top_bn/gamma:0", k)[0] == "params/top_bn/scale"
    assert pretrained.keras_to_flax("predictions", "predictions/bias:0", k)[0] == (
        "params/predictions/bias"
    )
    with pytest.raises(ValueError, match="unknown Keras weight"):
        pretrained.keras_to_flax("rescaling", "rescaling/offset:0", k)


def test_new_class_count_gets_a_fresh_head_and_keeps_the_rest(tmp_path, tiny, forward):
    variables, x, _ = tiny
    path = tmp_path / "v.npz"
    pretrained.save_variables(path, variables)
    loaded = pretrained.load_variables(path, TINY, image_size=96, num_classes=7)
    head = loaded["params"].pop("predictions")
    assert head["kernel"].shape == (64, 7) and np.all(head["bias"] == 0)
    assert np.std(head["kernel"]) > 0
    original = {**variables["params"]}
    original.pop("predictions")
    assert _same(loaded["params"], original) and _same(
        loaded["batch_stats"], variables["batch_stats"]
    )
    loaded["params"]["predictions"] = head
    assert forward(loaded, x).shape == (3, 7)


def test_mismatched_file_is_one_line_value_error_naming_the_keys(tmp_path, tiny):
    variables, _, _ = tiny
    path = tmp_path / "v.npz"
    pretrained.save_variables(path, variables)
    full = efficientnetv2.EfficientNetV2(num_classes=5)
    with pytest.raises(ValueError) as info:
        pretrained.load_variables(path, full, image_size=32, num_classes=5)
    message = str(info.value)
    assert "\n" not in message
    assert "missing [" in message and "shape mismatch [" in message
    assert re.search(r"\w+/\S+: file \([\d, ]+\) vs model \([\d, ]+\)", message)
    assert "in all)" in message  # long lists are cut, with their length

    params = dict(variables["params"], extra={"kernel": np.zeros(3)})
    pretrained.save_variables(path, {"params": params, "batch_stats": variables["batch_stats"]})
    with pytest.raises(ValueError, match=r"unexpected \[params/extra/kernel\]$"):
        pretrained.load_variables(path, TINY, image_size=32, num_classes=5)


def test_corrupt_or_foreign_files_are_one_line_value_errors(tmp_path, capsys):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="cannot read pretrained file") as info:
        pretrained.load_variables(garbage, TINY, image_size=32, num_classes=5)
    assert "\n" not in str(info.value)

    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, w=np.zeros(3))
    with pytest.raises(ValueError, match="not an lfe variables file"):
        pretrained.read_variables(foreign)

    not_keras = tmp_path / "not_keras.h5"
    with h5py.File(not_keras, "w") as f:
        f.create_dataset("w", data=np.zeros(3))
    assert pretrained.main(["convert", str(not_keras), str(tmp_path / "out.npz")]) == 1
    assert "not a Keras HDF5 weights file" in capsys.readouterr().err
    assert pretrained.main(["convert", str(garbage), str(tmp_path / "out.npz")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read Keras weights") and err.count("\n") == 1
    with pytest.raises(ValueError, match="unknown source format 'torch'; available: keras_h5"):
        pretrained.convert("torch", garbage, tmp_path / "out.npz")


def test_full_model_keras_file_layout_is_read(tmp_path, tiny):
    """`model.save()` files keep the weights under a `model_weights` group."""
    variables, _, _ = tiny
    flat_h5 = tmp_path / "weights.h5"
    pretrained.write_keras_h5(flat_h5, variables)
    nested = tmp_path / "model.h5"
    with h5py.File(flat_h5, "r") as src, h5py.File(nested, "w") as dst:
        src.copy(src["/"], dst, name="model_weights")
        for key, value in src.attrs.items():
            dst["model_weights"].attrs[key] = value
    assert _same(pretrained.unflatten(pretrained.read_keras_h5(nested)), variables)
