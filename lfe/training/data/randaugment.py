"""RandAugment (Cubuk et al., 2020) as the paper's authors apply it, from the TF EfficientNet
code base.

Policy (`RandAugment.distort` in the authors' `effnet_rand_aug.py`, derived from the TF
EfficientNet / EfficientNetV2 `autoaugment.py`): for each of `num_layers` layers one of 17
branches is drawn uniformly: the 16 ops below, applied *always* (the code draws a probability in
[0.2, 0.8] per op but never uses it, because none of the RandAugment ops takes a `prob`
argument), or a 17th that leaves the image as it is (their `tf.switch_case` draws an index in
0..16 and its `default` branch is the identity), so each op has probability 1/17 per layer and a
layer does nothing with 1/17. `identity_branch=False` draws from the 16 ops only, as the
google/automl EfficientNetV2 code does (and lfe did before). Every op gets the same magnitude `m`
(0..10 scale, `MAX_LEVEL`; larger values extrapolate, e.g. Table 12's 15), mapped to arguments as
in `level_to_arg` there, with the TF quirks kept on purpose:

    Rotate       +-30 m/10 degrees           ShearX/Y     +-0.3 m/10 (sign 50/50)
    TranslateX/Y +-100 m/10 pixels           Cutout       square of side 2 floor(40 m/10)
    Posterize    bits = floor(4 m/10)        Solarize     threshold = floor(256 m/10)
    SolarizeAdd  +floor(110 m/10) below 128  Color, Contrast, Brightness, Sharpness:
    AutoContrast, Equalize, Invert: no arg                factor = 1.8 m/10 + 0.1

so magnitude 0 posterizes to black and solarizes everything, and magnitude 5 leaves the four
enhance ops unchanged. Geometric ops (Rotate, ShearX/Y, TranslateX/Y) sample with nearest
neighbour, rotation about the image centre. Where they sample outside the image, `fill`
decides: "reflect" (the default) mirrors the image about its edges, as the authors' projective
transform does (its `fill_mode` defaults to 'reflect', so the wrap/unwrap grey fill never sees an
empty pixel: no grey appears); "grey" fills with 128, as the google/automl code does (and lfe did
before). Cutout always fills with 128.

Op semantics follow PIL's ImageOps / ImageEnhance, which the TF ops imitate (tested against PIL).
One deliberate difference from TF: TF's Contrast blends towards (number of pixels / 256), a known
bug (it sums the histogram instead of averaging it); here Contrast blends towards the mean grey
level, as PIL does.

Images are float32 [B, H, W, C] in 0..255 as the pipeline carries them (C = 3). Like TF, which
casts to uint8 before RandAugment, the input is clipped and floored to integer levels and every op
returns integer levels. Jittable; randomness is per example (one key per image, `vmap` over the
batch, `lax.switch` over the ops). dm-pix provides the geometric resampling
(`affine_transform`/`rotate` with order 0, reflect or constant fill) and the grey conversion;
the remaining ops are written here because dm-pix either lacks them (AutoContrast, Equalize,
Posterize, Sharpness, Cutout, SolarizeAdd) or defines them on another scale or formula (its
`solarize` assumes [0, 1], its `adjust_brightness`/`adjust_contrast` are additive /
per-channel-mean, not PIL's blends).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import dm_pix as pix
import jax
import jax.numpy as jnp

from lfe.training.data.augment import box_mask, register_op

MAX_LEVEL = 10.0
TRANSLATE_CONST = 100.0
CUTOUT_CONST = 40.0
REPLACE = 128.0  # fill value of Cutout, and of the geometric ops with fill="grey"
FILLS = {"reflect": "reflect", "grey": "constant"}  # `fill` -> the resampling's mode

OP_NAMES = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "Color", "Contrast",
    "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY", "Cutout",
    "SolarizeAdd",
)


class Draw(NamedTuple):
    """The random part of one layer for one image: sign of signed args, Cutout centre (y, x)."""

    sign: jax.Array  # float32 scalar, +1 or -1
    centre: jax.Array  # int32 [2]


# -- single-image ops on integer levels, [H, W, C] float32 -------------------------------------

def blend(degenerate: jax.Array, image: jax.Array, factor: jax.Array | float) -> jax.Array:
    """PIL Image.blend(degenerate, image, factor) on 0..255 levels (truncated, clipped)."""
    return jnp.floor(jnp.clip(degenerate + factor * (image - degenerate), 0.0, 255.0))


def grayscale(image: jax.Array) -> jax.Array:
    """[H, W, 1] rounded luma (ITU-R 601-2, PIL's "L" conversion up to rounding ties)."""
    return jnp.floor(pix.rgb_to_grayscale(image) + 0.5)


def autocontrast(image: jax.Array) -> jax.Array:
    """Per channel, stretches [min, max] to [0, 255] (PIL ImageOps.autocontrast, cutoff 0)."""
    levels = image.astype(jnp.int32)
    lo = levels.min(axis=(0, 1), keepdims=True)
    hi = levels.max(axis=(0, 1), keepdims=True)
    # Integer floor of the exact ratio (jit may turn a float division into a multiplication by
    # the reciprocal); PIL's x * scale + offset in float64 is one level lower at a few levels.
    stretched = (levels - lo) * 255 // jnp.maximum(hi - lo, 1)
    return jnp.where(hi > lo, stretched.astype(image.dtype), image)


def _equalize_channel(channel: jax.Array) -> jax.Array:
    levels = channel.astype(jnp.int32)
    histogram = jnp.bincount(levels.ravel(), length=256)
    last = histogram[levels.max()]  # count of the highest level present (PIL's histo[-1])
    step = (histogram.sum() - last) // 255
    safe = jnp.maximum(step, 1)
    lut = (jnp.cumsum(histogram) + safe // 2) // safe
    lut = jnp.clip(jnp.concatenate([jnp.zeros(1, lut.dtype), lut[:-1]]), 0, 255)
    return jnp.where(step == 0, channel, lut[levels].astype(channel.dtype))


def equalize(image: jax.Array) -> jax.Array:
    """Per-channel histogram equalisation (PIL ImageOps.equalize)."""
    return jax.vmap(_equalize_channel, in_axes=-1, out_axes=-1)(image)


def invert(image: jax.Array) -> jax.Array:
    return 255.0 - image


def posterize(image: jax.Array, bits: jax.Array | int) -> jax.Array:
    """Keeps the top `bits` bits of each level (PIL ImageOps.posterize; bits 0 -> black)."""
    unit = 2.0 ** jnp.clip(8 - bits, 0, 8)
    return jnp.floor(image / unit) * unit


def solarize(image: jax.Array, threshold: jax.Array | float) -> jax.Array:
    """Inverts levels >= threshold (PIL ImageOps.solarize)."""
    return jnp.where(image < threshold, image, 255.0 - image)


def solarize_add(image: jax.Array, addition: jax.Array | float,
                 threshold: float = 128.0) -> jax.Array:
    """Adds `addition` (clipped to 0..255) to levels below `threshold`."""
    return jnp.where(image < threshold, jnp.clip(image + addition, 0.0, 255.0), image)


def color(image: jax.Array, factor: jax.Array | float) -> jax.Array:
    """PIL ImageEnhance.Color: blend from the grey image."""
    return blend(jnp.broadcast_to(grayscale(image), image.shape), image, factor)


def contrast(image: jax.Array, factor: jax.Array | float) -> jax.Array:
    """PIL ImageEnhance.Contrast: blend from a flat image at the rounded mean grey level."""
    mean = jnp.floor(grayscale(image).mean() + 0.5)
    return blend(jnp.full_like(image, mean), image, factor)


def brightness(image: jax.Array, factor: jax.Array | float) -> jax.Array:
    """PIL ImageEnhance.Brightness: blend from black."""
    return blend(jnp.zeros_like(image), image, factor)


def sharpness(image: jax.Array, factor: jax.Array | float) -> jax.Array:
    """PIL ImageEnhance.Sharpness: blend from the SMOOTH-filtered image (3x3 [1 1 1; 1 5 1;
    1 1 1] / 13, rounded as PIL does; TF truncates), whose one-pixel border is the original."""
    height, width = image.shape[:2]
    total = 4.0 * image[1:-1, 1:-1]  # centre weight 5 = 4 here + 1 in the 3x3 sum below
    for dy in range(3):
        for dx in range(3):
            total = total + image[dy:dy + height - 2, dx:dx + width - 2]
    smooth = jnp.floor(total / 13.0 + 0.5)
    degenerate = image.at[1:-1, 1:-1].set(smooth)
    return blend(degenerate, image, factor)


def _mode(fill: str) -> str:
    if fill not in FILLS:
        raise ValueError(f"unknown RandAugment fill {fill!r}; available: {', '.join(FILLS)}")
    return FILLS[fill]


def _resample(image: jax.Array, matrix: jax.Array, offset: jax.Array,
              fill: str = "reflect") -> jax.Array:
    """Output pixel (row, col) = input at matrix @ (row, col) + offset, nearest; outside the
    image: mirrored about the edges ("reflect", d c b a | a b c d) or 128 ("grey")."""
    full = jnp.eye(3, dtype=image.dtype).at[:2, :2].set(matrix)
    offset3 = jnp.concatenate([offset, jnp.zeros(1)]).astype(image.dtype)
    return pix.affine_transform(image, full, offset=offset3, order=0, mode=_mode(fill),
                                cval=REPLACE)


def rotate(image: jax.Array, degrees: jax.Array | float, fill: str = "reflect") -> jax.Array:
    """Rotates about the centre (TF contrib_image.rotate: positive = counter-clockwise)."""
    return pix.rotate(image, jnp.deg2rad(degrees), order=0, mode=_mode(fill), cval=REPLACE)


def shear_x(image: jax.Array, level: jax.Array | float, fill: str = "reflect") -> jax.Array:
    """Output (y, x) samples input (y, x + level * y) (TF transform [1, level, 0, 0, 1, 0])."""
    matrix = jnp.array([[1.0, 0.0], [0.0, 1.0]]).at[1, 0].set(level)
    return _resample(image, matrix, jnp.zeros(2), fill)


def shear_y(image: jax.Array, level: jax.Array | float, fill: str = "reflect") -> jax.Array:
    """Output (y, x) samples input (y + level * x, x)."""
    matrix = jnp.array([[1.0, 0.0], [0.0, 1.0]]).at[0, 1].set(level)
    return _resample(image, matrix, jnp.zeros(2), fill)


def translate_x(image: jax.Array, pixels: jax.Array | float, fill: str = "reflect") -> jax.Array:
    """Output (y, x) samples input (y, x + pixels): content moves left by `pixels`."""
    return _resample(image, jnp.eye(2), jnp.array([0.0, 1.0]) * pixels, fill)


def translate_y(image: jax.Array, pixels: jax.Array | float, fill: str = "reflect") -> jax.Array:
    """Output (y, x) samples input (y + pixels, x): content moves up by `pixels`."""
    return _resample(image, jnp.eye(2), jnp.array([1.0, 0.0]) * pixels, fill)


def cutout(image: jax.Array, pad_size: jax.Array | int, centre: jax.Array) -> jax.Array:
    """Fills rows/cols [centre - pad_size, centre + pad_size) (clipped) with 128."""
    height, width = image.shape[:2]
    side = jnp.broadcast_to(2 * jnp.asarray(pad_size, jnp.int32), (1, 2))
    mask = box_mask(centre[None], side, height, width)[0]
    return jnp.where(mask, REPLACE, image)


# -- magnitude -> arguments, one branch per op ---------------------------------------------------

Branch = Callable[[jax.Array, Draw], jax.Array]


def branches(magnitude: jax.Array | float, fill: str = "reflect") -> tuple[Branch, ...]:
    """The 16 ops in `OP_NAMES` order as `fn(image, draw)`, arguments from `magnitude`;
    `fill`: what the geometric ops put where they sample outside the image."""
    _mode(fill)  # refuse an unknown fill before tracing
    # A Python magnitude gives Python (float64) arguments, as TF computes them, so that e.g.
    # 1.8 * 15 / 10 + 0.1 rounds to float32 2.8 exactly; a traced magnitude works too.
    concrete = isinstance(magnitude, int | float)
    floor = math.floor if concrete else jnp.floor
    level = (float(magnitude) if concrete else jnp.asarray(magnitude, jnp.float32)) / MAX_LEVEL
    enhance = level * 1.8 + 0.1
    table: dict[str, Branch] = {
        "AutoContrast": lambda x, d: autocontrast(x),
        "Equalize": lambda x, d: equalize(x),
        "Invert": lambda x, d: invert(x),
        "Rotate": lambda x, d: rotate(x, d.sign * level * 30.0, fill),
        "Posterize": lambda x, d: posterize(x, floor(level * 4.0)),
        "Solarize": lambda x, d: solarize(x, floor(level * 256.0)),
        "Color": lambda x, d: color(x, enhance),
        "Contrast": lambda x, d: contrast(x, enhance),
        "Brightness": lambda x, d: brightness(x, enhance),
        "Sharpness": lambda x, d: sharpness(x, enhance),
        "ShearX": lambda x, d: shear_x(x, d.sign * level * 0.3, fill),
        "ShearY": lambda x, d: shear_y(x, d.sign * level * 0.3, fill),
        "TranslateX": lambda x, d: translate_x(x, d.sign * level * TRANSLATE_CONST, fill),
        "TranslateY": lambda x, d: translate_y(x, d.sign * level * TRANSLATE_CONST, fill),
        "Cutout": lambda x, d: cutout(x, floor(level * CUTOUT_CONST), d.centre),
        "SolarizeAdd": lambda x, d: solarize_add(x, floor(level * 110.0)),
    }
    return tuple(table[name] for name in OP_NAMES)


def op_index(name: str) -> int:
    if name not in OP_NAMES:
        raise ValueError(f"unknown RandAugment op {name!r}; available: {', '.join(OP_NAMES)}")
    return OP_NAMES.index(name)


def _draw(rng: jax.Array, shape: tuple[int, ...]) -> Draw:
    k_sign, k_centre = jax.random.split(rng)
    sign = jnp.where(jax.random.bernoulli(k_sign), 1.0, -1.0)
    return Draw(sign, jax.random.randint(k_centre, (2,), 0, jnp.array(shape[:2])))


def to_levels(images: jax.Array) -> jax.Array:
    """float 0..255 -> integer levels as float32 (TF's clip and uint8 cast: truncation)."""
    return jnp.floor(jnp.clip(images.astype(jnp.float32), 0.0, 255.0))


def _identity(image: jax.Array, draw: Draw) -> jax.Array:
    del draw
    return image


def randaugment_image(
    rng: jax.Array, image: jax.Array, *, num_layers: int = 2, magnitude: float = 10.0,
    fill: str = "reflect", identity_branch: bool = True,
) -> jax.Array:
    """RandAugment of one float32 [H, W, 3] image; returns integer levels in 0..255.

    Each layer draws one of the 16 ops, or with `identity_branch` one of 17 branches whose last
    does nothing (the authors' policy; see the module docstring)."""
    ops = branches(magnitude, fill) + ((_identity,) if identity_branch else ())
    image = to_levels(image)
    for layer in range(num_layers):
        k_op, k_draw = jax.random.split(jax.random.fold_in(rng, layer))
        index = jax.random.randint(k_op, (), 0, len(ops))
        image = jax.lax.switch(index, ops, image, _draw(k_draw, image.shape))
    return image


@register_op("randaugment")
def randaugment(
    rng: jax.Array, images: jax.Array, *, num_layers: int = 2, magnitude: float = 10.0,
    fill: str = "reflect", identity_branch: bool = True,
) -> jax.Array:
    """RandAugment of float32 [B, H, W, 3] (0..255): image b uses `split(rng, B)[b]`.
    `fill="grey"` and `identity_branch=False` give the google/automl policy (lfe's before)."""
    keys = jax.random.split(rng, images.shape[0])
    return jax.vmap(lambda k, x: randaugment_image(
        k, x, num_layers=num_layers, magnitude=magnitude, fill=fill,
        identity_branch=identity_branch))(keys, images)


def apply_op_index(
    index: jax.Array | int, rng: jax.Array, images: jax.Array, *, magnitude: float,
    fill: str = "reflect",
) -> jax.Array:
    """Applies op `OP_NAMES[index]` (may be traced: one compilation serves all ops) to every
    image of [B, H, W, 3], with per-example signs and Cutout centres from `rng`."""
    ops = branches(magnitude, fill)
    keys = jax.random.split(rng, images.shape[0])
    return jax.vmap(lambda k, x: jax.lax.switch(index, ops, x, _draw(k, x.shape)))(
        keys, to_levels(images))


def apply_op(
    name: str, rng: jax.Array, images: jax.Array, *, magnitude: float, fill: str = "reflect",
) -> jax.Array:
    """Applies the single RandAugment op `name` (see `apply_op_index`); for visual checks and
    tests."""
    return apply_op_index(op_index(name), rng, images, magnitude=magnitude, fill=fill)
