r"""Visual check of RandAugment, the EffNetV2 train pipeline and CutMix on real CIFAR-10.

    python -m lfe.main --config=configs/augment_grid.py --workdir=runs/augment_grid

Writes PNG grids (see lfe/data/grid.py) of the first `num_images` test images, resized to
`image_size` (Table 12's phase-1 size), at the RandAugment magnitudes of `magnitudes`.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    common.parse_arg(arg, __file__)  # no variants
    c = ml_collections.ConfigDict()
    c.mode = "augment_grid"
    c.dataset = "cifar10"
    c.data_dir = ""  # "" = $LFE_DATA_DIR, else tensorflow-datasets
    c.split = "test"
    c.num_images = 8
    c.image_size = 128
    c.magnitudes = (0.0, 5.0, 10.0, 15.0)
    c.num_layers = 2
    c.cutmix_alpha = 1.0
    c.seed = 0
    return c
