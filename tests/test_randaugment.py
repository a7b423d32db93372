"""Tests for lfe.training.data.randaugment: ops against PIL / NumPy references, magnitudes, the
policy."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from lfe.training import data
from lfe.training.data import randaugment as ra

KEY = jax.random.key(0)


def _images(batch=3, height=20, width=24, seed=0):
    """Low-contrast textured uint8 images (gradient + noise in 30..200), so that every op acts."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0, 1, height)[:, None, None]
    cols = np.linspace(0, 1, width)[None, :, None]
    out = []
    for b in range(batch):
        base = 30 + 120 * (rows * (b + 1) % 1.0) + 40 * cols * np.array([1.0, 0.5, 0.2])
        out.append(np.clip(base + rng.normal(0, 12, (height, width, 3)), 30, 200))
    return np.round(np.stack(out)).astype(np.uint8)


IMAGES = _images()


def _pil_each(fn):
    return np.stack([np.asarray(fn(Image.fromarray(x))) for x in IMAGES]).astype(np.float32)


def _ours(fn, *args):
    """fn(image, *args) on each of IMAGES; jitted (eager dispatch of many small ops is slower)."""
    return np.asarray(jax.jit(jax.vmap(lambda x: fn(x, *args)))(jnp.asarray(IMAGES, jnp.float32)))


def _assert_close_levels(ours, ref, *, max_diff=0, min_equal=1.0):
    diff = np.abs(ours - ref)
    assert diff.max() <= max_diff, f"max level difference {diff.max()}"
    assert (diff == 0).mean() >= min_equal, f"only {(diff == 0).mean():.3f} of levels equal"


def test_autocontrast_matches_pil():
    # PIL evaluates x * scale + offset in float64, which truncates a few exact integers to the
    # level below; ours is the floor of the exact ratio (x - lo) * 255 / (hi - lo).
    ref = _pil_each(ImageOps.autocontrast)
    _assert_close_levels(_ours(ra.autocontrast), ref, max_diff=1, min_equal=0.99)
    assert ref.reshape(-1, 3).min(axis=0).tolist() == [0, 0, 0]


@pytest.mark.parametrize("name, ours, pil", [
    ("equalize", lambda: _ours(ra.equalize), ImageOps.equalize),
    ("invert", lambda: _ours(ra.invert), ImageOps.invert),
    ("posterize2", lambda: _ours(ra.posterize, 2), lambda x: ImageOps.posterize(x, 2)),
    ("solarize", lambda: _ours(ra.solarize, 100), lambda x: ImageOps.solarize(x, 100)),
])
def test_exact_pil_ops(name, ours, pil):
    _assert_close_levels(ours(), _pil_each(pil))


@pytest.mark.parametrize("enhancer, fn", [
    (ImageEnhance.Color, ra.color), (ImageEnhance.Contrast, ra.contrast),
    (ImageEnhance.Brightness, ra.brightness), (ImageEnhance.Sharpness, ra.sharpness),
])
@pytest.mark.parametrize("factor", [0.1, 0.64, 1.9])
def test_enhance_ops_match_pil(enhancer, fn, factor):
    # Differences of one level come from rounding: PIL rounds its grey conversion and smoothing
    # filter in fixed point, the blend truncates; they must stay rare.
    ref = _pil_each(lambda x: enhancer(x).enhance(factor))
    _assert_close_levels(_ours(fn, factor), ref, max_diff=1, min_equal=0.9)


def test_enhance_factor_one_is_identity():
    for fn in (ra.color, ra.contrast, ra.brightness, ra.sharpness):
        np.testing.assert_array_equal(_ours(fn, 1.0), IMAGES)


def test_solarize_add_and_cutout_numpy_reference():
    images = IMAGES.astype(np.float32)
    expected = np.where(images < 128, np.clip(images + 40, 0, 255), images)
    np.testing.assert_array_equal(_ours(ra.solarize_add, 40.0), expected)
    out = np.asarray(ra.cutout(jnp.asarray(images[0]), 3, jnp.array([1, 10])))
    expected = images[0].copy()
    expected[0:4, 7:13] = 128  # rows [1 - 3, 1 + 3) clipped at 0, cols [7, 13)
    np.testing.assert_array_equal(out, expected)


def _tf_reflect(coords, size):
    """TF's FILL_REFLECT coordinate map (d c b a | a b c d | d c b a), then clamped."""
    out = coords.copy()
    period = 2 * size
    low = out < 0
    out[low] = np.where(out[low] < period, period * np.trunc(-out[low] / period) + out[low],
                        out[low])
    out[low] = np.where(out[low] < -size, out[low] + period, -out[low] - 1)
    high = out > size - 1
    out[high] -= period * np.trunc(out[high] / period)
    out[high] = np.where(out[high] >= size, period - out[high] - 1, out[high])
    return np.clip(out, 0, size - 1)


