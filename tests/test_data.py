"""Tests for lfe.training.data: CIFAR binary reader, dataset registry/sources, host batching,
prefetch."""

import gc
import itertools
import time

import numpy as np
import pytest

from lfe.training import data
from lfe.training.data import cifar_binary

CIFAR_TRAIN_MEAN = (125.307, 122.950, 113.865)


# -- real CIFAR-10 -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cifar(cifar_dir):
    return data.load("cifar10", data_dir=cifar_dir)


def test_real_cifar_shapes_and_split(cifar, cifar_dir):
    assert cifar.name == "cifar10" and cifar.num_classes == 10
    assert cifar.train_images.shape == (45000, 32, 32, 3)
    assert cifar.val_images.shape == (5000, 32, 32, 3)
    assert cifar.test_images.shape == (10000, 32, 32, 3)
    for split in ("train", "val", "test"):
        images, labels = cifar.split(split)
        assert images.dtype == np.uint8 and labels.dtype == np.int32
        assert labels.min() == 0 and labels.max() == 9
    full = data.read_cifar10_binary(cifar_dir)
    # the CIFAR-10 split: the first 45,000 are train, indices 45000-49999 validation, no shuffling.
    np.testing.assert_array_equal(cifar.train_images, full.train_images[:45000])
    np.testing.assert_array_equal(cifar.val_images, full.train_images[45000:])
    np.testing.assert_array_equal(cifar.val_labels, full.train_labels[45000:])
    full_labels = np.concatenate([cifar.train_labels, cifar.val_labels])
    np.testing.assert_array_equal(np.bincount(full_labels), [5000] * 10)
    np.testing.assert_array_equal(np.bincount(cifar.test_labels), [1000] * 10)
    assert cifar.class_names[0] == "airplane" and cifar.class_names[-1] == "truck"


def test_real_cifar_channel_mean(cifar):
    full = np.concatenate([cifar.train_images, cifar.val_images])
    mean = full.reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(mean, CIFAR_TRAIN_MEAN, atol=2e-3)


def test_real_cifar_first_record_read_independently(cifar, cifar_dir):
    records = np.fromfile(cifar_dir / "data_batch_1.bin", np.uint8).reshape(-1, 3073)
    image = records[0, 1:].reshape(3, 32, 32).transpose(1, 2, 0)
    np.testing.assert_array_equal(cifar.train_images[0], image)
    assert cifar.train_labels[0] == records[0, 0]
    last = np.fromfile(cifar_dir / "data_batch_5.bin", np.uint8).reshape(-1, 3073)[-1]
    np.testing.assert_array_equal(cifar.val_images[-1], last[1:].reshape(3, 32, 32)
                                  .transpose(1, 2, 0))


def test_real_cifar_deterministic_cached_and_read_only(cifar, cifar_dir):
    again = data.load("cifar10", data_dir=str(cifar_dir))
    np.testing.assert_array_equal(again.train_labels, cifar.train_labels)
    assert data.read_cifar10_binary(cifar_dir) is data.read_cifar10_binary(str(cifar_dir))
    with pytest.raises(ValueError):
        cifar.train_images[0, 0, 0, 0] = 1


def test_real_cifar_via_parent_dir_and_env(cifar, cifar_dir, monkeypatch):
    monkeypatch.setenv("LFE_DATA_DIR", str(cifar_dir))
    np.testing.assert_array_equal(data.load("cifar10").val_labels, cifar.val_labels)
    if cifar_dir.name == cifar_binary.FOLDER_NAME:
        assert data.find_cifar10_dir(cifar_dir.parent) == cifar_dir.resolve()
        small = data.load("cifar10", data_dir=cifar_dir.parent, val_size=100)
        assert len(small.train_labels) == 49900 and len(small.val_labels) == 100


def test_missing_file_in_directory(cifar_dir, tmp_path):
    for name in ("data_batch_1.bin", "data_batch_2.bin"):
        (tmp_path / name).symlink_to(cifar_dir / name)
    with pytest.raises(FileNotFoundError, match="data_batch_3.bin does not exist") as info:
        data.load("cifar10", data_dir=tmp_path)
    assert "\n" not in str(info.value)


# -- CIFAR binary validation (synthetic files) ---------------------------------------------------

def test_short_file_one_line_error(tmp_path):
    (tmp_path / "data_batch_1.bin").write_bytes(b"\0" * 123)
    with pytest.raises(ValueError) as info:
        data.load("cifar10", data_dir=tmp_path)
    message = str(info.value)
    assert message == (f"CIFAR-10 binary file {tmp_path.resolve() / 'data_batch_1.bin'} has 123 "
                       "bytes, expected 30730000")


