"""Pretrained EfficientNetV2-S variables for fine-tuning (Table 11), from a local file.

Nothing can be downloaded at run time, so published weights are converted once, offline:

    python -m lfe.training.models.pretrained convert --from=keras_h5 efficientnetv2-s.h5
    effnetv2_s.npz

File format (`.npz`, written by `save_variables`): one array per flax variable, keyed by its
'/'-joined path including the collection, e.g. `params/stem_conv/kernel` [3, 3, 3, 24],
`params/block4a/dwconv2/kernel` [3, 3, 1, 256], `batch_stats/top_bn/mean` [1280],
`params/predictions/kernel` [1280, classes]; float32, flax layouts (conv kernels HWIO, depthwise
kernels [k, k, 1, C], dense kernels [in, out]); plus `__format__` = "lfe-variables-v1".

`load_variables(path, model, image_size, num_classes)` checks every key and shape against the
model, reports all missing / unexpected / mismatched keys in one ValueError line, and replaces
the classifier head with a fresh initialisation when the file's class count differs (as
fine-tuning on a new dataset does).

Keras source (`--from=keras_h5`): the keras.applications `EfficientNetV2S` weights in any of
the layouts Keras writes:
- HDF5 (`.h5`, tf_keras / Keras 2, as the published `efficientnetv2-s.h5`): root attribute
  `layer_names`, one group per layer with attribute `weight_names` such as
  `block4a_dwconv2/depthwise_kernel:0`; a `model.save()` file keeps them under `model_weights`;
- Keras 3's HDF5 (`model.save("x.h5")`): the same, but weight names are variable paths without
  `:0` (`block4a_dwconv2/kernel`: Keras 3 names the depthwise weight `kernel`) and a
  `top_level_model_weights` group;
- Keras 3's `.weights.h5` (`model.save_weights`; also inside a `.keras` zip as
  `model.weights.h5`): no `layer_names`; group `layers/<class>[_<k>]/vars` per layer, the k-th
  layer of its class (`conv2d_7`, `batch_normalization_3`, `depthwise_conv2d`, `dense`) in the
  model's layer order, its variables as datasets `0`, `1`, ... (trainable, then non-trainable:
  kernel, bias; gamma, beta, moving_mean, moving_variance); Keras >= 3.6 stores the layer name
  as the `name` attribute of `vars`, older Keras 3 files are read by position against the
  EfficientNetV2-S layer order (`keras_layer_order`).
Keras layer `block4a_se_reduce` ↔ flax module `block4a/se_reduce`; BN gamma/beta/moving_mean/
moving_variance ↔ params scale/bias, batch_stats mean/var; depthwise kernels [k, k, C, 1] ↔
[k, k, 1, C]; the SE 1×1 convolutions [1, 1, in, out] ↔ dense kernels [in, out]. The Keras
model's own Rescaling layer (x/128 − 1) has no weights; this project normalises in the data
pipeline ("effnet": (x − 127.5)/128, half a grey level apart).
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import re
import sys
import zipfile
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

FORMAT = "lfe-variables-v1"
HEAD = "predictions"  # EfficientNetV2's classifier module (Keras layer name)

Flat = dict[str, Any]


def flatten(variables: Mapping[str, Any]) -> Flat:
    """{"params": {"stem_conv": {"kernel": a}}} → {"params/stem_conv/kernel": a} (leaves as is)."""
    flat: Flat = {}

    def visit(prefix: str, node: Any) -> None:
        if isinstance(node, Mapping):
            for key, child in node.items():
                visit(f"{prefix}/{key}" if prefix else str(key), child)
        else:
            flat[prefix] = node

    visit("", variables)
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of `flatten`."""
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        *parents, leaf = path.split("/")
        node = tree
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return tree


def save_variables(path: str | os.PathLike, variables: Mapping[str, Any]) -> None:
    """Writes `variables` (collections params, batch_stats) in the documented `.npz` format."""
    flat = {k: np.asarray(v, np.float32) for k, v in flatten(variables).items()}
    with open(path, "wb") as f:  # np.savez would append ".npz" to other suffixes
        np.savez(f, __format__=np.array(FORMAT), **flat)


