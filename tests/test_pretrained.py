"""Tests for lfe.training.models.pretrained: the .npz format, the loader's checks, the Keras
converter.

A generated checkpoint stands in for the published weights: the variables of a shallow
EfficientNetV2 (every block kind: fused expand 1 and 4, MBConv with SE) are written as a Keras
HDF5 weights file, converted with the command, loaded and run.
"""

import functools
import re
import zipfile

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


# --- Keras 3 layouts -----------------------------------------------------------------------
# Written here with h5py as Keras 3 writes them (keras/src/legacy/saving/legacy_h5_format.py
# save_weights_to_hdf5_group for `.h5`; keras/src/saving/saving_lib.py save_weights_only with
# H5IOStore for `.weights.h5`): variable paths as weight names, the depthwise weight "kernel",
# per-class group names, variables as datasets "0", "1", ... in save_own_variables order.

# TINY's Keras layers in the Keras model's order (stem, blocks, top, head), written out by hand.
_MB = ("expand_conv", "expand_bn", "dwconv2", "bn", "se_reduce", "se_expand", "project_conv",
       "project_bn")
TINY_ORDER = (["stem_conv", "stem_bn", "block1a_project_conv", "block1a_project_bn"]
              + [f"block2{b}_{r}" for b in "ab"
                 for r in ("expand_conv", "expand_bn", "project_conv", "project_bn")]
              + [f"block3{b}_{r}" for b in "ab" for r in _MB]
              + ["top_conv", "top_bn", "predictions"])
_KERAS3_VARS = {"conv2d": ("kernel", "bias"), "depthwise_conv2d": ("kernel", "bias"),
                "dense": ("kernel", "bias"),
                "batch_normalization": ("gamma", "beta", "moving_mean", "moving_variance")}


def _keras3_class(layer):
    if "dwconv2" in layer:
        return "depthwise_conv2d"
    return "dense" if layer == "predictions" else (
        "batch_normalization" if layer.endswith("bn") else "conv2d")


def _keras3_weights(variables):
    """{layer: [(Keras 3 variable name, array)]} in save_own_variables order."""
    found = {}
    for key, value in pretrained.flatten(variables).items():
        layer, weight, array = pretrained.flax_to_keras(key, np.asarray(value))
        name = weight.split("/")[-1].split(":")[0].replace("depthwise_kernel", "kernel")
        found.setdefault(layer, {})[name] = array
    return {layer: [(n, found[layer][n]) for n in _KERAS3_VARS[_keras3_class(layer)]
                    if n in found[layer]] for layer in found}


def _write_keras3_h5(path, variables, *, paths=True):
    """``paths``: weight names are variable paths (Keras >= 3.1), else names (3.0: "kernel")."""
    weights = _keras3_weights(variables)
    layers = ["input_layer", "rescaling"] + TINY_ORDER
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in layers])
        f.attrs["backend"], f.attrs["keras_version"] = b"jax", b"3.10.0"
        for layer in sorted(layers) + ["top_level_model_weights"]:
            group = f.create_group(layer)
            named = [(f"{layer}/{n}" if paths else n, a) for n, a in weights.get(layer, [])]
            group.attrs["weight_names"] = [n.encode() for n, _ in named]
            for name, array in named:
                group.create_dataset(name, data=array)


def _write_keras3_weights(path, variables, *, named=True):
    weights, counts = _keras3_weights(variables), {}
    extras = {"stem_bn": "activation", "top_bn": "global_average_pooling2d"}
    with h5py.File(path, "w") as f:
        layers = f.create_group("layers")
        for layer in ["input_layer", "rescaling"] + TINY_ORDER:
            for name in ([layer, "dropout"] if layer == "predictions" else [layer]) + (
                    [extras[layer]] if layer in extras else []):
                cls = _keras3_class(name) if name in weights else name
                key = cls if cls not in counts else f"{cls}_{counts[cls]}"
                counts[cls] = counts.get(cls, 0) + 1
                group = layers.create_group(key)
                store = group.create_group("vars")
                if named:  # Keras >= 3.6
                    store.attrs["name"] = name
                if name == "dropout":  # its SeedGenerator's state, a child object
                    group.create_group("seed_generator/vars").create_dataset(
                        "0", data=np.array([0, 7], np.uint32))
                for i, (_, array) in enumerate(weights.get(name, [])):
                    store.create_dataset(str(i), data=array)
        f.create_group("vars")  # the model's own, empty
        f.create_group("optimizer/vars").create_dataset("0", data=np.int64(12))


def test_keras_layer_order_is_the_keras_models(tiny):
    assert pretrained.keras_layer_order(tiny[0]) == TINY_ORDER
    full = pretrained.keras_layer_order()  # EfficientNetV2-S
    # stem 2; fused e1: 2 blocks × 2; fused e4: 8 × 4; MBConv: 30 × 8; top 2; head 1
    assert len(full) == 281 and full[:5] == ["stem_conv", "stem_bn", "block1a_project_conv",
                                             "block1a_project_bn", "block1b_project_conv"]
    assert full[-4:] == ["block6o_project_bn", "top_conv", "top_bn", "predictions"]
    assert full.index("block4a_dwconv2") < full.index("block4a_se_reduce") < full.index(
        "block4a_project_conv") < full.index("block4b_expand_conv")