def _tf_transform_reference(image, a, b, fill="grey"):
    """TF ImageProjectiveTransform, nearest: output (y, x) = input at (y', x') with
    x' = a0 x + a1 y + a2, y' = b0 x + b1 y + b2, rounded half away from zero; outside the
    image 128 (fill "grey") or TF's reflection of the coordinates (fill "reflect", the
    authors' default)."""
    height, width = image.shape[:2]
    y, x = np.mgrid[:height, :width].astype(np.float64)
    xs = a[0] * x + a[1] * y + a[2]
    ys = b[0] * x + b[1] * y + b[2]
    if fill == "reflect":
        xs, ys = _tf_reflect(xs, width), _tf_reflect(ys, height)
    xi = (np.sign(xs) * np.floor(np.abs(xs) + 0.5)).astype(int)
    yi = (np.sign(ys) * np.floor(np.abs(ys) + 0.5)).astype(int)
    valid = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
    out = np.full(image.shape, 128.0, np.float32)
    out[valid] = image[yi[valid], xi[valid]]
    return out


def _rotation_coefficients(degrees, height, width):
    """tf.contrib.image.angles_to_projective_transforms (counter-clockwise, about the centre)."""
    t = np.deg2rad(degrees)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    a = (np.cos(t), -np.sin(t), cx - (np.cos(t) * cx - np.sin(t) * cy))
    b = (np.sin(t), np.cos(t), cy - (np.sin(t) * cx + np.cos(t) * cy))
    return a, b


@pytest.mark.parametrize("op, arg, coefficients", [
    (ra.shear_x, 0.21, lambda h, w: ((1, 0.21, 0), (0, 1, 0))),
    (ra.shear_y, -0.17, lambda h, w: ((1, 0, 0), (-0.17, 1, 0))),
    (ra.translate_x, 7.0, lambda h, w: ((1, 0, 7), (0, 1, 0))),
    (ra.translate_y, -5.0, lambda h, w: ((1, 0, 0), (0, 1, -5))),
    (ra.rotate, 23.0, lambda h, w: _rotation_coefficients(23.0, h, w)),
    (ra.rotate, -11.0, lambda h, w: _rotation_coefficients(-11.0, h, w)),
])
@pytest.mark.parametrize("fill", ["grey", "reflect"])
def test_geometric_ops_match_tf_transform(op, arg, coefficients, fill):
    image = IMAGES[1].astype(np.float32)
    ref = _tf_transform_reference(image, *coefficients(*image.shape[:2]), fill)
    out = np.asarray(op(jnp.asarray(image), arg, fill))
    # float32 vs float64 coordinates may round a tie the other way at a handful of pixels
    assert (out == ref).all(axis=-1).mean() > 0.99
    assert (out == 128).all(axis=-1).sum() == pytest.approx((ref == 128).all(axis=-1).sum(), abs=4)


def test_translate_by_whole_pixels_is_a_shift():
    image = jnp.asarray(IMAGES[0], jnp.float32)
    out = np.asarray(ra.translate_x(image, 5.0, "grey"))
    np.testing.assert_array_equal(out[:, :-5], IMAGES[0][:, 5:])  # content moves left
    np.testing.assert_array_equal(out[:, -5:], 128)
    # the default fill mirrors the image about its edge (d c b a | a b c d), as the authors'
    # transform does: the uncovered columns repeat the last ones backwards
    reflected = np.asarray(ra.translate_x(image, 5.0))
    np.testing.assert_array_equal(reflected[:, :-5], IMAGES[0][:, 5:])
    np.testing.assert_array_equal(reflected[:, -5:], IMAGES[0][:, ::-1][:, :5])
    down = np.asarray(ra.translate_y(image, -3.0))  # content moves down: rows 2, 1, 0 on top
    np.testing.assert_array_equal(down[3:], IMAGES[0][:-3])
    np.testing.assert_array_equal(down[:3], IMAGES[0][2::-1])


def _grey_fraction(out):
    return float((np.asarray(out) == 128).all(axis=-1).mean())


