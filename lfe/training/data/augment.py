"""Device-side, jittable preprocessing assembled from registered ops described by config data.

Contract. A pipeline is a list of steps; a step is `"name"`, `("name", {kwargs})` or
`{"op": "name", **kwargs}` (plain primitives, so it lives in an `ml_collections.ConfigDict`).
Every registered op is a *batch op* `op(rng, batch, **kwargs) -> batch` on a dict batch
`{"image": float32 [B, H, W, C], "target": float32 [B, K] (optional), ...}`; other keys pass
through. Most ops only touch the image: they are written as `fn(rng, images, **kwargs)` (also
exported, to call directly) and registered with `register_op(name)`, which lifts them to batch
ops. Ops that mix labels (CutMix, label smoothing, later MixUp) are registered with
`register_op(name, batch_op=True)` and read/write `"target"`, the target distribution `y` that the
evolved losses consume (one-hot, smoothed or CutMix-mixed). Randomness is per example:
each step gets `fold_in(rng, step_index)` and draws a [B]-shaped sample from it.

Images enter as uint8 and are cast to float32 in 0..255; geometric ops keep that range, and a
`normalize` step (usually last) maps to the model's input scale: "unit" x/255 (ConvNet,
ResNet9V2), "effnet" (x-127.5)/128, "mean_std" CIFAR per-channel mean/std.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

Batch = dict[str, jax.Array]
CIFAR_MEAN = (125.307, 122.950, 113.865)  # measured on the 50,000 training images, 0..255
CIFAR_STD = (62.993, 62.089, 66.705)


@dataclasses.dataclass(frozen=True)
class Op:
    """A registered op: `fn` is an image fn, or a batch fn when `batch_op`."""

    name: str
    fn: Callable[..., Any]
    batch_op: bool

    def __call__(self, rng: jax.Array, batch: Batch, **kwargs: Any) -> Batch:
        if self.batch_op:
            return self.fn(rng, batch, **kwargs)
        return {**batch, "image": self.fn(rng, batch["image"], **kwargs)}


OPS: dict[str, Op] = {}


def register_op(name: str, *, batch_op: bool = False) -> Callable[[Callable], Callable]:
    """Registers `fn(rng, images, **kw) -> images` (or `fn(rng, batch, **kw) -> batch`)."""
    def register(fn: Callable) -> Callable:
        OPS[name] = Op(name, fn, batch_op)
        return fn
    return register


def get_op(name: str) -> Op:
    if name not in OPS:
        raise ValueError(f"unknown augmentation op {name!r}; available: {', '.join(sorted(OPS))}")
    return OPS[name]


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


# -- geometric ops -------------------------------------------------------------------------------

def crop_at(images: jax.Array, offsets: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Crops image b at `offsets[b] = (top, left)` to `size`; vmapped `lax.dynamic_slice`."""
    height, width = size
    channels = images.shape[-1]

    def crop_one(image: jax.Array, offset: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, channels))

    return jax.vmap(crop_one)(images, offsets)


@register_op("random_crop")
def random_crop(
    rng: jax.Array, images: jax.Array, *, pad: int = 4, size: int | Sequence[int] | None = None,
    mode: str = "constant",
) -> jax.Array:
    """Pads by `pad` (zeros, or mode="reflect" as DavidNet) and crops `size` at a random offset."""
    batch, height, width, _ = images.shape
    out_h, out_w = (height, width) if size is None else _pair(size)
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode=mode)
    max_offset = (height + 2 * pad - out_h, width + 2 * pad - out_w)
    if min(max_offset) < 0:
        raise ValueError(f"random_crop: crop {out_h}x{out_w} exceeds padded image "
                         f"{height + 2 * pad}x{width + 2 * pad}")
    offsets = jax.random.randint(rng, (batch, 2), 0, jnp.array(max_offset) + 1)
    return crop_at(padded, offsets, (out_h, out_w))


@register_op("resize")
def resize(
    rng: jax.Array, images: jax.Array, *, size: int | Sequence[int], method: str = "bilinear",
) -> jax.Array:
    """Resizes the batch to `size` (jax.image.resize; antialiased when shrinking)."""
    del rng  # deterministic
    height, width = _pair(size)
    if images.shape[1:3] == (height, width):
        return images
    shape = (images.shape[0], height, width, images.shape[3])
    return jax.image.resize(images, shape, method=method).astype(images.dtype)


