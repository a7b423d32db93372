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

Keras source (`--from=keras_h5`): the keras.applications `EfficientNetV2S` ImageNet weights
(`efficientnetv2-s.h5`, legacy HDF5 layout: root attribute `layer_names`, one group per layer
with attribute `weight_names` such as `block4a_dwconv2/depthwise_kernel:0`). Keras layer
`block4a_se_reduce` ↔ flax module `block4a/se_reduce`; BN gamma/beta/moving_mean/
moving_variance ↔ params scale/bias, batch_stats mean/var; depthwise kernels [k, k, C, 1] ↔
[k, k, 1, C]; the SE 1×1 convolutions [1, 1, in, out] ↔ dense kernels [in, out]. The Keras
model's own Rescaling layer (x/128 − 1) has no weights; this project normalises in the data
pipeline ("effnet": (x − 127.5)/128, half a grey level apart).
"""

from __future__ import annotations

import argparse
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
    if name == "depthwise_kernel":  # [k, k, C, 1] → [k, k, 1, C]
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


def read_keras_h5(path: str | os.PathLike) -> Flat:
    """Reads a Keras (legacy HDF5) weights file into flax-keyed arrays."""
    import h5py

    flat: Flat = {}
    try:
        with h5py.File(path, "r") as f:
            root = (
                f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
            )
            layers = _h5_names(root, "layer_names")
            if not layers:
                raise ValueError("no 'layer_names' attribute (not a Keras HDF5 weights file)")
            for layer in layers:
                group = root[layer]
                for weight in _h5_names(group, "weight_names"):
                    key, value = keras_to_flax(layer, weight, np.asarray(group[weight]))
                    flat[key] = value.astype(np.float32)
    except (OSError, KeyError) as e:
        raise ValueError(f"cannot read Keras weights {path}: {type(e).__name__}: {e}") from None
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
