"""Tests for the tfds sources (lfe.training.data.tfds_source, datasets.load_tfds), offline.

Nothing can be downloaded here: `tfds.testing.mock_data` makes `tfds.data_source` return generated
examples that follow each builder's real feature spec (images of varying size for the transfer
datasets), and an injected `reader` stands in for tfds where exact split names and sizes matter.
"""

import numpy as np
import pytest

from lfe.training import data
from lfe.training.data import tfds_source

tfds = pytest.importorskip("tensorflow_datasets")

PAPER = {  # name: (num_classes, Table 7 train, Table 7 test)
    "cifar100": (100, 50000, 10000),
    "cars196": (196, 8144, 8041),
    "oxford_flowers102": (102, 2040, 6149),
    "caltech101": (102, 3060, 6084),
}
TFDS_SPLIT_SIZES = {  # the tfds split sizes of these datasets' current versions
    "cifar100": {"train": 50000, "test": 10000},
    "cars196": {"train": 8144, "test": 8041},
    "oxford_flowers102": {"train": 1020, "validation": 1020, "test": 6149},
    "caltech101": {"train": 3060, "test": 6084},
}


@pytest.fixture(scope="module")
def mocked():
    """Each paper dataset loaded once through tfds's mock data (6 examples per split)."""
    with tfds.testing.mock_data(num_examples=6):
        return {name: data.load(name, image_size=24 if name != "cifar100" else None,
                                val_size=2 if name == "cifar100" else None)
                for name in PAPER}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_mock_dataset_classes_shapes_labels(mocked, name):
    ds = mocked[name]
    classes, _, _ = PAPER[name]
    assert ds.name == name and ds.num_classes == classes
    side = 32 if name == "cifar100" else 24
    assert ds.image_shape == (side, side, 3)
    for split in ("train", "val", "test"):
        images, labels = ds.split(split)
        assert images.dtype == np.uint8 and labels.dtype == np.int32
        assert len(labels) == 0 or (labels.min() >= 0 and labels.max() < classes)
    if name == "cifar100":  # the CIFAR protocol: the tail of train is validation
        assert len(ds.train_labels) == 4 and len(ds.val_labels) == 2
    else:  # the paper trains on all of Table 7's training images: no hold-out by default
        assert len(ds.train_labels) == 6 and len(ds.val_labels) == 0
    assert len(ds.test_labels) == 6
    assert len(ds.class_names) == classes


def _table7_reader(calls):
    """A reader serving TFDS_SPLIT_SIZES examples (tiny images of varying size), split
    arithmetic "a+b" included, recording the requested (name, split)."""
    def reader(name, split, data_dir):
        calls.append((name, split))
        size = sum(TFDS_SPLIT_SIZES[name][part] for part in split.split("+"))
        rng = np.random.default_rng(len(calls))

        class Examples:
            def __len__(self):
                return size

            def __getitem__(self, i):
                shape = (2 + i % 3, 3 + i % 2, 3) if name != "cifar100" else (32, 32, 3)
                return {"image": rng.integers(0, 256, shape, dtype=np.uint8),
                        "label": i % PAPER[name][0]}
        return Examples()
    return reader


@pytest.mark.parametrize("name", ["cars196", "oxford_flowers102", "caltech101"])
def test_paper_split_sizes_and_split_names(name):
    calls = []
    ds = data.load(name, image_size=2, reader=_table7_reader(calls))
    classes, train, test = PAPER[name]
    assert len(ds.train_labels) == train and len(ds.test_labels) == test  # Table 7
    assert len(ds.val_labels) == 0 and ds.num_classes == classes
    expected_train = "train+validation" if name == "oxford_flowers102" else "train"
    assert calls == [(name, expected_train), (name, "test")]
    held_out = data.load(name, image_size=2, val_size=100, reader=_table7_reader([]))
    assert len(held_out.train_labels) == train - 100 and len(held_out.val_labels) == 100


def test_variable_size_needs_image_size_before_reading():
    calls = []
    with pytest.raises(ValueError) as info:
        data.load("cars196", reader=_table7_reader(calls))
    assert str(info.value).startswith("dataset cars196 has images of varying size; set image_size")
    assert "\n" not in str(info.value) and calls == []


def test_resize_keeps_whole_image_squashed():
    # A 10x40 image, left half black and right half white, becomes 8x8 with the boundary in the
    # middle: the whole image is resized (aspect ratio not kept), nothing is cropped.
    image = np.zeros((10, 40, 3), np.uint8)
    image[:, 20:] = 255
    other = np.full((30, 12, 3), 77, np.uint8)

    def reader(name, split, data_dir):
        return [{"image": image, "label": 0}, {"image": other, "label": 1}]

    ds = data.load("tfds:two_sizes", reader=reader, splits=("train", None, "test"),
                   num_classes=2, image_size=8, val_size=0)
    out = ds.train_images[0, :, :, 0].astype(int)
    assert (out[:, :3] == 0).all() and (out[:, 5:] == 255).all()
    np.testing.assert_array_equal(ds.train_images[1], 77)
    np.testing.assert_array_equal(tfds_source.resize_images(ds.train_images, 8), ds.train_images)


def test_cifar10_through_tfds_mock(monkeypatch):
    monkeypatch.delenv("LFE_DATA_DIR", raising=False)
    with tfds.testing.mock_data(num_examples=6):
        cifar10 = data.load("cifar10", val_size=1)
    assert cifar10.num_classes == 10 and len(cifar10.val_labels) == 1
    assert cifar10.image_shape == (32, 32, 3)


def test_injected_reader_any_tfds_name():
    calls = []

    def reader(name, split, data_dir):
        calls.append((name, split, data_dir))
        rng = np.random.default_rng(len(calls))
        return [{"image": rng.integers(0, 256, (5 + i, 7, 1), dtype=np.uint8), "label": i % 3}
                for i in range(8)]

    ds = data.load("tfds:my_set", data_dir="/d", reader=reader, splits=("train", "val", "test"),
                   num_classes=3, image_size=4)
    assert calls == [("my_set", s, "/d") for s in ("train", "val", "test")]
    assert ds.train_images.shape == (8, 4, 4, 1) and ds.num_classes == 3


def test_unknown_dataset_one_line_lists_paper_datasets():
    with pytest.raises(ValueError) as info:
        data.load("imagenet2012")
    message = str(info.value)
    assert message.startswith("unknown dataset 'imagenet2012'; available: ") and "\n" not in message
    for name in PAPER:
        assert name in message
