"""Reader for the original CIFAR-10 *binary* distribution (`cifar-10-batches-bin/`).

Why a reader of our own: the offline copy of CIFAR-10 that CI and the CPU quickstart use is the
binary layout, which neither tfds (it wants the tar.gz and checks its checksum) nor torchvision
(it wants the python pickles) accepts as a directory. The format is trivial: every `.bin` file
holds 10,000 records of 3,073 bytes, one label byte (0-9) followed by the R, G and B planes of a
row-major 32x32 image.

Parsed arrays are cached per process (keyed on the resolved directory) because one process often
trains many candidates on the same data; the cached arrays are read-only so that no caller can
corrupt what the next caller gets.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib

import numpy as np

FOLDER_NAME = "cifar-10-batches-bin"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"  # the binary version, 163 MB
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
META_FILE = "batches.meta.txt"
RECORDS_PER_FILE = 10_000
RECORD_BYTES = 1 + 32 * 32 * 3
NUM_CLASSES = 10
# The dataset fixes these; used only when batches.meta.txt is absent (it is metadata, not data).
DEFAULT_CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)


@dataclasses.dataclass(frozen=True, eq=False)
class CifarArrays:
    """The full CIFAR-10 train (50,000) and test (10,000) sets, uint8 NHWC and int32 labels."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]


def find_cifar10_dir(path: str | os.PathLike) -> pathlib.Path | None:
    """Returns the directory holding the `.bin` files: `path` itself or `path/cifar-10-batches-bin`.

    Accepting the parent too lets one `LFE_DATA_DIR` point at a folder of several datasets.
    Returns None when neither holds `data_batch_1.bin`.
    """
    path = pathlib.Path(path).expanduser()
    for candidate in (path, path / FOLDER_NAME):
        if (candidate / TRAIN_FILES[0]).is_file():
            return candidate.resolve()
    return None


def read_batch_file(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Parses one `.bin` file into (uint8 [10000, 32, 32, 3], int32 [10000]), validating it.

    Raises FileNotFoundError if it is missing and ValueError, naming the file, if its size or a
    label byte is wrong, so that a truncated copy fails loudly instead of training on garbage.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR-10 binary file {path} does not exist")
    expected = RECORDS_PER_FILE * RECORD_BYTES
    size = path.stat().st_size
    if size != expected:
        raise ValueError(f"CIFAR-10 binary file {path} has {size} bytes, expected {expected}")
    records = np.fromfile(path, np.uint8).reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int32)
    bad = np.flatnonzero(labels >= NUM_CLASSES)
    if bad.size:
        raise ValueError(
            f"CIFAR-10 binary file {path} has label {labels[bad[0]]} at record {bad[0]}, "
            f"expected 0-{NUM_CLASSES - 1}"
        )
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def read_class_names(directory: pathlib.Path) -> tuple[str, ...]:
    """Class names from `batches.meta.txt` (one a line), or the standard ten when it is absent."""
    meta = directory / META_FILE
    if not meta.is_file():
        return DEFAULT_CLASS_NAMES
    names = tuple(line.strip() for line in meta.read_text().splitlines() if line.strip())
    if len(names) != NUM_CLASSES:
        raise ValueError(f"CIFAR-10 meta file {meta} has {len(names)} names, expected 10")
    return names


def read_cifar10_binary(data_dir: str | os.PathLike) -> CifarArrays:
    """Reads a CIFAR-10 binary directory (the folder itself or its parent), cached per process.

    Train is data_batch_1..5 concatenated in order, so index i is original training image i and
    the validation split (indices 45000-49999, `datasets.holdout_split`) is well defined.
    """
    directory = find_cifar10_dir(data_dir)
    if directory is None:
        raise FileNotFoundError(
            f"no CIFAR-10 binary directory at {data_dir}: expected {TRAIN_FILES[0]} in it "
            f"or in {FOLDER_NAME}/ under it"
        )
    return _read_cached(str(directory))


@functools.lru_cache(maxsize=4)
def _read_cached(directory: str) -> CifarArrays:
    root = pathlib.Path(directory)
    train = [read_batch_file(root / name) for name in TRAIN_FILES]
    test_images, test_labels = read_batch_file(root / TEST_FILE)
    arrays = CifarArrays(
        train_images=np.concatenate([x for x, _ in train]),
        train_labels=np.concatenate([y for _, y in train]),
        test_images=test_images,
        test_labels=test_labels,
        class_names=read_class_names(root),
    )
    for field in dataclasses.fields(CifarArrays):
        value = getattr(arrays, field.name)
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return arrays


def clear_cache() -> None:
    """Forgets parsed directories (for tests that rewrite files in place)."""
    _read_cached.cache_clear()
