r"""DavidNet (the DAWNBench ResNet-9) on CIFAR (App. D): a losses x seeds comparison grid.

    python -m lfe.main --config=configs/davidnet.py --workdir=runs/davidnet
    python -m lfe.main --config=configs/davidnet.py:cutmix --workdir=runs/davidnet_cutmix

SGD with Nesterov momentum 0.9, learning rate warmed up linearly to 0.4 over 1,176 steps then
linearly to 0, batch 512, 30 epochs of 98 steps (2,940 steps), validation every epoch.
Default: reflect-pad 4 random crop, horizontal flip, cutout 8x8, weight decay 0.512 "applied to
the gradients". The paper's value is in the DAWNBench code's sum-over-batch convention
(gradient of the summed loss + wd·w, learning rate divided by the batch size), so on this
trainer's batch-mean loss it is 0.512 / 512 = 1e-3. Variant ``:cutmix``: CutMix (alpha 1)
instead of cutout, weight decay 0.0256 (/ 512 = 5e-5); the loss sees the mixed targets.
Variant ``runlocal`` (also ``cutmix,runlocal``): a CPU smoke test — DavidNet with widths
8/16/32/64, 60 steps, batch 32, 2 losses x 2 seeds in-process.
"""

import ml_collections

from configs import common
from lfe.core import protocol as protocol_lib
from lfe.experiments import defaults

BATCH_SIZE = 512


def protocol(variant: str = "") -> ml_collections.ConfigDict:
    """The App. D protocol: "" (cutout) or "cutmix"."""
    cutmix = variant == "cutmix"
    return protocol_lib.training_protocol(
        model="davidnet", augment="davidnet_cutmix" if cutmix else "davidnet_cutout",
        optimizer="sgd_nesterov", momentum=0.9, learning_rate=0.4, schedule="warmup_linear",
        warmup_steps=1176, total_steps=2940, steps=2940, batch_size=BATCH_SIZE,
        weight_decay=(0.0256 if cutmix else 0.512) / BATCH_SIZE, eval_every=98,
        checkpoint_every=protocol_lib.CHECKPOINT_EVERY)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = common.parse_arg(arg, __file__, cutmix=False, runlocal=False)
    c = defaults.compare()
    c.title = f"DavidNet on CIFAR, {'CutMix' if variant.cutmix else 'cutout'} (App. D)"
    c.losses = "cross_entropy,neuroloss1,neuroloss2,neuroloss3"
    c.seeds = 30
    c.protocol = protocol("cutmix" if variant.cutmix else "")
    c.command = ("python -m lfe.main --config=configs/davidnet.py" + (f":{arg}" if arg else "")
                 + f" --workdir=runs/davidnet{'_cutmix' if variant.cutmix else ''}")
    if variant.runlocal:
        p = c.protocol
        p.model_kwargs = ml_collections.ConfigDict({"features": (8, 16, 32, 64)})
        p.steps, p.total_steps, p.warmup_steps = 60, 60, 20
        p.batch_size, p.eval_every, p.eval_batch_size = 32, 30, 1000
        c.losses, c.seeds, c.executor = "cross_entropy,neuroloss3", 2, "inprocess"
    return c