def test_bad_label_byte(tmp_path):
    records = np.zeros((10000, 3073), np.uint8)
    records[5, 0] = 200
    records[0, 0], records[0, 1], records[0, 1025] = 7, 11, 22  # R and G of pixel (0, 0)
    path = tmp_path / "x.bin"
    records.tofile(path)
    with pytest.raises(ValueError, match="has label 200 at record 5, expected 0-9"):
        cifar_binary.read_batch_file(path)
    records[5, 0] = 3
    records.tofile(path)
    images, labels = cifar_binary.read_batch_file(path)
    assert images.shape == (10000, 32, 32, 3) and labels[0] == 7 and labels[5] == 3
    np.testing.assert_array_equal(images[0, 0, 0], [11, 22, 0])


def test_missing_directory():
    with pytest.raises(FileNotFoundError, match="no CIFAR-10 data at /nonexistent/x"):
        data.load("cifar10", data_dir="/nonexistent/x")
    with pytest.raises(FileNotFoundError, match="no CIFAR-10 binary directory"):
        data.read_cifar10_binary("/nonexistent/x")


# -- generic arrays, npz, registry ---------------------------------------------------------------

def _arrays(n=20, n_test=6, size=8, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return dict(
        x_train=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
        y_train=np.arange(n) % classes,
        x_test=rng.integers(0, 256, (n_test, size, size, 3), dtype=np.uint8),
        y_test=np.arange(n_test) % classes,
    )


def test_from_arrays_holdout_and_explicit_val():
    arrays = _arrays()
    ds = data.from_arrays(**arrays, val_size=5)
    assert ds.num_classes == 4 and ds.image_shape == (8, 8, 3)
    np.testing.assert_array_equal(ds.val_images, arrays["x_train"][15:])
    assert ds.train_labels.dtype == np.int32 and len(ds.train_labels) == 15
    explicit = data.from_arrays(**arrays, x_val=arrays["x_test"], y_val=arrays["y_test"],
                                num_classes=7)
    assert len(explicit.train_labels) == 20 and explicit.num_classes == 7
    resized = data.from_arrays(**arrays, val_size=2, image_size=(4, 6))
    assert resized.test_images.shape == (6, 4, 6, 3)
    via_load = data.load("arrays", **arrays, val_size=5)
    np.testing.assert_array_equal(via_load.train_images, ds.train_images)


@pytest.mark.parametrize("change, match", [
    (dict(x_train=np.zeros((20, 8, 8, 3), np.float32)), "x_train must be uint8 NHWC"),
    (dict(x_test=np.zeros((6, 8, 8), np.uint8)), "x_test must be uint8 NHWC"),
    (dict(y_train=np.zeros((20, 1), np.int64)), "y_train must be a 1-D integer array"),
    (dict(y_test=np.arange(5)), "test has 6 images but 5 labels"),
    (dict(x_test=np.zeros((6, 4, 4, 3), np.uint8)), r"test images have shape \(4, 4, 3\)"),
])
def test_from_arrays_validation_one_line(change, match):
    with pytest.raises(ValueError, match=match) as info:
        data.from_arrays(**{**_arrays(), **change}, val_size=5)
    assert "\n" not in str(info.value)


def test_labels_out_of_range_and_bad_val_size():
    with pytest.raises(ValueError, match=r"labels span \[0, 3\], expected \[0, 1\]"):
        data.from_arrays(**_arrays(), val_size=5, num_classes=2)
    with pytest.raises(ValueError, match="val_size must be in"):
        data.from_arrays(**_arrays(), val_size=20)


def test_npz_source(tmp_path):
    arrays = _arrays()
    path = tmp_path / "mine.npz"
    np.savez(path, **arrays)
    ds = data.load(f"npz:{path}", val_size=4)
    assert ds.name == "mine" and len(ds.val_labels) == 4 and len(ds.test_labels) == 6
    np.savez(path, **arrays, x_val=arrays["x_test"][:3], y_val=arrays["y_test"][:3])
    assert len(data.load(f"npz:{path}").val_labels) == 3
    np.savez(path, x_train=arrays["x_train"], y_train=arrays["y_train"])
    with pytest.raises(ValueError, match="lacks x_test, y_test"):
        data.load(f"npz:{path}")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load(f"npz:{tmp_path / 'absent.npz'}")


def test_unknown_name_lists_available():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'") as info:
        data.load("imagenet")
    for name in ("cifar10", "cifar100", "oxford_flowers102", "npz:<path>", "tfds:<name>"):
        assert name in str(info.value)


def test_register_source(monkeypatch):
    monkeypatch.setattr(data.datasets, "SOURCES", dict(data.SOURCES))  # isolate the registry

    @data.register_source("tiny")
    def tiny(*, data_dir, val_size, image_size, seed=0):
        return data.from_arrays(**_arrays(seed=seed), val_size=val_size, image_size=image_size)

    assert "tiny" in data.available() and "tiny" not in data.SOURCES
    assert data.load("tiny", val_size=3, image_size=4, seed=1).val_images.shape == (3, 4, 4, 3)


# -- tfds sources: tests/test_datasets_tfds.py -------------------------------------------------


# -- batching ------------------------------------------------------------------------------------

def _indexed(n, size=2):
    """Images whose pixel (0, 0, 0) holds the example index, labels = index % 256."""
    images = np.zeros((n, size, size, 1), np.uint8)
    images[:, 0, 0, 0] = np.arange(n)
    return images, (np.arange(n) % 256).astype(np.int32)


def test_train_batches_epochs_and_drop_remainder():
    images, labels = _indexed(10)
    batches = list(itertools.islice(data.train_batches(images, labels, 3, seed=1), 6))
    assert all(b["image"].shape == (3, 2, 2, 1) and b["label"].dtype == np.int32
               for b in batches)
    for b in batches:
        np.testing.assert_array_equal(b["image"][:, 0, 0, 0], b["label"])
    epochs = [np.concatenate([b["label"] for b in batches[i:i + 3]]) for i in (0, 3)]
    assert all(len(set(e)) == 9 for e in epochs)  # 3 steps of 3, one example dropped
    np.testing.assert_array_equal(epochs[0], data.epoch_permutation(10, 1, 0)[:9])
    assert not np.array_equal(epochs[0], epochs[1])
    again = list(itertools.islice(data.train_batches(images, labels, 3, seed=1), 6))
    other = list(itertools.islice(data.train_batches(images, labels, 3, seed=2), 6))
    stacked = [np.stack([b["label"] for b in bs]) for bs in (batches, again, other)]
    np.testing.assert_array_equal(stacked[0], stacked[1])
    assert not np.array_equal(stacked[0], stacked[2])


@pytest.mark.parametrize("start_step", [0, 1, 3, 7, 25])
def test_train_batches_exact_resume(start_step):
    images, labels = _indexed(11)
    full = itertools.islice(data.train_batches(images, labels, 4, seed=5), start_step,
                            start_step + 6)
    resumed = itertools.islice(data.train_batches(images, labels, 4, 5, start_step), 6)
    for a, b in zip(full, resumed, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])


