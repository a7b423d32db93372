r"""WideResNet-28-10 on CIFAR (App. D): a losses x seeds comparison grid.

    python -m lfe.main --config=configs/wideresnet.py --workdir=runs/wideresnet

SGD with Nesterov momentum 0.9, learning rate warmed up linearly to 0.1 over 1,000 steps then
cosine to 0, batch 128, 96,186 steps (paper, App. D). Weight decay (the paper states none): the
reference code the paper says its WideResNet and SE-ResNeXt derive from (Li 2017,
BIGBALLON/cifar-10-cnn) puts an L2 penalty of 5e-4 on the kernels into the loss, i.e.
1e-3 · w added to the kernels' gradients and no decay of biases or BatchNorm: here
``weight_decay=1e-3, weight_decay_on="kernels"`` (Zagoruyko & Komodakis' own 5e-4 on every
parameter, lfe's before issue #21: ``--config.protocol.weight_decay=5e-4
--config.protocol.weight_decay_on=all``). Augmentation: resize to 40x40, random crop 32x32,
cutout 8x8, horizontal flip (the "wideresnet" preset; per-channel mean/std normalisation
assumed). Validation every 1,000 steps. README "Protocols" lists every value and its source.
Variant ``:runlocal``: a CPU smoke test — WRN-10-1 (same code, depth 10, width 1), 60 steps,
batch 32, 2 losses x 2 seeds in-process.
"""

import ml_collections

from configs import common
from lfe.core import protocol as protocol_lib
from lfe.experiments import defaults

WEIGHT_DECAY = 1e-3  # the reference's L2 penalty 5e-4 on kernels, as a gradient term (2 x 5e-4)


def protocol(model: str = "wideresnet28_10", **model_kwargs) -> ml_collections.ConfigDict:
    """The App. D protocol of WideResNet and SE-ResNeXt (``model_kwargs``: the model's fields)."""
    return protocol_lib.training_protocol(
        model=model, model_kwargs=ml_collections.ConfigDict(model_kwargs), augment="wideresnet",
        optimizer="sgd_nesterov", momentum=0.9, learning_rate=0.1, schedule="warmup_cosine",
        warmup_steps=1000, hold_steps=0, total_steps=96186, steps=96186, batch_size=128,
        weight_decay=WEIGHT_DECAY, weight_decay_on="kernels", eval_every=1000,
        checkpoint_every=protocol_lib.CHECKPOINT_EVERY)


def grid(title: str, model: str, local_kwargs: dict, arg: str | None, name: str,
         **model_kwargs):
    """A comparison grid on `protocol(model, **model_kwargs)`; `runlocal` shrinks it (the
    model's fields become `local_kwargs`)."""
    variant = common.parse_arg(arg, f"configs/{name}.py", runlocal=False)
    c = defaults.compare()
    c.title = title
    c.losses = "cross_entropy,neuroloss1,neuroloss2,neuroloss3"
    c.seeds = 5
    c.protocol = protocol(model, **model_kwargs)
    c.command = f"python -m lfe.main --config=configs/{name}.py --workdir=runs/{name}"
    if variant.runlocal:
        p = c.protocol
        p.model_kwargs = ml_collections.ConfigDict(local_kwargs)
        p.steps, p.total_steps, p.warmup_steps = 60, 60, 10
        p.batch_size, p.eval_every, p.eval_batch_size = 32, 30, 1000
        c.losses, c.seeds, c.executor = "cross_entropy,neuroloss3", 2, "inprocess"
    return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return grid("WideResNet-28-10 on CIFAR (App. D)", "wideresnet28_10",
                {"depth": 10, "width": 1}, arg, "wideresnet")
