"""Tests for lfe.experiments.augment_grid: the augment_grid mode writes the PNGs, at the sizes the
layout gives."""

import ml_collections
import numpy as np
import pytest
from PIL import Image

from lfe import main
from lfe.experiments import augment_grid as grid
from lfe.training.data import randaugment


def _config(cifar_dir):
    c = ml_collections.ConfigDict({
        "mode": "augment_grid", "dataset": "cifar10", "data_dir": str(cifar_dir),
        "split": "test", "num_images": 3, "image_size": 32, "magnitudes": (0.0, 10.0),
        "num_layers": 2, "cutmix_alpha": 1.0, "seed": 0})
    return c


@pytest.mark.slow  # four compilations of the augmentation graphs: ~50 s on 2 busy cores
def test_augment_grid_mode_writes_pngs(cifar_dir, tmp_path):
    paths = main.dispatch(_config(cifar_dir), str(tmp_path))
    names = {p.name for p in paths}
    assert names == {"randaugment_magnitudes.png", "randaugment_ops.png", "effnetv2_train.png",
                     "cutmix.png"} | {f"randaugment_op_{n}.png" for n in randaugment.OP_NAMES}
    expected = {  # (rows, cols, column labels, captions) of each grid
        "randaugment_magnitudes.png": (3, 3, True, False),
        "randaugment_ops.png": (16, 2, True, False),
        "randaugment_op_Rotate.png": (2, 3, True, False),
        "effnetv2_train.png": (4, 3, True, False),
        "cutmix.png": (3, 3, True, True),
    }
    for name, (rows, cols, col_labels, captions) in expected.items():
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG" and image.mode == "RGB"
            assert image.size == grid.grid_size(rows, cols, 32, 32, col_labels=col_labels,
                                                captions=captions), name
            pixels = np.asarray(image)
        assert pixels.std() > 20  # real images, not a blank canvas
    original = np.asarray(Image.open(tmp_path / "randaugment_magnitudes.png"))
    first = original[grid.LABEL_HEIGHT + grid.PAD:][:32, grid.LABEL_WIDTH + grid.PAD:][:, :32]
    assert first.std() > 10  # the first tile holds an image


def test_render_places_tiles_and_captions():
    tiles = np.zeros((2, 3, 5, 6, 3), np.uint8)
    tiles[1, 2] = 200
    picture = grid.render(grid.Grid(tiles, ["a", "b"], captions=[["x"] * 3] * 2))
    assert picture.size == grid.grid_size(2, 3, 5, 6, col_labels=False, captions=True)
    pixels = np.asarray(picture)
    cell_h = 5 + grid.LABEL_HEIGHT + grid.PAD
    y, x = cell_h + grid.PAD, grid.LABEL_WIDTH + 2 * (6 + grid.PAD) + grid.PAD
    np.testing.assert_array_equal(pixels[y:y + 5, x:x + 6], 200)
    left = grid.LABEL_WIDTH + grid.PAD
    np.testing.assert_array_equal(pixels[grid.PAD:grid.PAD + 5, left:left + 6], 0)


def test_unknown_dataset_in_grid_config(tmp_path):
    config = _config("/nonexistent")
    config.dataset = "imagenet"
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        main.dispatch(config, str(tmp_path))