@register_op("resize_then_crop")
def resize_then_crop(
    rng: jax.Array, images: jax.Array, *, resize_to: int | Sequence[int] = 40,
    size: int | Sequence[int] = 32,
) -> jax.Array:
    """Upscales to `resize_to` and random-crops `size` (App. D WideResNet: 40x40 -> 32x32)."""
    return random_crop(rng, resize(rng, images, size=resize_to), pad=0, size=size)


def _crop_and_resize(image: jax.Array, box: jax.Array, size: int, method: str) -> jax.Array:
    """Resizes the window box = (top, left, side) of one [H, W, C] image to size x size."""
    scale = size / box[2]
    return jax.image.scale_and_translate(
        image, (size, size, image.shape[-1]), (0, 1), jnp.stack([scale, scale]),
        -box[:2] * scale, method=method, antialias=True)


CROPS = ("shorter_side", "area")


@register_op("random_square_crop")
def random_square_crop(
    rng: jax.Array, images: jax.Array, *, size: int, crop: str = "shorter_side",
    area_min: float = 0.05, method: str = "bilinear",
) -> jax.Array:
    """Random square crop of each image, resized to size x size (the EffNetV2 training crop).

    crop="shorter_side" (default, the paper's authors: ``RandomProcessImage(keep_shape=True)``
    takes ``tf.image.random_crop`` of a square whose side is the shorter image side, then
    resizes): the side is min(H, W) and the offset along the longer side is uniform; on a square
    image (CIFAR) that is the whole image, i.e. no crop, only the resize.
    crop="area" (google/automl EfficientNetV2's ``preprocess_for_train``, lfe's before): a
    square of area fraction uniform in [area_min, 1] (``tf.image.sample_distorted_bounding_box``
    with the aspect ratio fixed to 1, so no attempt is rejected): side sqrt(area * H * W), at
    most min(H, W), rounded to whole pixels, offset uniform. On 32-px CIFAR its median side is 23
    px.
    """
    if crop not in CROPS:
        raise ValueError(f"unknown random_square_crop crop {crop!r}; available: "
                         + ", ".join(CROPS))
    batch, height, width, _ = images.shape
    k_area, k_y, k_x = jax.random.split(rng, 3)
    if crop == "area":
        area = jax.random.uniform(k_area, (batch,), minval=area_min, maxval=1.0)
        side = jnp.clip(jnp.round(jnp.sqrt(area * height * width)), 1, min(height, width))
    else:
        side = jnp.full((batch,), float(min(height, width)))
    top = jnp.floor(jax.random.uniform(k_y, (batch,)) * (height - side + 1))
    left = jnp.floor(jax.random.uniform(k_x, (batch,)) * (width - side + 1))
    boxes = jnp.stack([top, left, side], axis=1)
    resize_one = functools.partial(_crop_and_resize, size=int(size), method=method)
    return jax.vmap(resize_one)(images, boxes).astype(images.dtype)


@register_op("flip_left_right")
def flip_left_right(rng: jax.Array, images: jax.Array, *, prob: float = 0.5) -> jax.Array:
    """Mirrors each image horizontally with probability `prob` (independently per example)."""
    flip = jax.random.bernoulli(rng, prob, (images.shape[0],))
    return jnp.where(flip[:, None, None, None], images[:, :, ::-1, :], images)


def box_mask(centres: jax.Array, sizes: jax.Array, height: int, width: int) -> jax.Array:
    """bool [B, H, W, 1]: True inside box b of `sizes[b]` (h, w) centred at `centres[b]` (y, x).

    The box spans rows [cy - h//2, cy - h//2 + h), clipped at the borders.
    """
    start = centres - sizes // 2
    end = start + sizes
    rows = jnp.arange(height)[None, :]
    cols = jnp.arange(width)[None, :]
    in_rows = (rows >= start[:, :1]) & (rows < end[:, :1])
    in_cols = (cols >= start[:, 1:]) & (cols < end[:, 1:])
    return (in_rows[:, :, None] & in_cols[:, None, :])[..., None]


def _random_centres(rng: jax.Array, batch: int, height: int, width: int) -> jax.Array:
    return jax.random.randint(rng, (batch, 2), 0, jnp.array([height, width]))


