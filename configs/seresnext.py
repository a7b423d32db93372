r"""SE-ResNeXt-29 (4x64d) on CIFAR (App. D): a losses x seeds comparison grid.

    python -m lfe.main --config=configs/seresnext.py --workdir=runs/seresnext

The WideResNet protocol (``configs/wideresnet.py``): SGD-Nesterov 0.9, warm-up to 0.1 over 1,000
steps then cosine, batch 128, 96,186 steps, weight decay 5e-4, resize 40 / crop 32 / cutout 8 /
flip. Variant ``:runlocal``: a CPU smoke test — SE-ResNeXt with one block per stage, cardinality
2, base width 4, 60 steps, batch 32, 2 losses x 2 seeds in-process.
"""

import ml_collections

from configs import wideresnet


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return wideresnet.grid(
        "SE-ResNeXt-29 (4x64d) on CIFAR (App. D)", "seresnext29",
        {"cardinality": 2, "base_width": 4, "blocks_per_stage": 1, "stem_features": 16,
         "se_reduction": 4}, arg, "seresnext")
