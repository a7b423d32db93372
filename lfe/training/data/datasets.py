"""Datasets as plain numpy arrays, resolved by name through one registry of sources.

Why numpy in host memory: every dataset the paper uses (CIFAR-10/100, Cars196, Flowers102,
Caltech101) fits in RAM once images have one size, and a host array is the simplest thing to
batch deterministically and resume exactly (see `pipeline.py`). Augmentation happens on device
(`augment.py`), so a `Dataset` only ever holds the raw uint8 pixels.

Names: `cifar10` (local binary copy or tfds), `cifar100`, `cars196`, `oxford_flowers102`,
`caltech101` (tfds, with the paper's splits: `tfds_source.PAPER_SPLITS`), `tfds:<any tfds name>`,
`npz:<path to .npz>` and `arrays` (in memory, see `from_arrays`). Unknown names raise a
ValueError that lists these. Images of varying size (Cars196, Flowers102, Caltech101) are resized
once, on the host, to `image_size` when loaded (`tfds_source.resize_images`: by default the
centred square of the shorter side, `fit="crop"`; `fit="squash"` resizes the whole image, aspect
ratio not kept); `val_size=None`
means the dataset's default hold-out (5,000 for CIFAR, 0 for the three transfer datasets).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable
from typing import Any

import numpy as np

from lfe.training.data import cifar_binary
from lfe.training.data.tfds_source import (
    DEFAULT_VAL_SIZE,
    PAPER_VAL_SIZE,
    VARIABLE_SIZE,
    read_tfds,
    resize_images,
)

DATA_DIR_ENV = "LFE_DATA_DIR"
_SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Train/validation/test splits as uint8 NHWC images and int32 labels in [0, num_classes).

    Arrays are stored as read-only views: a `Dataset` is shared by every run in a process (the
    readers cache), so an in-place edit by one run must fail instead of leaking into the next.
    """

    name: str
    num_classes: int
    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.num_classes, int | np.integer) or self.num_classes < 1:
            raise ValueError(f"dataset {self.name}: num_classes must be a positive int, "
                             f"got {self.num_classes!r}")
        image_shape = None
        for split in _SPLITS:
            images = getattr(self, f"{split}_images")
            labels = getattr(self, f"{split}_labels")
            _check_split(self.name, split, images, labels, self.num_classes)
            if image_shape is not None and images.shape[1:] != image_shape:
                raise ValueError(f"dataset {self.name}: {split} images have shape "
                                 f"{images.shape[1:]}, train images {image_shape}")
            image_shape = images.shape[1:]
            object.__setattr__(self, f"{split}_images", _read_only(images))
            object.__setattr__(self, f"{split}_labels", _read_only(labels))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) shared by all splits."""
        return tuple(self.train_images.shape[1:])

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(images, labels) of "train", "val" or "test"."""
        if split not in _SPLITS:
            raise ValueError(f"unknown split {split!r}; available: {', '.join(_SPLITS)}")
        return getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")


def _check_split(name: str, split: str, images: Any, labels: Any, num_classes: int) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"dataset {name}: {split} images must be a uint8 NHWC numpy array, got "
                         f"{type(images).__name__} {getattr(images, 'dtype', '')} "
                         f"{getattr(images, 'shape', '')}")
    if not isinstance(labels, np.ndarray) or labels.dtype != np.int32 or labels.ndim != 1:
        raise ValueError(f"dataset {name}: {split} labels must be an int32 [N] numpy array, got "
                         f"{type(labels).__name__} {getattr(labels, 'dtype', '')} "
                         f"{getattr(labels, 'shape', '')}")
    if len(labels) != len(images):
        raise ValueError(f"dataset {name}: {split} has {len(images)} images but "
                         f"{len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"dataset {name}: {split} labels span [{labels.min()}, {labels.max()}], "
                         f"expected [0, {num_classes - 1}]")


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