def read_variables(path: str | os.PathLike) -> Flat:
    """Reads a `save_variables` file into a flat dict; a damaged file → one-line ValueError."""
    try:
        with np.load(path, allow_pickle=False) as data:
            flat = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise ValueError(f"cannot read pretrained file {path}: {type(e).__name__}: {e}") from None
    if str(flat.pop("__format__", "")) != FORMAT:
        raise ValueError(f"{path} is not an lfe variables file (no __format__={FORMAT!r})")
    return flat


def _summary(label: str, items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit]) + (
        f", ... ({len(items)} in all)" if len(items) > limit else ""
    )
    return f"{label} [{shown}]"


def load_variables(
    path: str | os.PathLike,
    model: nn.Module,
    image_size: int,
    num_classes: int,
    *,
    head: str = HEAD,
    rng: jax.Array | None = None,
) -> dict[str, Any]:
    """Variables for `model` with `num_classes` outputs, loaded from the `.npz` at `path`.

    Every key and shape must match the model's (computed with `jax.eval_shape`, no real
    initialisation), except the classifier `head` when only its class count differs: that head
    gets a fresh initialisation from `rng` (its kernel initialiser is the model's). Returns
    {"params": ..., "batch_stats": ...} of float32 `jax.Array`s.
    """
    model = model.clone(num_classes=num_classes)
    expected = flatten(
        jax.eval_shape(
            lambda: model.init(
                jax.random.PRNGKey(0), jnp.zeros((1, image_size, image_size, 3)), train=False
            )
        )
    )
    found = read_variables(path)
    head_prefix = f"params/{head}/"
    refit = [
        k for k in expected if k.startswith(head_prefix) and k in found
        and found[k].shape != expected[k].shape and found[k].shape[:-1] == expected[k].shape[:-1]
    ]  # fmt: skip
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = [
        f"{k}: file {tuple(found[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(found) & set(expected))
        if found[k].shape != expected[k].shape and k not in refit
    ]
    if missing or unexpected or mismatched:
        problems = [
            _summary(label, items)
            for label, items in (
                ("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)
            )
            if items
        ]  # fmt: skip
        raise ValueError(
            f"pretrained file {path} does not fit {type(model).__name__} "
            f"({num_classes} classes): " + "; ".join(problems)
        )
    variables = unflatten({k: jnp.asarray(v, jnp.float32) for k, v in found.items()})
    if refit:  # a new dataset: fresh classifier, as fine-tuning does
        kernel = expected[f"{head_prefix}kernel"]
        dense = nn.Dense(num_classes, kernel_init=_head_kernel_init(model, head))
        fresh = dense.init(
            jax.random.PRNGKey(0) if rng is None else rng, jnp.zeros((1, kernel.shape[0]))
        )["params"]
        variables["params"][head] = fresh
    return variables


def _head_kernel_init(model: nn.Module, head: str) -> Any:
    """The kernel initialiser the model gives its head (EfficientNetV2's; else lecun normal)."""
    from lfe.training.models import efficientnetv2

    if isinstance(model, efficientnetv2.EfficientNetV2) and head == HEAD:
        return efficientnetv2.HEAD_KERNEL_INIT
    return nn.initializers.lecun_normal()


# --- Keras ↔ flax names ---------------------------------------------------------------------

_BN = {"gamma": "params/{}/scale", "beta": "params/{}/bias",
       "moving_mean": "batch_stats/{}/mean", "moving_variance": "batch_stats/{}/var"}  # fmt: skip
_BN_BACK = {tuple(v.split("/")[::2]): k for k, v in _BN.items()}  # ("params", "scale"): "gamma"
_BLOCK = re.compile(r"^(block\d+[a-z])_(\w+)$")


def _module_path(layer: str) -> str:
    """Keras layer name → flax module path: "block4a_se_reduce" → "block4a/se_reduce"."""
    match = _BLOCK.match(layer)
    return f"{match.group(1)}/{match.group(2)}" if match else layer


def keras_to_flax(layer: str, weight: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    """One Keras weight (layer name, weight name like "kernel:0") → (flax path, array)."""
    module, name = _module_path(layer), weight.split("/")[-1].split(":")[0]
    if name in _BN:
        return _BN[name].format(module), value
    if name == "depthwise_kernel" or (name == "kernel" and module.endswith("dwconv2")):
        # [k, k, C, 1] → [k, k, 1, C]; Keras 3 names the depthwise weight "kernel"
        return f"params/{module}/kernel", np.swapaxes(value, 2, 3)
    if name == "kernel" and module.endswith(("se_reduce", "se_expand")):  # 1×1 conv → dense
        return f"params/{module}/kernel", value.reshape(value.shape[-2:])
    if name in ("kernel", "bias"):
        return f"params/{module}/{name}", value
    raise ValueError(f"unknown Keras weight {layer}/{weight}")


def flax_to_keras(path: str, value: np.ndarray) -> tuple[str, str, np.ndarray]:
    """Inverse of `keras_to_flax`: flax path → (Keras layer, weight name, array)."""
    collection, *modules, name = path.split("/")
    layer = "_".join(modules)
    if collection == "batch_stats" or modules[-1].endswith("bn"):  # Keras names BNs *bn
        return layer, f"{layer}/{_BN_BACK[collection, name]}:0", value
    if modules[-1] == "dwconv2":
        return layer, f"{layer}/depthwise_kernel:0", np.swapaxes(value, 2, 3)
    if name == "kernel" and modules[-1] in ("se_reduce", "se_expand"):
        return layer, f"{layer}/kernel:0", value.reshape((1, 1, *value.shape))
    return layer, f"{layer}/{name}:0", value


def _h5_names(node: Any, attr: str) -> list[str]:
    """A Keras name-list attribute, possibly chunked as attr0, attr1, ... (large models)."""
    if attr in node.attrs:
        values = list(node.attrs[attr])
    else:
        values, chunk = [], 0
        while f"{attr}{chunk}" in node.attrs:
            values += list(node.attrs[f"{attr}{chunk}"])
            chunk += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def read_keras_h5(path: str | os.PathLike, order: list[str] | None = None) -> Flat:
    """Reads Keras weights (any layout of the module docstring) into flax-keyed arrays.

    ``order``: the Keras layer names in the model's layer order, for a Keras 3 `.weights.h5`
    without layer names (default: EfficientNetV2-S's, ``keras_layer_order()``).
    """
    import h5py

    try:
        source = path
        if zipfile.is_zipfile(path):  # a .keras archive
            with zipfile.ZipFile(path) as archive:
                source = io.BytesIO(archive.read("model.weights.h5"))
        with h5py.File(source, "r") as f:
            root = (
                f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
            )
            if _h5_names(root, "layer_names"):
                return _read_layer_groups(root)
            if isinstance(f.get("layers"), h5py.Group):
                return _read_keras3_weights(f["layers"], order)
            raise ValueError("no 'layer_names' attribute and no Keras 3 'layers' group "
                             "(not a Keras HDF5 weights file)")
    except (OSError, KeyError) as e:
        raise ValueError(f"cannot read Keras weights {path}: {type(e).__name__}: {e}") from None


def _read_layer_groups(root: Any) -> Flat:
    """The HDF5 layout (tf_keras or Keras 3): groups named by ``layer_names``."""
    flat: Flat = {}
    for layer in _h5_names(root, "layer_names"):
        group = root[layer]
        for weight in _h5_names(group, "weight_names"):
            key, value = keras_to_flax(layer, weight, np.asarray(group[weight]))
            flat[key] = value.astype(np.float32)
    return flat


# Keras 3 `.weights.h5`: a layer's variables in `save_own_variables` order, by class.
KERAS3_VARIABLES = {
    "conv2d": ("kernel", "bias"),
    "depthwise_conv2d": ("kernel", "bias"),
    "dense": ("kernel", "bias"),
    "batch_normalization": ("gamma", "beta", "moving_mean", "moving_variance"),
}
_KERAS3_GROUP = re.compile(r"^(.*?)(?:_(\d+))?$")  # "conv2d_7" → ("conv2d", "7")
_ROLES = ("expand_conv", "expand_bn", "dwconv2", "bn", "se_reduce", "se_expand",
          "project_conv", "project_bn")  # within a block, in Keras' layer order
_ENDS = {"stem_conv": (0, 0), "stem_bn": (0, 1), "top_conv": (2, 0), "top_bn": (2, 1),
         HEAD: (3, 0)}


def keras_class(layer: str) -> str:
    """The Keras 3 class (snake case) of an EfficientNetV2 layer, from its name."""
    if layer.endswith("dwconv2"):
        return "depthwise_conv2d"
    if layer == HEAD:
        return "dense"
    return "batch_normalization" if layer.endswith("bn") else "conv2d"


def _layer_position(layer: str) -> tuple:
    match = _BLOCK.match(layer)
    if match is None:
        return _ENDS[layer]
    block = match.group(1)  # "block4a": stage 4, block "a"
    return (1, int(block[5:-1]), block[-1], _ROLES.index(match.group(2)))


def keras_layer_order(variables: Mapping[str, Any] | None = None) -> list[str]:
    """The Keras layer names of ``variables`` (a flax tree, or its ``jax.eval_shape``) in the
    Keras model's layer order: stem, blocks by stage and letter (expand, depthwise, SE,
    project), top, head. Without ``variables``: EfficientNetV2-S's."""
    if variables is None:
        return list(_effnetv2_s_order())
    layers = {"_".join(path.split("/")[1:-1]) for path in flatten(variables)}
    return sorted(layers, key=_layer_position)


@functools.cache
def _effnetv2_s_order() -> tuple[str, ...]:
    from lfe.training.models import efficientnetv2

    model = efficientnetv2.EfficientNetV2(num_classes=1000)
    shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.PRNGKey(0),
                            jnp.zeros((1, 32, 32, 3)))
    return tuple(keras_layer_order(shapes))


def _read_keras3_weights(layers: Any, order: list[str] | None) -> Flat:
    """Keras 3's `.weights.h5` layout: ``layers/<class>[_<k>]/vars/<i>``."""
    flat: Flat = {}
    by_class: dict[str, list[str]] | None = None
    for key in layers:
        variables = layers[key].get("vars")
        if variables is None or len(variables) == 0:
            continue  # a layer without weights (input, rescaling, dropout, activation)
        cls, k = _KERAS3_GROUP.match(key).groups()
        names = KERAS3_VARIABLES.get(cls)
        if names is None or len(variables) > len(names):
            raise ValueError(f"Keras 3 layer group {key!r} ({len(variables)} variables) is not "
                             f"one of an EfficientNetV2: {', '.join(KERAS3_VARIABLES)}")
        layer = variables.attrs.get("name")
        if layer is None:  # Keras < 3.6: the k-th layer of its class in the model's order
            if by_class is None:
                by_class = {}
                for name in order or keras_layer_order():
                    by_class.setdefault(keras_class(name), []).append(name)
            ranked = by_class.get(cls, [])
            if int(k or 0) >= len(ranked):
                raise ValueError(f"Keras 3 layer group {key!r} has no name and the layer order "
                                 f"has {len(ranked)} {cls} layers")
            layer = ranked[int(k or 0)]
        layer = layer.decode("utf8") if isinstance(layer, bytes) else str(layer)
        for i in range(len(variables)):
            value = np.asarray(variables[str(i)])
            path, value = keras_to_flax(layer, f"{layer}/{names[i]}", value)
            flat[path] = value.astype(np.float32)
    return flat


def write_keras_h5(path: str | os.PathLike, variables: Mapping[str, Any]) -> None:
    """Writes `variables` as a Keras legacy HDF5 weights file (Keras names and layouts)."""
    import h5py

    layers: dict[str, list[tuple[str, np.ndarray]]] = {}
    for key, value in flatten(variables).items():
        layer, weight, array = flax_to_keras(key, np.asarray(value, np.float32))
        layers.setdefault(layer, []).append((weight, array))
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([name.encode() for name in layers])
        f.attrs["backend"] = b"tensorflow"
        for layer, weights in layers.items():
            group = f.create_group(layer)
            group.attrs["weight_names"] = np.array([w.encode() for w, _ in weights])
            for weight, array in weights:
                group.create_dataset(weight, data=array)


def convert(source: str, src: str | os.PathLike, dst: str | os.PathLike) -> int:
    """Converts a published checkpoint to the `.npz` format; returns the number of arrays."""
    readers = {"keras_h5": read_keras_h5}
    if source not in readers:
        raise ValueError(f"unknown source format {source!r}; available: {', '.join(readers)}")
    flat = readers[source](src)
    save_variables(dst, unflatten(flat))
    return len(flat)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lfe.training.models.pretrained")
    commands = parser.add_subparsers(dest="command", required=True)
    conv = commands.add_parser("convert", help="published checkpoint → lfe .npz variables")
    conv.add_argument("--from", dest="source", default="keras_h5", help="source format")
    conv.add_argument("src")
    conv.add_argument("dst")
    args = parser.parse_args(argv)
    try:
        count = convert(args.source, args.src, args.dst)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {count} arrays to {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
