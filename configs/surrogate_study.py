r"""Table 3: how well does a cheap protocol rank losses like the full one? (§3.5)

    python -m lfe.main --config=configs/surrogate_study.py --workdir=runs/surrogate_study

Every loss is trained under each cheap setting — ConvNet and ResNet9V2 for 8,000 steps at 32 px
without RandAugment (row "-"), and ConvNet, ResNet9V2 and EfficientNetV2-S for 8,000 steps of
progressive phase 1 (RandAugment magnitude 5) at 32–112 px — and under the reference: the full
EfficientNetV2-S schedule (Table 12, 4 × 16,000 steps). Each cell of the table is Kendall's τ-b
between a setting's ranking of the losses (best validation accuracy, mean over seeds) and the
reference's. ``losses`` may list genome JSON files (e.g. an evolution run's best genomes; the
paper used the best 30 of its ResNet9V2 run). Rerunning resumes; every training is a cell.

Variant ``:runlocal``: 4 losses, ConvNet only, 100-step settings at 32/48 px vs a 300-step
reference, in-process.
"""

import ml_collections

from configs import common, eliminate
from lfe.core import protocol as protocol_lib
from lfe.experiments import defaults

SIZES = (32, 48, 64, 80, 96, 112)
# every library loss once, NeuroLoss1 as the library ships it (neuroloss1 = neuroloss1_reading;
# not the printed formula or the other reading neuroloss1_h1); tests/test_configs.py
# checks this against lfe.training.losses.available(), which imports JAX
LOSSES = ("bessel_loss,cross_entropy,honorable1,honorable2,honorable3,honorable4,honorable5,"
          "honorable6,honorable7,neuroloss1_reading,neuroloss2,neuroloss3")


def _randaug(size: int, normalize: str) -> dict:
    return {"train": [("random_square_crop", {"size": size}),
                      ("randaugment", {"num_layers": 2, "magnitude": 5.0}),
                      ("normalize", {"mode": normalize})],
            "eval": [("resize", {"size": size}), ("normalize", {"mode": normalize})]}


def _small(model: str, steps: int, size: int | None) -> dict:
    """ConvNet / ResNet9V2: the 8,000-step protocol of §3.6, optionally RandAugment at `size`."""
    p = protocol_lib.training_protocol(model=model, steps=steps, total_steps=steps,
                                  warmup_steps=steps // 10).to_dict()
    if size is not None:
        p["augment"] = _randaug(size, "unit")
        p["phases"] = [{"steps": steps, "image_size": size, "randaug_magnitude": 5.0}]
    return p


def _effnet(steps: int, size: int) -> dict:
    """EfficientNetV2-S phase 1 at `size`, on the 64,000-step schedule, stopped at `steps`."""
    p = eliminate.paper_protocol().to_dict()
    p["steps"], p["phases"] = steps, [{**p["phases"][0], "steps": steps, "image_size": size}]
    return p


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = common.parse_arg(arg, __file__, runlocal=False)
    c = defaults.transfer()
    c.title = "Table 3: Kendall's τ between cheap protocols and full EfficientNetV2-S"
    c.losses = LOSSES
    c.seeds = 1
    c.metric = "best"
    c.p_values = ()
    c.layout = ml_collections.ConfigDict({"kind": "tau", "rows": ("augmentation",),
                                          "columns": ("architecture",), "split": (),
                                          "order": ("-", "convnet", "resnet9v2")})
    val = {"train_split": "train", "eval_split": "val"}
    settings = defaults.grid({"convnet": _small("convnet", 8000, None),
                              "resnet9v2": _small("resnet9v2", 8000, None)},
                             ["cifar10"], {"-": {}}, **val)
    for size in SIZES:
        settings.update(defaults.grid(
            {"convnet": _small("convnet", 8000, size), "resnet9v2": _small("resnet9v2", 8000, size),
             "efficientnetv2_s": _effnet(8000, size)}, ["cifar10"], {str(size): {}}, **val))
    settings["reference"] = defaults.setting("efficientnetv2_s", "cifar10", "full",
                                             eliminate.paper_protocol(), **val)
    c.settings, c.reference = settings, "reference"
    if variant.runlocal:
        c.losses = "cross_entropy,neuroloss2,neuroloss3,bessel_loss"
        c.executor = "inprocess"
        settings = defaults.grid({"convnet": _small("convnet", 100, None)}, ["cifar10"],
                                 {"-": {}}, **val)
        for size in (32, 48):
            settings.update(defaults.grid({"convnet": _small("convnet", 100, size)},
                                          ["cifar10"], {str(size): {}}, **val))
        settings["reference"] = defaults.setting("convnet", "cifar10", "full",
                                                 _small("convnet", 300, None), **val)
        c.settings = settings
    return c