@register_op("cutout")
def cutout(
    rng: jax.Array, images: jax.Array, *, size: int = 8, value: float = 0.0
) -> jax.Array:
    """Sets a size x size square at a uniformly random centre to `value` (clipped at borders).

    Centres range over the whole image as in DeVries & Taylor (2017), so boxes near a border
    cover fewer than size**2 pixels.
    """
    batch, height, width, _ = images.shape
    centres = _random_centres(rng, batch, height, width)
    mask = box_mask(centres, jnp.full((batch, 2), size), height, width)
    return jnp.where(mask, jnp.asarray(value, images.dtype), images)


# -- value ops ----------------------------------------------------------------------------------

NORMALIZE_MODES = ("unit", "effnet", "mean_std")


@register_op("normalize")
def normalize(
    rng: jax.Array, images: jax.Array, *, mode: str = "unit",
    mean: Sequence[float] = CIFAR_MEAN, std: Sequence[float] = CIFAR_STD,
) -> jax.Array:
    """Maps 0..255 pixels to the model's input scale (see the module docstring)."""
    del rng  # deterministic
    if mode == "unit":
        return images / 255.0
    if mode == "effnet":
        return (images - 127.5) / 128.0
    if mode == "mean_std":
        return (images - jnp.asarray(mean, images.dtype)) / jnp.asarray(std, images.dtype)
    raise ValueError(f"unknown normalize mode {mode!r}; available: {', '.join(NORMALIZE_MODES)}")


# -- label-mixing (batch) ops -------------------------------------------------------------------

def _target(batch: Batch, op: str) -> jax.Array:
    if "target" not in batch:
        raise ValueError(f"op {op} needs batch['target']; use preprocess_batch with num_classes")
    return batch["target"]


@register_op("cutmix", batch_op=True)
def cutmix(rng: jax.Array, batch: Batch, *, alpha: float = 1.0, prob: float = 1.0) -> Batch:
    """CutMix (Yun et al., 2019): paste a box from a partner example and mix targets by area.

    Per example: partner from one random permutation of the batch, lam ~ Beta(alpha, alpha),
    box of side sqrt(1 - lam) * (H, W) at a uniform centre (clipped), applied with `prob`.
    The target weight is the pasted area actually kept after clipping.
    """
    images, target = batch["image"], _target(batch, "cutmix")
    size, height, width, _ = images.shape
    k_perm, k_lam, k_centre, k_apply = jax.random.split(rng, 4)
    partner = jax.random.permutation(k_perm, size)
    if isinstance(alpha, int | float) and alpha == 1.0:  # Beta(1, 1): cheaper to compile
        lam = jax.random.uniform(k_lam, (size,))
    else:
        lam = jax.random.beta(k_lam, alpha, alpha, (size,))
    cut = jnp.sqrt(1.0 - lam)[:, None] * jnp.array([height, width])
    mask = box_mask(_random_centres(k_centre, size, height, width), cut.astype(jnp.int32),
                    height, width)
    mask &= jax.random.bernoulli(k_apply, prob, (size,))[:, None, None, None]
    area = mask.mean(axis=(1, 2, 3))[:, None].astype(target.dtype)
    return {**batch, "image": jnp.where(mask, images[partner], images),
            "target": (1.0 - area) * target + area * target[partner]}


@register_op("smooth_labels", batch_op=True)
def smooth_labels(rng: jax.Array, batch: Batch, *, smoothing: float = 0.1) -> Batch:
    """Label smoothing of the target: (1 - s) * y + s / K (``optax.smooth_labels``)."""
    del rng
    return {**batch, "target": optax.smooth_labels(_target(batch, "smooth_labels"), smoothing)}


# -- pipelines from config ----------------------------------------------------------------------

Step = tuple[str, dict[str, Any]]


def parse_steps(steps: Sequence[Any]) -> list[Step]:
    """Normalises config steps to (name, kwargs), checking names and kwargs up front."""
    parsed = []
    for step in steps:
        if isinstance(step, str):
            name, kwargs = step, {}
        elif isinstance(step, Mapping):
            kwargs = dict(step)
            name = kwargs.pop("op", None)
        elif isinstance(step, Sequence) and len(step) == 2:
            name, kwargs = step[0], dict(step[1])
        else:
            raise ValueError(f"bad augmentation step {step!r}: use 'name', (name, kwargs) or "
                             "{'op': name, ...}")
        op = get_op(name)
        try:
            inspect.signature(op.fn).bind(None, None, **kwargs)
        except TypeError as error:
            raise ValueError(f"augmentation op {name}: {error}") from None
        parsed.append((name, kwargs))
    return parsed


