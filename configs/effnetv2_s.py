r"""EfficientNetV2-S with progressive RandAugment (App. D): a losses x seeds comparison grid.

    python -m lfe.main --config=configs/effnetv2_s.py --workdir=runs/effnetv2_s

Default (Table 9, CIFAR-10): Table 12's four phases (128/160/192/224 px, dropout 0.1–0.4,
RandAugment 2 layers, magnitude 5/8/12/15) of 24,000 steps each (96,000 steps), batch 64, Adam
1e-3, linear warm-up 6,400 steps, held at 1e-3 for 12,400 steps, cosine to 0 at 96,000.
Validation is evaluated every 1,000 steps at the current phase's image size.
Variants:
  eliminate  Table 12's phases of 16,000 steps (64,000), no hold: the elimination protocol (§3.9)
  large      Table 13's phases (128/186/244/300 px, dropout 0.10–0.30), batch 32, otherwise the
             default schedule (Table 10; dataset cars196)
  finetune   from ImageNet weights (Table 11): 10,000 steps at 224 px, dropout 0.5, RandAugment
             15, batch 64, warm-up 500 steps (1 epoch), hold 1,500 (3 epochs), cosine to 0; the
             weights file (``lfe.training.models.pretrained`` format, see PRETRAINED below for the
             converter command) is ``--config.protocol.init_from``
  runlocal   a CPU smoke test of the default's structure: the ConvNet instead of EfficientNetV2-S
             (which takes minutes to compile on a CPU), two phases of 30 steps at 24/32 px,
             2 losses x 2 seeds in-process
Variants combine with commas where that makes sense (``large,runlocal``).
"""

import ml_collections

from configs import common
from lfe.core import protocol as protocol_lib
from lfe.core.protocol import TABLE12, TABLE13, paper_phases
from lfe.experiments import defaults

VARIANTS = ("eliminate", "large", "finetune")  # exclusive; each combines with runlocal
# made once, offline, by: python -m lfe.training.models.pretrained convert --from=keras_h5 \
#   efficientnetv2-s.h5 weights/efficientnetv2-s-imagenet.npz   (the Keras ImageNet weights)
PRETRAINED = "weights/efficientnetv2-s-imagenet.npz"


def protocol(variant: str = "") -> ml_collections.ConfigDict:
    """The App. D protocol of `variant` ("" = Table 9's CIFAR setting)."""
    if variant == "eliminate":
        return protocol_lib.effnetv2_protocol(paper_phases(TABLE12, 16000), total_steps=64000,
                                              eval_every=1000)
    if variant == "large":
        return protocol_lib.effnetv2_protocol(paper_phases(TABLE13, 24000), total_steps=96000,
                                              hold_steps=12400, batch_size=32, eval_every=1000)
    if variant == "finetune":
        p = protocol_lib.effnetv2_protocol(
            [{"steps": 10000, "image_size": 224, "dropout": 0.5, "randaug_magnitude": 15.0}],
            total_steps=10000, hold_steps=1500, eval_every=500, init_from=PRETRAINED)
        p.warmup_steps = 500
        return p
    return protocol_lib.effnetv2_protocol(paper_phases(TABLE12, 24000), total_steps=96000,
                                          hold_steps=12400, eval_every=1000)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = common.parse_arg(arg, __file__, protocol=common.one_of(*VARIANTS, default=""),
                               runlocal=False)
    c = defaults.compare()
    c.title = "EfficientNetV2-S, progressive RandAugment (App. D)"
    c.losses = "cross_entropy,neuroloss1,neuroloss2,neuroloss3"
    c.seeds = 5
    c.dataset = "cars196" if variant.protocol in ("large", "finetune") else "cifar10"
    c.protocol = protocol(variant.protocol)
    c.command = "python -m lfe.main --config=configs/effnetv2_s.py" + (
        f":{arg}" if arg else "") + " --workdir=runs/effnetv2_s"
    if variant.runlocal:
        p = c.protocol
        p.model = "convnet"
        p.phases = [{**ph, "steps": 30, "image_size": size}  # the first two (finetune: one)
                    for ph, size in zip(p.phases, (24, 32), strict=False)]
        p.steps = p.total_steps = 30 * len(p.phases)
        p.warmup_steps, p.hold_steps = 10, 0
        if p.get("init_from"):
            p.init_from = ""  # the ConvNet has no ImageNet weights
        p.batch_size, p.eval_every, p.eval_batch_size = 32, 30, 1000
        c.losses, c.seeds, c.executor = "cross_entropy,neuroloss3", 2, "inprocess"
    return c
