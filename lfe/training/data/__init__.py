"""Input pipeline: datasets as host arrays, deterministic batching, device-side augmentation.

    ds = data.load("cifar10", data_dir="/path/to/cifar-10-batches-bin")   # or $LFE_DATA_DIR
    for batch in data.prefetch(data.train_batches(ds.train_images, ds.train_labels, 128, seed)):
        x = data.preprocess(rng, batch["image"], train=True, cfg=data.PRESETS["unit"])
"""

from lfe.training.data import randaugment  # the module (importing it registers the op)
from lfe.training.data.augment import (
    OPS,
    PRESETS,
    box_mask,
    crop_at,
    cutmix,
    cutout,
    flip_left_right,
    get_op,
    make_preprocess_fn,
    normalize,
    parse_steps,
    preprocess,
    preprocess_batch,
    random_crop,
    random_square_crop,
    register_op,
    resize,
    resize_then_crop,
    smooth_labels,
)
from lfe.training.data.cifar_binary import CifarArrays, find_cifar10_dir, read_cifar10_binary
from lfe.training.data.datasets import (
    SOURCES,
    Dataset,
    available,
    from_arrays,
    holdout_split,
    load,
    load_cifar10,
    load_npz,
    load_tfds,
    register_source,
)
from lfe.training.data.pipeline import (
    Prefetch,
    epoch_permutation,
    eval_batches,
    num_eval_batches,
    prefetch,
    steps_per_epoch,
    train_batches,
)
from lfe.training.data.tfds_source import resize_images

__all__ = [
    "OPS", "PRESETS", "SOURCES", "CifarArrays", "Dataset", "Prefetch", "available", "box_mask",
    "crop_at", "cutmix", "cutout", "epoch_permutation", "eval_batches", "find_cifar10_dir",
    "flip_left_right", "from_arrays", "get_op", "holdout_split", "load", "load_cifar10",
    "load_npz", "load_tfds", "make_preprocess_fn", "normalize", "num_eval_batches", "parse_steps",
    "prefetch", "preprocess", "preprocess_batch", "random_crop", "random_square_crop",
    "randaugment", "read_cifar10_binary",
    "register_op", "register_source", "resize", "resize_images", "resize_then_crop",
    "smooth_labels", "steps_per_epoch", "train_batches",
]
