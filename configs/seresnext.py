r"""SE-ResNeXt-29 (4x64d) on CIFAR (App. D): a losses x seeds comparison grid.

    python -m lfe.main --config=configs/seresnext.py --workdir=runs/seresnext

The WideResNet protocol (``configs/wideresnet.py``): SGD-Nesterov 0.9, warm-up to 0.1 over 1,000
steps then cosine, batch 128, 96,186 steps, the reference code's L2 5e-4 on kernels (1e-3 · w on
the kernels' gradients), resize 40 / crop 32 / cutout 8 / flip. Layout: the reference code's
(BIGBALLON/cifar-10-cnn, which the paper says its SE-ResNeXt derives from), a projection
shortcut in every block (``project_every_block=True``, 20.8M parameters: the paper's "20
million"; the standard layout has 18.1M: ``--config.protocol.model_kwargs.project_every_block=
false``). Variant ``:runlocal``: a CPU smoke test — SE-ResNeXt with one block per stage,
cardinality 2, base width 4, 60 steps, batch 32, 2 losses x 2 seeds in-process.
"""

import ml_collections

from configs import wideresnet


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return wideresnet.grid(
        "SE-ResNeXt-29 (4x64d) on CIFAR (App. D)", "seresnext29",
        {"cardinality": 2, "base_width": 4, "blocks_per_stage": 1, "stem_features": 16,
         "se_reduction": 4, "project_every_block": True}, arg, "seresnext",
        project_every_block=True)