def make_preprocess_fn(cfg: Any, *, train: bool) -> Callable[[jax.Array, Batch], Batch]:
    """Builds `fn(rng, batch) -> batch` from `cfg["train"]` or `cfg["eval"]` (jit it yourself)."""
    steps = parse_steps(cfg["train" if train else "eval"])

    def apply(rng: jax.Array, batch: Batch) -> Batch:
        batch = {**batch, "image": jnp.asarray(batch["image"]).astype(jnp.float32)}
        for index, (name, kwargs) in enumerate(steps):
            batch = OPS[name](jax.random.fold_in(rng, index), batch, **kwargs)
        return batch

    return apply


def preprocess_batch(
    rng: jax.Array | None, batch: Mapping[str, Any], *, train: bool, cfg: Any,
    num_classes: int | None = None,
) -> Batch:
    """Runs the pipeline on a dict batch; adds `target` = one_hot(label) given `num_classes`.

    Returns the batch with `"image"` float32 [B, H', W', C] and `"target"` float32 [B, K] (when a
    target or `num_classes` was given); other keys such as `"label"` and `"mask"` pass through.
    `rng=None` means key 0 (for eval pipelines that draw nothing).
    """
    batch = dict(batch)
    if "target" not in batch and num_classes is not None:
        batch["target"] = jax.nn.one_hot(batch["label"], num_classes, dtype=jnp.float32)
    rng = jax.random.key(0) if rng is None else rng
    return make_preprocess_fn(cfg, train=train)(rng, batch)


def preprocess(rng: jax.Array | None, images: jax.Array, *, train: bool, cfg: Any) -> jax.Array:
    """uint8 [B, H, W, C] -> float32 [B, H', W', C] through the image-only pipeline of `cfg`."""
    return preprocess_batch(rng, {"image": images}, train=train, cfg=cfg)["image"]


# Named pipelines as plain data (copy into a config and edit). Orders follow App. D; the
# normalisation of WRN/DavidNet is not stated in the paper (per-channel mean/std assumed).
PRESETS: dict[str, dict[str, list[Any]]] = {
    "unit": {"train": [("normalize", {"mode": "unit"})],
             "eval": [("normalize", {"mode": "unit"})]},
    "wideresnet": {
        "train": [("resize_then_crop", {"resize_to": 40, "size": 32}), ("cutout", {"size": 8}),
                  "flip_left_right", ("normalize", {"mode": "mean_std"})],
        "eval": [("normalize", {"mode": "mean_std"})]},
    "davidnet_cutout": {
        "train": [("normalize", {"mode": "mean_std"}), ("random_crop", {"pad": 4,
                  "mode": "reflect"}), "flip_left_right", ("cutout", {"size": 8})],
        "eval": [("normalize", {"mode": "mean_std"})]},
    "davidnet_cutmix": {
        "train": [("normalize", {"mode": "mean_std"}), ("random_crop", {"pad": 4,
                  "mode": "reflect"}), "flip_left_right", ("cutmix", {"alpha": 1.0})],
        "eval": [("normalize", {"mode": "mean_std"})]},
    # EffNetV2-S as the paper's authors train it (phase 1 of Table 12: 128 px, magnitude 5):
    # a random square of the shorter side (on CIFAR the whole image), resize, RandAugment with
    # reflected borders and the 17th do-nothing branch, (x - 127.5)/128. Progressive phases
    # rewrite the size of random_square_crop / resize and the magnitude of randaugment.
    "effnetv2": {
        "train": [("random_square_crop", {"size": 128, "crop": "shorter_side"}),
                  ("randaugment", {"num_layers": 2, "magnitude": 5.0, "fill": "reflect",
                                   "identity_branch": True}),
                  ("normalize", {"mode": "effnet"})],
        "eval": [("resize", {"size": 128}), ("normalize", {"mode": "effnet"})]},
    # The google/automl EfficientNetV2 recipe, lfe's "effnetv2" before issue #21: a square of
    # 5-100% of the area, RandAugment filling with grey 128 and always applying one of 16 ops.
    "effnetv2_automl": {
        "train": [("random_square_crop", {"size": 128, "crop": "area", "area_min": 0.05}),
                  ("randaugment", {"num_layers": 2, "magnitude": 5.0, "fill": "grey",
                                   "identity_branch": False}),
                  ("normalize", {"mode": "effnet"})],
        "eval": [("resize", {"size": 128}), ("normalize", {"mode": "effnet"})]},
}
