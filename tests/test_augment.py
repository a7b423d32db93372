"""Tests for lfe.training.data.augment: each op's shape, range, determinism and a defining
property."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from lfe.training import data
from lfe.training.data import augment


def _images(batch=4, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.integers(1, 256, (batch, size, size, 3)), jnp.float32)


KEY = jax.random.key(0)

IMAGE_OPS = [  # (name, kwargs, output height and width) on 16x16 inputs
    ("random_crop", {"pad": 4}, (16, 16)),
    ("random_crop", {"pad": 2, "size": 12, "mode": "reflect"}, (12, 12)),
    ("resize_then_crop", {"resize_to": 20, "size": 16}, (16, 16)),
    ("flip_left_right", {}, (16, 16)),
    ("cutout", {"size": 4}, (16, 16)),
    ("resize", {"size": 8}, (8, 8)),
    ("resize", {"size": (24, 20)}, (24, 20)),
    ("random_square_crop", {"size": 12, "crop": "area"}, (12, 12)),
]


@pytest.mark.parametrize("name, kwargs, out_hw", IMAGE_OPS)
def test_op_shape_range_determinism(name, kwargs, out_hw):
    images = _images(batch=8)
    op = augment.get_op(name).fn
    out = op(KEY, images, **kwargs)
    assert out.shape == (8, *out_hw, 3) and out.dtype == jnp.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 255.0
    np.testing.assert_array_equal(out, op(KEY, images, **kwargs))
    jitted = jax.jit(functools.partial(op, **kwargs))(KEY, images)
    np.testing.assert_allclose(jitted, out, atol=1e-3)  # jit may reorder float ops
    if name != "resize":
        assert not np.array_equal(out, op(jax.random.key(1), images, **kwargs))


def _windows(padded, size):
    """Every size x size window of each padded image: [B, n_offsets, h, w, C]."""
    h, w = size
    rows, cols = padded.shape[1] - h + 1, padded.shape[2] - w + 1
    return np.stack([np.stack([padded[b, i:i + h, j:j + w] for i in range(rows)
                               for j in range(cols)]) for b in range(len(padded))])


def test_random_crop_is_a_window_of_the_zero_padded_image():
    images = np.asarray(_images(batch=6, size=8))
    out = np.asarray(data.random_crop(KEY, jnp.asarray(images), pad=2))
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))
    windows = _windows(padded, (8, 8))
    for b in range(6):
        assert (windows[b] == out[b]).all(axis=(1, 2, 3)).sum() == 1
    offsets_used = [np.flatnonzero((windows[b] == out[b]).all(axis=(1, 2, 3)))[0]
                    for b in range(6)]
    assert len(set(offsets_used)) > 1  # per-example offsets


def test_crop_at_offset_pad_keeps_image_and_pad_zero_is_identity():
    images = _images(batch=3, size=8)
    padded = jnp.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)))
    kept = data.crop_at(padded, jnp.full((3, 2), 4), (8, 8))
    np.testing.assert_array_equal(kept, images)
    corner = data.crop_at(padded, jnp.zeros((3, 2), jnp.int32), (8, 8))
    np.testing.assert_array_equal(corner[:, :4], 0)
    np.testing.assert_array_equal(corner[:, 4:, 4:], images[:, :4, :4])
    np.testing.assert_array_equal(data.random_crop(KEY, images, pad=0), images)


def test_resize_then_crop_is_a_window_of_the_resized_image():
    images = _images(batch=3, size=8)
    out = np.asarray(data.resize_then_crop(KEY, images, resize_to=10, size=8))
    windows = _windows(np.asarray(data.resize(KEY, images, size=10)), (8, 8))
    for b in range(3):
        assert (windows[b] == out[b]).all(axis=(1, 2, 3)).any()


def test_random_square_crop_windows_are_square_and_per_example():
    # A linear ramp stays linear under a bilinear upscale: the slope of row values gives the
    # crop side (side / size per output pixel), the intercept the crop offset.
    batch, side_in, size = 64, 16, 32
    ramp = jnp.arange(side_in, dtype=jnp.float32)
    images = jnp.stack([jnp.broadcast_to(ramp[:, None], (side_in, side_in)),
                        jnp.broadcast_to(ramp[None, :], (side_in, side_in)),
                        jnp.zeros((side_in, side_in))], axis=-1)[None].repeat(batch, 0)
    out = np.asarray(jax.jit(functools.partial(data.random_square_crop, size=size,
                                               crop="area"))(KEY, images))
    inner = slice(4, size - 4)  # away from the window edges, where the kernel sees outside
    row_slope = np.diff(out[:, inner, size // 2, 0], axis=1).mean(axis=1)
    col_slope = np.diff(out[:, size // 2, inner, 1], axis=1).mean(axis=1)
    side = row_slope * size
    np.testing.assert_allclose(row_slope, col_slope, atol=1e-4)  # square
    np.testing.assert_allclose(side, np.round(side), atol=1e-3)  # whole pixels
    assert side.min() >= np.floor(np.sqrt(0.05) * side_in) and side.max() <= side_in
    top = out[:, size // 2, size // 2, 0] - (size // 2 + 0.5) * row_slope + 0.5
    assert (top > -1e-3).all() and (top + side <= side_in + 1e-3).all()
    assert len(set(np.round(side))) >= 8 and len(set(np.round(top))) >= 4
    full = data.random_square_crop(KEY, images[:2] * 7.0, size=side_in, crop="area",
                                   area_min=1.0)
    np.testing.assert_allclose(full, images[:2] * 7.0, atol=1e-3)  # whole image, same size


def test_random_square_crop_of_the_shorter_side_is_no_crop_on_cifar():
    """The authors' crop (the default): a square of the shorter side, so a square CIFAR image
    is kept whole (only resized), whatever the key; a wide image gives one of its square
    windows, at per-example offsets."""
    images = _images(batch=8, size=32)
    for key in (KEY, jax.random.key(7)):
        same = data.random_square_crop(key, images, size=32)
        np.testing.assert_allclose(same, images, atol=1e-3)  # identity at the same size
    up = np.asarray(data.random_square_crop(KEY, images, size=64))
    np.testing.assert_allclose(up, data.resize(KEY, images, size=64), atol=1e-2)  # no crop
    wide = np.asarray(_images(batch=16, size=40))[:, :10]  # 10 x 40
    out = np.asarray(data.random_square_crop(KEY, jnp.asarray(wide), size=10))
    windows = _windows(wide, (10, 10))  # the 31 offsets along the width
    found = [np.flatnonzero(np.isclose(windows[b], out[b], atol=1e-3).all(axis=(1, 2, 3)))
             for b in range(16)]
    assert all(len(f) == 1 for f in found) and len({int(f[0]) for f in found}) > 4
    with pytest.raises(ValueError, match="unknown random_square_crop crop 'box'; available: "
                                         "shorter_side, area"):
        data.random_square_crop(KEY, images, size=8, crop="box")


def test_flip_twice_with_same_key_is_identity_and_per_example():
    images = _images(batch=32, size=6)
    once = data.flip_left_right(KEY, images)
    np.testing.assert_array_equal(data.flip_left_right(KEY, once), images)
    flipped = np.array([np.array_equal(once[b], images[b, :, ::-1]) for b in range(32)])
    kept = np.array([np.array_equal(once[b], images[b]) for b in range(32)])
    assert (flipped | kept).all() and flipped.any() and kept.any()
    np.testing.assert_array_equal(data.flip_left_right(KEY, images, prob=1.0), images[:, :, ::-1])
    np.testing.assert_array_equal(data.flip_left_right(KEY, images, prob=0.0), images)


def test_box_mask_counts_and_clipping():
    centres = jnp.array([[8, 8], [0, 0], [15, 8], [5, 9]])
    mask = np.asarray(data.box_mask(centres, jnp.full((4, 2), 4), 16, 16))
    assert mask.shape == (4, 16, 16, 1)
    np.testing.assert_array_equal(mask.sum(axis=(1, 2, 3)), [16, 4, 12, 16])
    assert mask[0, 6:10, 6:10].all()  # rows/cols [c - 2, c + 2)


def test_cutout_zeroes_exactly_size_squared_when_not_clipped():
    size, side = 4, 16
    images = jnp.ones((64, side, side, 3)) * 7.0
    out = np.asarray(data.cutout(KEY, images, size=size))
    assert set(np.unique(out)) <= {0.0, 7.0}
    for b in range(64):
        zero = out[b, ..., 0] == 0
        assert (out[b][zero] == 0).all()  # all channels of a cut pixel
        rows, cols = np.flatnonzero(zero.any(1)), np.flatnonzero(zero.any(0))
        assert zero[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # a rectangle
        touches = rows.min() == 0 or cols.min() == 0 or rows.max() == side - 1 \
            or cols.max() == side - 1
        assert zero.sum() == size * size or (touches and zero.sum() < size * size)
    counts = (out[..., 0] == 0).sum(axis=(1, 2))
    assert (counts == size * size).sum() > 32 and len(set(counts)) > 1


def test_normalize_modes():
    images = jnp.array([0.0, 127.5, 255.0]).reshape(1, 1, 3, 1).repeat(3, axis=-1)
    np.testing.assert_allclose(data.normalize(KEY, images, mode="unit")[0, 0, :, 0],
                               [0, 0.5, 1])
    np.testing.assert_allclose(data.normalize(KEY, images, mode="effnet")[0, 0, :, 0],
                               [-127.5 / 128, 0, 127.5 / 128])
    mean = jnp.asarray(augment.CIFAR_MEAN).reshape(1, 1, 1, 3)
    np.testing.assert_allclose(data.normalize(KEY, mean, mode="mean_std"), 0, atol=1e-6)
    with pytest.raises(ValueError, match="unknown normalize mode 'x'; available: unit"):
        data.normalize(KEY, images, mode="x")


def _labelled(batch=4, size=8, classes=5):
    values = jnp.arange(1, batch + 1, dtype=jnp.float32) * 10
    images = jnp.ones((batch, size, size, 3)) * values[:, None, None, None]
    target = jax.nn.one_hot(jnp.arange(batch) % classes, classes)
    return {"image": images, "target": target, "label": jnp.arange(batch)}


def test_cutmix_mixes_targets_by_pasted_area():
    batch = _labelled(batch=8, classes=8)
    cutmix = jax.jit(data.cutmix)  # prob is traced: one compilation
    out = jax.tree.map(np.asarray, cutmix(jax.random.key(3), batch))
    np.testing.assert_allclose(out["target"].sum(axis=1), 1.0, atol=1e-6)
    own_fraction = (out["image"][..., 0] == batch["image"][:, :1, :1, 0]).mean(axis=(1, 2))
    np.testing.assert_allclose(np.diag(out["target"]), own_fraction, atol=1e-6)
    assert float(out["target"].max(axis=1).min()) < 1.0  # something was mixed
    np.testing.assert_array_equal(out["label"], batch["label"])
    same = cutmix(jax.random.key(3), batch)
    np.testing.assert_array_equal(same["image"], out["image"])
    untouched = cutmix(jax.random.key(3), batch, prob=0.0)
    np.testing.assert_array_equal(untouched["image"], batch["image"])
    np.testing.assert_array_equal(untouched["target"], batch["target"])
    other_alpha = jax.jit(functools.partial(data.cutmix, alpha=0.5))(KEY, batch)
    np.testing.assert_allclose(other_alpha["target"].sum(axis=1), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="needs batch\\['target'\\]"):
        data.cutmix(KEY, {"image": batch["image"]})


def test_smooth_labels():
    out = data.smooth_labels(KEY, _labelled(classes=5), smoothing=0.1)
    np.testing.assert_allclose(out["target"].sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(out["target"].max(axis=1), 0.92, atol=1e-6)


def test_parse_steps_forms_and_errors():
    steps = ["flip_left_right", ("cutout", {"size": 8}), {"op": "normalize", "mode": "unit"}]
    assert data.parse_steps(steps) == [("flip_left_right", {}), ("cutout", {"size": 8}),
                                       ("normalize", {"mode": "unit"})]
    with pytest.raises(ValueError, match="unknown augmentation op 'rotate'; available: cutmix"):
        data.parse_steps(["rotate"])
    with pytest.raises(ValueError, match="augmentation op cutout: .*'radius'"):
        data.parse_steps([("cutout", {"radius": 3})])
    with pytest.raises(ValueError, match="bad augmentation step 3"):
        data.parse_steps([3])


def test_preprocess_from_config_dict_jits_and_is_deterministic():
    cfg = ml_collections.ConfigDict({
        "train": [("random_crop", {"pad": 2}), "flip_left_right", ("cutout", {"size": 4}),
                  ("normalize", {"mode": "unit"})],
        "eval": [("resize", {"size": 24}), {"op": "normalize", "mode": "effnet"}],
    })
    images = (np.arange(4 * 16 * 16 * 3) % 256).astype(np.uint8).reshape(4, 16, 16, 3)
    train = jax.jit(functools.partial(data.preprocess, train=True, cfg=cfg))
    out = train(KEY, images)
    assert out.dtype == jnp.float32 and out.shape == (4, 16, 16, 3)
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    np.testing.assert_allclose(out, data.preprocess(KEY, images, train=True, cfg=cfg), atol=1e-6)
    assert not np.array_equal(out, train(jax.random.key(9), images))
    evaluated = data.preprocess(None, images, train=False, cfg=cfg)
    assert evaluated.shape == (4, 24, 24, 3) and float(evaluated.min()) >= -1.0


@pytest.mark.parametrize("preset", sorted(data.PRESETS))
def test_presets_run(preset):
    batch = {"image": np.zeros((4, 32, 32, 3), np.uint8) + 100, "label": np.arange(4),
             "mask": np.ones(4, np.float32)}
    for train in (True, False):
        fn = functools.partial(data.preprocess_batch, train=train, cfg=data.PRESETS[preset],
                               num_classes=10)
        out = jax.jit(fn)(KEY, batch)
        side = 128 if preset.startswith("effnetv2") else 32
        assert out["image"].shape == (4, side, side, 3) and out["image"].dtype == jnp.float32
        assert out["target"].shape == (4, 10) and set(out) == {"image", "label", "mask", "target"}


def test_effnetv2_preset_matches_names_and_range():
    preset = data.PRESETS["effnetv2"]
    assert [name for name, _ in data.parse_steps(preset["train"])] == [
        "random_square_crop", "randaugment", "normalize"]
    authors, automl = (dict(data.parse_steps(data.PRESETS[p]["train"]))
                       for p in ("effnetv2", "effnetv2_automl"))
    assert authors["random_square_crop"]["crop"] == "shorter_side"  # the authors' code
    assert (authors["randaugment"]["fill"], authors["randaugment"]["identity_branch"]) == (
        "reflect", True)
    assert automl["random_square_crop"] == {"size": 128, "crop": "area", "area_min": 0.05}
    assert (automl["randaugment"]["fill"], automl["randaugment"]["identity_branch"]) == (
        "grey", False)
    assert [name for name, _ in data.parse_steps(preset["eval"])] == ["resize", "normalize"]
    images = np.full((2, 32, 32, 3), 255, np.uint8)
    out = data.preprocess(None, images, train=False, cfg=preset)
    np.testing.assert_allclose(out, 127.5 / 128, atol=1e-5)  # (x - 127.5) / 128


def test_register_custom_op(monkeypatch):
    monkeypatch.setattr(augment, "OPS", dict(augment.OPS))  # isolate the registry

    @augment.register_op("invert")
    def invert(rng, images):
        del rng
        return 255.0 - images

    out = data.preprocess(KEY, np.zeros((2, 4, 4, 3), np.uint8), train=True,
                          cfg={"train": ["invert"], "eval": []})
    np.testing.assert_array_equal(out, 255.0)
    assert "invert" not in data.OPS


@pytest.mark.parametrize("classes", [10, 100, 196])
@pytest.mark.parametrize("smoothing", [0.1, 0.05, 0.3])
def test_smooth_labels_is_bit_identical_to_the_hand_written_form(classes, smoothing):
    def hand(rng, batch, *, smoothing):  # the form before optax
        return {**batch, "target": (1.0 - smoothing) * batch["target"] + smoothing / classes}

    batch = _labelled(classes=classes)
    mixed = data.cutmix(KEY, batch)  # smoothing can follow CutMix: any target distribution
    for b in (batch, mixed):
        for wrap in (lambda f: f, lambda f: jax.jit(f, static_argnames="smoothing")):
            got = wrap(data.smooth_labels)(KEY, b, smoothing=smoothing)["target"]
            want = wrap(hand)(KEY, b, smoothing=smoothing)["target"]
            np.testing.assert_array_equal(np.asarray(got).view(np.int32),
                                          np.asarray(want).view(np.int32))