def holdout_split(
    images: np.ndarray, labels: np.ndarray, val_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Splits off the *last* `val_size` examples as validation, without shuffling.

    Taking the tail deterministically is the CIFAR-10 protocol here (train = images 0-44,999,
    validation = 45,000-49,999), so fitness values are comparable across runs and machines.
    """
    if not 0 <= val_size < len(images):
        raise ValueError(f"val_size must be in [0, {len(images)}) for {len(images)} training "
                         f"examples, got {val_size}")
    cut = len(images) - val_size
    return images[:cut], labels[:cut], images[cut:], labels[cut:]


def _as_labels(name: str, key: str, labels: Any) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"dataset {name}: {key} must be a 1-D integer array, got "
                         f"{labels.dtype} {labels.shape}")
    return labels.astype(np.int32)


def _as_images(name: str, key: str, images: Any) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"dataset {name}: {key} must be uint8 NHWC, got "
                         f"{images.dtype} {images.shape}")
    return images


def from_arrays(
    x_train: Any, y_train: Any, x_test: Any, y_test: Any,
    x_val: Any = None, y_val: Any = None, *,
    name: str = "arrays", num_classes: int | None = None, val_size: int | None = None,
    class_names: tuple[str, ...] = (), image_size: int | tuple[int, int] | None = None,
    fit: str = "crop",
) -> Dataset:
    """Builds a `Dataset` from user arrays (uint8 NHWC images, integer labels).

    Without `x_val`/`y_val`, the last `val_size` (default 5,000) training examples become
    validation (as for CIFAR-10). `num_classes` defaults to 1 + the largest label seen in any
    split.
    """
    if (x_val is None) != (y_val is None):
        raise ValueError(f"dataset {name}: give both x_val and y_val or neither")
    x_train, x_test = _as_images(name, "x_train", x_train), _as_images(name, "x_test", x_test)
    y_train, y_test = _as_labels(name, "y_train", y_train), _as_labels(name, "y_test", y_test)
    if x_val is None:
        val_size = DEFAULT_VAL_SIZE if val_size is None else val_size
        x_train, y_train, x_val, y_val = holdout_split(x_train, y_train, val_size)
    else:
        x_val, y_val = _as_images(name, "x_val", x_val), _as_labels(name, "y_val", y_val)
    if num_classes is None:
        num_classes = 1 + max(int(y.max()) for y in (y_train, y_val, y_test) if len(y))
    if image_size is not None:
        x_train, x_val, x_test = (resize_images(x, image_size, fit)
                                  for x in (x_train, x_val, x_test))
    return Dataset(name, int(num_classes), x_train, y_train, x_val, y_val, x_test, y_test,
                   tuple(class_names))


# -- registry ----------------------------------------------------------------------------------

Source = Callable[..., Dataset]
SOURCES: dict[str, Source] = {}
_PREFIX_SOURCES = ("npz:<path>", "tfds:<name>")


def register_source(name: str) -> Callable[[Source], Source]:
    """Decorator adding a loader `fn(*, data_dir, val_size, image_size, **kwargs) -> Dataset`."""
    def register(fn: Source) -> Source:
        SOURCES[name] = fn
        return fn
    return register


def available() -> list[str]:
    """Every name `load` accepts (prefix forms shown with a placeholder)."""
    return sorted(SOURCES) + list(_PREFIX_SOURCES)


def load(
    name: str, *, data_dir: str | os.PathLike | None = None, val_size: int | None = None,
    image_size: int | tuple[int, int] | None = None, **kwargs: Any,
) -> Dataset:
    """Loads dataset `name` with train / validation / test splits (see the module docstring).

    `image_size` resizes every image on the host, once (needed for datasets of varying image
    size; device-side resizing belongs in `augment`). Extra kwargs go to the source.
    """
    if name.startswith("npz:"):
        return load_npz(name[len("npz:"):], val_size=val_size, image_size=image_size, **kwargs)
    if name.startswith("tfds:"):
        return load_tfds(name[len("tfds:"):], data_dir=data_dir, val_size=val_size,
                                     image_size=image_size, **kwargs)
    if name not in SOURCES:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(available())}")
    return SOURCES[name](data_dir=data_dir, val_size=val_size, image_size=image_size, **kwargs)


@register_source("cifar10")
def load_cifar10(
    *, data_dir: str | os.PathLike | None = None, val_size: int | None = None,
    image_size: int | tuple[int, int] | None = None, **tfds_kwargs: Any,
) -> Dataset:
    """CIFAR-10 from a local binary copy when `data_dir` or $LFE_DATA_DIR is set, else tfds.

    The binary path gives that split exactly: train is images 0-44,999 of the original order and
    validation images 45,000-49,999. A `data_dir` without the binary files but with a tfds
    `cifar10/` folder is used as tfds's data_dir (tfds stores its own example order, so that
    validation split differs from the binary one).
    """
    data_dir = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or None
    directory = None if data_dir is None else cifar_binary.find_cifar10_dir(data_dir)
    if directory is None:
        if data_dir is not None and not (pathlib.Path(data_dir) / "cifar10").is_dir():
            raise FileNotFoundError(
                f"no CIFAR-10 data at {data_dir}: expected {cifar_binary.TRAIN_FILES[0]} in it or "
                f"in {cifar_binary.FOLDER_NAME}/, or a tfds cifar10/ folder")
        try:
            return load_tfds("cifar10", data_dir=data_dir, val_size=val_size,
                             image_size=image_size, **tfds_kwargs)
        except OSError as e:  # offline: tfds gives up downloading after its retries
            raise OSError(f"no CIFAR-10 from tensorflow-datasets ({e}); set ${DATA_DIR_ENV} to "
                          f"a {cifar_binary.FOLDER_NAME} folder, the official binary version "
                          f"{cifar_binary.URL} unpacked") from None
    arrays = cifar_binary.read_cifar10_binary(directory)
    return from_arrays(arrays.train_images, arrays.train_labels, arrays.test_images,
                       arrays.test_labels, name="cifar10", num_classes=cifar_binary.NUM_CLASSES,
                       val_size=val_size, class_names=arrays.class_names, image_size=image_size)


def load_tfds(
    name: str, *, data_dir: str | os.PathLike | None = None, val_size: int | None = None,
    image_size: int | tuple[int, int] | None = None, **kwargs: Any,
) -> Dataset:
    """Any tfds dataset, read with `tfds_source.read_tfds` (kwargs: splits, reader, ...).

    The paper's datasets use `PAPER_SPLITS`; others their own validation split when they have
    one. Without a validation split the last `val_size` training examples are held out
    (default `PAPER_VAL_SIZE[name]`, else 5,000). `image_size` is required when image sizes
    vary (Cars196, Flowers102, Caltech101): every image is resized to it as it is read.
    """
    if image_size is None and name in VARIABLE_SIZE:
        raise ValueError(f"dataset {name} has images of varying size; set image_size (the "
                         "side to resize to when loading, e.g. the largest phase size)")
    if val_size is None:
        val_size = PAPER_VAL_SIZE.get(name, DEFAULT_VAL_SIZE)
    arrays = read_tfds(name, data_dir=data_dir, image_size=image_size, **kwargs)
    return from_arrays(**arrays, val_size=val_size)


def _register_tfds(name: str) -> None:
    def source(**kwargs: Any) -> Dataset:
        return load_tfds(name, **kwargs)
    source.__doc__ = f"`{name}` through tensorflow-datasets (see `load_tfds`)."
    register_source(name)(source)


for _name in ("cifar100", "cars196", "oxford_flowers102", "caltech101"):
    _register_tfds(_name)


@register_source("arrays")
def _load_arrays(*, data_dir: Any = None, **kwargs: Any) -> Dataset:
    """`load("arrays", x_train=..., y_train=..., x_test=..., y_test=...)` = `from_arrays`."""
    del data_dir  # in-memory data has no directory
    return from_arrays(**kwargs)


NPZ_REQUIRED = ("x_train", "y_train", "x_test", "y_test")


def load_npz(
    path: str | os.PathLike, *, val_size: int | None = None,
    image_size: int | tuple[int, int] | None = None, **kwargs: Any,
) -> Dataset:
    """Loads an `.npz` with x_train, y_train, x_test, y_test (and optionally x_val, y_val)."""
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"npz dataset {path} does not exist")
    with np.load(path, allow_pickle=False) as npz:
        missing = [key for key in NPZ_REQUIRED if key not in npz.files]
        if missing:
            raise ValueError(f"npz dataset {path} lacks {', '.join(missing)} "
                             f"(has {', '.join(npz.files)})")
        arrays = {key: npz[key] for key in npz.files if key in NPZ_REQUIRED + ("x_val", "y_val")}
    kwargs.setdefault("name", path.stem)
    return from_arrays(**arrays, val_size=val_size, image_size=image_size, **kwargs)
