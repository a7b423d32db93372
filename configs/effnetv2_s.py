r"""EfficientNetV2-S with progressive RandAugment (App. D): a losses x seeds comparison grid.

    python -m lfe.main --config=configs/effnetv2_s.py --workdir=runs/effnetv2_s

Default (Table 9, CIFAR-10): Table 12's four phases (128/160/192/224 px, dropout 0.1–0.4,
RandAugment 2 layers, magnitude 5/8/12/15) of 24,000 steps each (96,000 steps), batch 64, Adam
1e-3, linear warm-up 6,400 steps, held at 1e-3 for 12,400 steps, cosine to 0 at 96,000.
Validation is evaluated every 1,000 steps at the current phase's image size.
Recipe (the authors' code, ``lfe.core.protocol.EFFNETV2_RECIPES``): each training image is a
random square of its shorter side (on CIFAR the whole image: no crop) resized to the phase's
size; RandAugment's geometric ops mirror the image at its borders (no grey fill) and each of its
2 layers draws one of 17 branches, the 17th doing nothing; no stochastic depth
(``drop_path_rate`` 0). README "Protocols" lists every value and its source.
Variants:
  eliminate  Table 12's phases of 16,000 steps (64,000), no hold: the elimination protocol (§3.9)
  large      Table 13's phases (128/186/244/300 px, dropout 0.10–0.30), batch 32, otherwise the
             default schedule (Table 10; dataset cars196, which holds out no validation images:
             this grid's cells stop with one line saying so; train Tables 10–11 with
             ``configs/transfer_paper.py:table10``/``table11``, scored on the test split)
  finetune   from ImageNet weights (Table 11): 10,000 steps at 224 px, dropout 0.5, RandAugment
             15, batch 64, warm-up 500 steps (1 epoch), hold 1,500 (3 epochs), cosine to 0; the
             weights file (``lfe.training.models.pretrained`` format, see PRETRAINED below for the
             converter command) is ``--config.protocol.init_from``
  automl     the google/automl EfficientNetV2 recipe instead (lfe's before issue #21): a square
             of 5–100% of the image area, grey 128 fill, always one of 16 ops, drop_path_rate
             0.2 (``effnetv2_automl`` preset); combines with the others
  runlocal   a CPU smoke test of the default's structure: the ConvNet instead of EfficientNetV2-S
             (which takes minutes to compile on a CPU), two phases of 30 steps at 24/32 px,
             2 losses x 2 seeds in-process
Variants combine with commas where that makes sense (``large,runlocal``, ``automl,runlocal``).
"""

import functools

import ml_collections

from configs import common
from lfe.core import protocol as protocol_lib
from lfe.core.protocol import TABLE12, TABLE13, paper_phases
from lfe.experiments import defaults

VARIANTS = ("eliminate", "large", "finetune")  # exclusive; each combines with runlocal
# made once, offline, by: python -m lfe.training.models.pretrained convert --from=keras_h5 \
#   efficientnetv2-s.h5 weights/efficientnetv2-s-imagenet.npz   (the Keras ImageNet weights)
PRETRAINED = "weights/efficientnetv2-s-imagenet.npz"


def protocol(variant: str = "", recipe: str = "authors") -> ml_collections.ConfigDict:
    """The App. D protocol of `variant` ("" = Table 9's CIFAR setting) with `recipe`'s
    augmentation and stochastic depth (``lfe.core.protocol.EFFNETV2_RECIPES``)."""
    build = functools.partial(protocol_lib.effnetv2_protocol, recipe=recipe)
    if variant == "eliminate":
        return build(paper_phases(TABLE12, 16000), total_steps=64000, eval_every=1000)
    if variant == "large":
        return build(paper_phases(TABLE13, 24000), total_steps=96000, hold_steps=12400,
                     batch_size=32, eval_every=1000)
    if variant == "finetune":
        p = build([{"steps": 10000, "image_size": 224, "dropout": 0.5,
                    "randaug_magnitude": 15.0}],
                  total_steps=10000, hold_steps=1500, eval_every=500, init_from=PRETRAINED)
        p.warmup_steps = 500
        return p
    return build(paper_phases(TABLE12, 24000), total_steps=96000, hold_steps=12400,
                 eval_every=1000)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = common.parse_arg(arg, __file__, protocol=common.one_of(*VARIANTS, default=""),
                               automl=False, runlocal=False)
    c = defaults.compare()
    c.title = "EfficientNetV2-S, progressive RandAugment (App. D)"
    c.losses = "cross_entropy,neuroloss1,neuroloss2,neuroloss3"
    c.seeds = 5
    c.dataset = "cars196" if variant.protocol in ("large", "finetune") else "cifar10"
    c.protocol = protocol(variant.protocol, "automl" if variant.automl else "authors")
    c.command = "python -m lfe.main --config=configs/effnetv2_s.py" + (
        f":{arg}" if arg else "") + " --workdir=runs/effnetv2_s"
    if variant.runlocal:
        p = c.protocol
        p.model = "convnet"
        p.model_kwargs = ml_collections.ConfigDict()  # no EfficientNetV2 fields
        p.phases = [{**ph, "steps": 30, "image_size": size}  # the first two (finetune: one)
                    for ph, size in zip(p.phases, (24, 32), strict=False)]
        p.steps = p.total_steps = 30 * len(p.phases)
        p.warmup_steps, p.hold_steps = 10, 0
        if p.get("init_from"):
            p.init_from = ""  # the ConvNet has no ImageNet weights
        p.batch_size, p.eval_every, p.eval_batch_size = 32, 30, 1000
        c.losses, c.seeds, c.executor = "cross_entropy,neuroloss3", 2, "inprocess"
    return c