@pytest.mark.parametrize("paths", [True, False], ids=["keras>=3.1", "keras3.0"])
def test_keras3_h5_with_kernel_named_depthwise_weights_converts(tmp_path, tiny, forward, paths):
    variables, x, logits = tiny
    h5, npz = tmp_path / "keras3.h5", tmp_path / "keras3.npz"
    _write_keras3_h5(h5, variables, paths=paths)
    with h5py.File(h5, "r") as f:
        name = "block3a_dwconv2/kernel" if paths else "kernel"
        assert f[f"block3a_dwconv2/{name}"].shape == (3, 3, 192, 1)
    assert pretrained.main(["convert", "--from=keras_h5", str(h5), str(npz)]) == 0
    loaded = pretrained.load_variables(npz, TINY, image_size=32, num_classes=5)
    assert _same(loaded, variables)
    np.testing.assert_array_equal(forward(loaded, x), logits)


@pytest.mark.parametrize("named", [True, False], ids=["keras>=3.6", "keras<3.6"])
def test_keras3_weights_h5_converts(tmp_path, tiny, forward, named):
    variables, x, logits = tiny
    path = tmp_path / "model.weights.h5"
    _write_keras3_weights(path, variables, named=named)
    with h5py.File(path, "r") as f:
        assert "layer_names" not in f.attrs and f["layers/depthwise_conv2d/vars/0"].shape == (
            3, 3, 192, 1)
    order = None if named else TINY_ORDER
    assert _same(pretrained.unflatten(pretrained.read_keras_h5(path, order)), variables)
    if named:  # the command reads it as it is
        npz = tmp_path / "w.npz"
        assert pretrained.main(["convert", str(path), str(npz)]) == 0
        loaded = pretrained.load_variables(npz, TINY, image_size=32, num_classes=5)
        np.testing.assert_array_equal(forward(loaded, x), logits)
        archive = tmp_path / "model.keras"  # model.save("model.keras"): the same inside a zip
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("config.json", "{}")
            z.write(path, "model.weights.h5")
        assert _same(pretrained.unflatten(pretrained.read_keras_h5(archive)), variables)


def test_keras3_weights_h5_of_another_model_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "other.weights.h5"
    with h5py.File(path, "w") as f:
        store = f.create_group("layers/normalization/vars")
        for i in range(3):
            store.create_dataset(str(i), data=np.zeros(3))
    assert pretrained.main(["convert", str(path), str(tmp_path / "out.npz")]) == 1
    err = capsys.readouterr().err
    assert "'normalization' (3 variables) is not one of an EfficientNetV2" in err
    assert err.count("\n") == 1
    empty = tmp_path / "empty.keras"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("config.json", "{}")
    with pytest.raises(ValueError, match="cannot read Keras weights .*model.weights.h5"):
        pretrained.read_keras_h5(empty)


@pytest.mark.slow
def test_files_written_by_keras3_give_the_keras_forward_pass(tmp_path):
    """Where Keras 3 is installed: a shallow keras.applications EfficientNetV2 (TINY's stages,
    Keras' 1280-wide top) saved by Keras itself as `.weights.h5` (with layer names, and with
    them removed as Keras < 3.6 writes it), `.h5` and `.keras` converts to the flax model, whose
    forward pass on x/128 - 1 (the Keras model's Rescaling) equals Keras' on x."""
    keras = pytest.importorskip("keras")
    if int(keras.__version__.split(".")[0]) < 3:
        pytest.skip("Keras 2 writes the tf_keras layout, tested above")
    from keras.src.applications import efficientnet_v2 as keras_effnet

    s = keras_effnet.DEFAULT_BLOCKS_ARGS["efficientnetv2-s"]
    blocks = [dict(s[0], num_repeat=1), dict(s[1], num_repeat=2),
              dict(s[3], input_filters=48, num_repeat=2)]
    model = keras_effnet.EfficientNetV2(1.0, 1.0, 32, blocks_args=blocks, weights=None, classes=5,
                                        input_shape=(32, 32, 3), classifier_activation=None)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # BN statistics that are not 0 / 1
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(size=layer.moving_mean.shape) * 0.1)
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, size=layer.moving_variance.shape))
    model.save_weights(tmp_path / "k.weights.h5")
    model.save(tmp_path / "k.h5")
    model.save(tmp_path / "k.keras")
    old = tmp_path / "old.weights.h5"
    old.write_bytes((tmp_path / "k.weights.h5").read_bytes())
    with h5py.File(old, "a") as f:
        for group in f["layers"].values():
            if "vars" in group and "name" in group["vars"].attrs:
                del group["vars"].attrs["name"]
    x = rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    want = np.asarray(model(x, training=False))
    flax_model = TINY.clone(head_features=1280)
    order = pretrained.keras_layer_order(jax.eval_shape(
        lambda: flax_model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False)))
    for name in ("k.weights.h5", "k.h5", "k.keras", "old.weights.h5"):
        flat = pretrained.read_keras_h5(tmp_path / name, order if name.startswith("old") else None)
        variables = pretrained.unflatten({k: jnp.asarray(v) for k, v in flat.items()})
        got = _fast(functools.partial(flax_model.apply, train=False), variables, x / 128 - 1)
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=name)