def test_reflect_fill_leaves_no_grey_where_grey_fill_leaves_half():
    """TranslateX by 50 px on a 96-px image (the surrogate's size): grey 128 fill greys 52% of
    the pixels (50 columns of 96); the authors' reflect fill greys none, nor do Rotate and the
    shears at magnitude 10."""
    rng = np.random.default_rng(1)
    image = jnp.asarray(rng.integers(0, 128, (96, 96, 3)), jnp.float32)  # no 128 in the image
    assert _grey_fraction(ra.translate_x(image, 50.0, "grey")) == pytest.approx(50 / 96)
    assert _grey_fraction(ra.translate_x(image, 50.0)) == 0.0
    for op, arg in ((ra.rotate, 30.0), (ra.shear_x, 0.3), (ra.shear_y, -0.3),
                    (ra.translate_y, -100.0)):
        assert _grey_fraction(op(image, arg, "grey")) > 0.05, op.__name__
        assert _grey_fraction(op(image, arg)) == 0.0, op.__name__
    with pytest.raises(ValueError, match="unknown RandAugment fill 'black'; available: "
                                         "reflect, grey"):
        ra.branches(5.0, "black")


_APPLY = jax.jit(ra.apply_op, static_argnames=("name", "magnitude", "fill"))


def _apply(name, magnitude, images=IMAGES, key=KEY, fill="reflect"):
    """The single op `name` at `magnitude` (a Python number stays static, as in a config)."""
    images = jnp.asarray(images, jnp.float32)
    if isinstance(magnitude, int | float):
        return np.asarray(_APPLY(name, key, images, magnitude=magnitude, fill=fill))
    return np.asarray(jax.jit(ra.apply_op, static_argnames=("name", "fill"))(
        name, key, images, magnitude=magnitude, fill=fill))


def test_magnitude_to_argument_mapping():
    x = IMAGES.astype(np.float32)
    np.testing.assert_array_equal(_apply("Posterize", 5.0), _ours(ra.posterize, 2))
    np.testing.assert_array_equal(_apply("Posterize", 7.9), _ours(ra.posterize, 3))  # floor
    np.testing.assert_array_equal(_apply("Posterize", 0.0), 0)  # TF: 0 bits at magnitude 0
    np.testing.assert_array_equal(_apply("Solarize", 0.0), 255 - x)  # threshold 0
    np.testing.assert_array_equal(_apply("Solarize", 10.0), x)  # threshold 256
    np.testing.assert_array_equal(_apply("Solarize", 5.0), _ours(ra.solarize, 128))
    np.testing.assert_array_equal(_apply("SolarizeAdd", 5.0), _ours(ra.solarize_add, 55))
    np.testing.assert_array_equal(_apply("Brightness", 10.0), _ours(ra.brightness, 1.9))
    np.testing.assert_array_equal(_apply("Contrast", 0.0), _ours(ra.contrast, 0.1))
    np.testing.assert_array_equal(_apply("Color", 15.0), _ours(ra.color, 2.8))  # > MAX_LEVEL
    # Cutout at magnitude 1: pad floor(40 / 10) = 4 -> at most an 8 x 8 square of 128
    cut = _apply("Cutout", 1.0, images=np.zeros((16, 20, 24, 3), np.uint8))
    counts = (cut[..., 0] == 128).sum(axis=(1, 2))
    assert counts.max() == 64 and counts.min() > 0
    # Signed ops: magnitude 10 -> +-30 degrees, +-0.3 shear, +-100 px (whole 20x24 image gone)
    gone = _apply("TranslateX", 10.0, fill="grey")
    np.testing.assert_array_equal(gone, 128)
    one = _apply("TranslateY", 1.0, images=IMAGES[:1].repeat(32, 0), fill="grey")  # +-10 px
    shifts = {int(np.flatnonzero((o == 128).all(axis=(1, 2)))[0]) for o in one}
    assert shifts == {0, 10}  # rows filled from the top (-10) or the bottom (+10): both signs


@pytest.mark.parametrize("name", ["AutoContrast", "Equalize", "Invert"])
def test_argument_free_ops_ignore_magnitude(name):
    np.testing.assert_array_equal(_apply(name, 0.0), _apply(name, 13.0))


@pytest.mark.parametrize("name", ["Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY",
                                  "Cutout", "SolarizeAdd", "Solarize"])
def test_magnitude_zero_identity_where_expected(name):
    expected = IMAGES if name != "Solarize" else 255 - IMAGES.astype(np.float32)
    np.testing.assert_array_equal(_apply(name, 0.0), expected)


def test_enhance_ops_identity_at_magnitude_five():  # factor 1.8 * 0.5 + 0.1 = 1
    for name in ("Color", "Contrast", "Brightness", "Sharpness"):
        np.testing.assert_array_equal(_apply(name, 5.0), IMAGES)


