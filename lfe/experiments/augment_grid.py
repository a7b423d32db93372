"""Visual check of the augmentations: PNG grids of real images a person can look at.

    python -m lfe.main --config=configs/augment_grid.py --workdir=DIR

writes to DIR:
  randaugment_magnitudes.png   rows: the original, then RandAugment (2 layers) at each magnitude;
                               columns: the images
  randaugment_ops.png          rows: the 16 ops; columns: magnitudes (first image)
  randaugment_op_<Op>.png      one per op; rows: magnitudes; columns: the images
  effnetv2_train.png           rows: the original, then the preset's train pipeline (random
                               square crop of the shorter side + RandAugment, before
                               normalisation) with 3 seeds
  cutmix.png                   CutMix pairs, captioned with the mixed target ("cat .62 dog .38")

Images are resized to `image_size` first (RandAugment's translate and cutout constants are in
pixels, so on 32-px CIFAR images a translation at magnitude >= 5 moves the content out of the
frame). The EffNetV2 row uses the `effnetv2` preset (the authors' recipe: no crop on CIFAR,
reflected borders; see README "Protocols").
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from lfe.training.data import augment, randaugment
from lfe.training.data.datasets import load

PAD = 4  # pixels between tiles
LABEL_WIDTH = 96  # left margin for row labels
LABEL_HEIGHT = 14  # top margin for column labels, and the caption strip under tiles


@dataclasses.dataclass(frozen=True)
class Grid:
    """Tiles uint8 [R, C, H, W, 3] with row labels, optional column labels and captions."""

    tiles: np.ndarray
    row_labels: Sequence[str]
    col_labels: Sequence[str] = ()
    captions: Sequence[Sequence[str]] = ()  # [R][C] text under each tile


def grid_size(rows: int, cols: int, height: int, width: int, *, col_labels: bool,
              captions: bool) -> tuple[int, int]:
    """(width, height) in pixels of the PNG that `render` makes."""
    cell_h = height + (LABEL_HEIGHT if captions else 0) + PAD
    top = LABEL_HEIGHT if col_labels else 0
    return LABEL_WIDTH + cols * (width + PAD) + PAD, top + rows * cell_h + PAD


def render(grid: Grid) -> Image.Image:
    rows, cols, height, width, _ = grid.tiles.shape
    size = grid_size(rows, cols, height, width, col_labels=bool(grid.col_labels),
                     captions=bool(grid.captions))
    canvas = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    top = LABEL_HEIGHT if grid.col_labels else 0
    cell_h = height + (LABEL_HEIGHT if grid.captions else 0) + PAD
    for c, label in enumerate(grid.col_labels):
        draw.text((LABEL_WIDTH + c * (width + PAD) + PAD, 1), label, fill=(0, 0, 0))
    for r in range(rows):
        y = top + r * cell_h + PAD
        draw.text((2, y + height // 2 - 5), grid.row_labels[r], fill=(0, 0, 0))
        for c in range(cols):
            x = LABEL_WIDTH + c * (width + PAD) + PAD
            canvas.paste(Image.fromarray(grid.tiles[r, c]), (x, y))
            if grid.captions:
                draw.text((x, y + height + 1), grid.captions[r][c], fill=(0, 0, 0))
    return canvas


def _uint8(images: jax.Array) -> np.ndarray:
    return np.asarray(jnp.clip(jnp.round(images), 0, 255)).astype(np.uint8)


def magnitude_grid(rng: jax.Array, images: jax.Array, magnitudes: Sequence[float],
                   num_layers: int) -> Grid:
    fn = jax.jit(lambda k, x, m: randaugment.randaugment(k, x, num_layers=num_layers,
                                                         magnitude=m))
    rows = [_uint8(images)] + [_uint8(fn(jax.random.fold_in(rng, i), images, jnp.float32(m)))
                               for i, m in enumerate(magnitudes)]
    labels = ["original"] + [f"RandAug m={m:g}" for m in magnitudes]
    return Grid(np.stack(rows), labels, [f"#{i}" for i in range(len(images))])


def op_grids(rng: jax.Array, images: jax.Array,
             magnitudes: Sequence[float]) -> tuple[Grid, dict[str, Grid]]:
    """The overview (rows: ops, columns: magnitudes, first image) and one grid per op."""
    fn = jax.jit(lambda i, k, x, m: randaugment.apply_op_index(i, k, x, magnitude=m))
    per_op = {}
    for index, name in enumerate(randaugment.OP_NAMES):
        rows = [_uint8(fn(index, jax.random.fold_in(rng, index), images, jnp.float32(m)))
                for m in magnitudes]
        per_op[name] = Grid(np.stack(rows), [f"{name} m={m:g}" for m in magnitudes],
                            [f"#{i}" for i in range(len(images))])
    overview = np.stack([per_op[name].tiles[:, 0] for name in randaugment.OP_NAMES])
    return Grid(overview, list(randaugment.OP_NAMES), [f"m={m:g}" for m in magnitudes]), per_op


def pipeline_grid(rng: jax.Array, images: jax.Array, steps: Sequence[Any], seeds: int) -> Grid:
    """The original row, then `steps` (a train pipeline) applied with `seeds` different keys."""
    apply = jax.jit(augment.make_preprocess_fn({"train": steps, "eval": []}, train=True))
    outs = [_uint8(apply(jax.random.fold_in(rng, s), {"image": images})["image"])
            for s in range(seeds)]
    size = outs[0].shape[1:3]
    original = _uint8(augment.resize(rng, images, size=size))
    return Grid(np.stack([original] + outs), ["original"] + [f"seed {s}" for s in range(seeds)],
                [f"#{i}" for i in range(len(images))])


def cutmix_grid(rng: jax.Array, images: jax.Array, labels: np.ndarray,
                class_names: Sequence[str], alpha: float, rows: int) -> Grid:
    """Rows of CutMix outputs of the same batch (different keys), captioned with the target."""
    num_classes = len(class_names)
    batch = {"image": images, "target": jax.nn.one_hot(labels, num_classes)}
    fn = jax.jit(lambda k: augment.cutmix(k, batch, alpha=alpha))
    tiles, captions = [], []
    for r in range(rows):
        out = fn(jax.random.fold_in(rng, r))
        tiles.append(_uint8(out["image"]))
        captions.append([_caption(t, class_names) for t in np.asarray(out["target"])])
    return Grid(np.stack(tiles), [f"CutMix a={alpha:g} #{r}" for r in range(rows)],
                [f"{class_names[int(y)]}" for y in labels], captions)


def _caption(target: np.ndarray, class_names: Sequence[str]) -> str:
    order = np.argsort(-target)[:2]
    parts = [f"{class_names[i][:5]} {target[i]:.2f}".replace("0.", ".") for i in order
             if target[i] > 0.005]
    return " ".join(parts)


def write_all(workdir: str | pathlib.Path, images: np.ndarray, labels: np.ndarray,
              class_names: Sequence[str], *, image_size: int, magnitudes: Sequence[float],
              num_layers: int = 2, cutmix_alpha: float = 1.0, seed: int = 0) -> list[pathlib.Path]:
    """Writes the PNGs listed in the module docstring; returns their paths."""
    out = pathlib.Path(workdir)
    out.mkdir(parents=True, exist_ok=True)
    rng = jax.random.key(seed)
    raw = jnp.asarray(images, jnp.float32)
    resized = augment.resize(rng, raw, size=image_size)
    overview, per_op = op_grids(jax.random.fold_in(rng, 1), resized, magnitudes)
    preset = [(name, kwargs) for name, kwargs in augment.parse_steps(
        augment.PRESETS["effnetv2"]["train"]) if name != "normalize"]
    preset = [(name, {**kwargs, "size": image_size} if name == "random_square_crop" else kwargs)
              for name, kwargs in preset]
    grids = {
        "randaugment_magnitudes": magnitude_grid(jax.random.fold_in(rng, 0), resized,
                                                 magnitudes, num_layers),
        "randaugment_ops": overview,
        **{f"randaugment_op_{name}": grid for name, grid in per_op.items()},
        "effnetv2_train": pipeline_grid(jax.random.fold_in(rng, 2), raw, preset, seeds=3),
        "cutmix": cutmix_grid(jax.random.fold_in(rng, 3), resized, labels, class_names,
                              cutmix_alpha, rows=3),
    }
    paths = []
    for name, grid in grids.items():
        path = out / f"{name}.png"
        render(grid).save(path)
        paths.append(path)
    return paths


def run(config: Any, workdir: str) -> list[pathlib.Path]:
    """Mode "augment_grid": the first `num_images` test images of `config.dataset`."""
    dataset = load(config.dataset, data_dir=config.get("data_dir") or None)
    images, labels = dataset.split(config.get("split", "test"))
    count = int(config.num_images)
    class_names = dataset.class_names or tuple(str(i) for i in range(dataset.num_classes))
    paths = write_all(workdir, images[:count], labels[:count], class_names,
                      image_size=int(config.image_size),
                      magnitudes=[float(m) for m in config.magnitudes],
                      num_layers=int(config.num_layers), cutmix_alpha=float(config.cutmix_alpha),
                      seed=int(config.seed))
    print(f"wrote {len(paths)} PNGs to {workdir}")
    return paths