def test_train_batches_errors():
    images, labels = _indexed(4)
    with pytest.raises(ValueError, match="exceeds the 4 examples"):
        data.train_batches(images, labels, 5, seed=0)
    with pytest.raises(ValueError, match="3 labels"):
        data.train_batches(images, labels[:3], 2, seed=0)


def test_eval_batches_padding_and_mask():
    images, labels = _indexed(10)
    batches = list(data.eval_batches(images, labels, 4))
    assert len(batches) == data.num_eval_batches(10, 4) == 3
    for b in batches:
        assert b["image"].shape == (4, 2, 2, 1) and b["label"].shape == (4,)
        assert b["mask"].dtype == np.float32 and b["label"].dtype == np.int32
    np.testing.assert_array_equal(batches[-1]["mask"], [1, 1, 0, 0])
    np.testing.assert_array_equal(batches[-1]["image"][2:], 0)
    real = np.concatenate([b["label"][b["mask"] > 0] for b in batches])
    np.testing.assert_array_equal(real, labels)
    assert sum(b["mask"].sum() for b in batches) == 10
    assert len(list(data.eval_batches(images, labels, 5))) == 2


# -- prefetch ------------------------------------------------------------------------------------

def test_prefetch_preserves_order_and_finishes():
    with data.prefetch(iter(range(50)), size=3) as fetched:
        assert list(fetched) == list(range(50))
    assert not fetched.thread.is_alive()
    assert list(fetched) == []


def test_prefetch_early_stop_does_not_hang():
    fetched = data.prefetch(itertools.count(), size=2)
    assert [next(fetched) for _ in range(5)] == [0, 1, 2, 3, 4]
    fetched.close()
    assert not fetched.thread.is_alive()
    with pytest.raises(StopIteration):
        next(fetched)


def test_prefetch_abandoned_iterator_stops_thread():
    fetched = data.prefetch(itertools.count(), size=2)
    next(fetched)
    thread = fetched.thread
    del fetched
    gc.collect()
    thread.join(2.0)
    assert not thread.is_alive()


def test_prefetch_reraises_producer_error():
    def failing():
        yield 1
        raise RuntimeError("boom")

    fetched = data.prefetch(failing())
    assert next(fetched) == 1
    with pytest.raises(RuntimeError, match="boom"):
        next(fetched)


def test_prefetch_runs_ahead():
    produced = []

    def source():
        for i in range(10):
            produced.append(i)
            yield i

    fetched = data.prefetch(source(), size=2)
    deadline = time.monotonic() + 2.0
    while len(produced) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(produced) >= 3  # 2 queued + 1 waiting to be put, before any consumption
    assert next(fetched) == 0
    fetched.close()
    assert not fetched.thread.is_alive()