def test_unknown_op_name():
    with pytest.raises(ValueError, match="unknown RandAugment op 'Blur'; available: AutoContrast"):
        ra.apply_op("Blur", KEY, jnp.zeros((1, 4, 4, 3)), magnitude=1.0)


# -- the policy (one compilation per distinct shape costs ~10 s on 2 cores: shapes are shared) ---

RANDAUG = jax.jit(functools.partial(ra.randaugment, num_layers=2, magnitude=9.0))
BATCH = jnp.asarray(_images(batch=16, seed=3), jnp.float32)


def test_randaugment_range_dtype_shape_determinism():
    images = BATCH + 0.7  # non-integer input, as after a resize
    out = RANDAUG(KEY, images)
    assert out.shape == images.shape and out.dtype == jnp.float32
    out = np.asarray(out)
    assert out.min() >= 0 and out.max() <= 255 and (out == np.floor(out)).all()
    np.testing.assert_array_equal(out, RANDAUG(KEY, images))
    other = np.asarray(RANDAUG(jax.random.key(1), images))
    assert not np.array_equal(out, other)
    changed = ~(out == np.floor(np.asarray(images))).all(axis=(1, 2, 3))
    assert changed.sum() >= 12  # two random ops change almost every image at magnitude 9


def test_randaugment_per_example_and_batch_independent():
    out = np.asarray(RANDAUG(KEY, BATCH))
    edited = np.asarray(RANDAUG(KEY, BATCH.at[3].set(0.0)))
    np.testing.assert_array_equal(np.delete(edited, 3, 0), np.delete(out, 3, 0))
    same = jnp.broadcast_to(BATCH[:1], BATCH.shape)  # one image, sixteen keys
    variants = np.asarray(RANDAUG(KEY, same))
    assert len({v.tobytes() for v in variants}) >= 8  # some draws coincide (e.g. all grey)


def _one_layer_counts(identity_branch):
    """640 one-layer RandAugments (magnitude 7) of one image: how often the output is each
    argument-free op's result, and how often it is the image itself."""
    batch, image = 640, IMAGES[1]
    one_layer = jax.jit(functools.partial(ra.randaugment, num_layers=1, magnitude=7.0,
                                          identity_branch=identity_branch))
    out = np.asarray(one_layer(KEY, jnp.broadcast_to(jnp.asarray(image, jnp.float32),
                                                     (batch, *image.shape))))
    counts = {name: int((out == _apply(name, 7.0, images=image[None])[0]).all(axis=(1, 2, 3))
                        .sum()) for name in ("Invert", "Equalize", "AutoContrast")}
    return counts, int((out == image).all(axis=(1, 2, 3)).sum())


def test_randaugment_one_layer_draws_17_branches_the_last_doing_nothing():
    # The authors' policy: 17 equally likely branches per layer, the 17th the identity (every
    # op changes this image at magnitude 7), so each op and "nothing" come ~640/17 = 37.6 times
    counts, unchanged = _one_layer_counts(identity_branch=True)
    for name, count in counts.items():
        assert 18 < count < 60, (name, count)  # binomial(640, 1/17): sd 5.9
    assert 18 < unchanged < 60, unchanged


def test_randaugment_one_layer_applies_one_op_always_uniformly_without_the_17th():
    # identity_branch=False (google/automl): one of the 16 ops always, each ~1/16
    counts, unchanged = _one_layer_counts(identity_branch=False)
    for name, count in counts.items():
        assert 20 < count < 65, (name, count)  # binomial(640, 1/16): mean 40, sd 6.1
    assert unchanged < 10  # no op is skipped


def test_traced_magnitude_equals_python_magnitude():
    for name, magnitude in (("Posterize", 7.5), ("Rotate", 6.0)):
        traced = _apply(name, jnp.float32(magnitude))
        np.testing.assert_array_equal(traced, _apply(name, magnitude), err_msg=name)


def test_registered_as_augmentation_op():
    assert data.get_op("randaugment").fn is ra.randaugment
    assert data.parse_steps([("randaugment", {"num_layers": 2, "magnitude": 9.0})]) == [
        ("randaugment", {"num_layers": 2, "magnitude": 9.0})]
    assert data.parse_steps([("randaugment", {"fill": "grey", "identity_branch": False})]) == [
        ("randaugment", {"fill": "grey", "identity_branch": False})]
    with pytest.raises(ValueError, match="augmentation op randaugment: .*'layers'"):
        data.parse_steps([("randaugment", {"layers": 2})])
