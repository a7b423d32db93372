r"""The loss function elimination protocol (§3.9) on an evolution run directory.

    python -m lfe.main --config=configs/eliminate.py --workdir=runs/eliminate \
        --config.source=runs/surrogate

The best 150 losses of the run are trained on EfficientNetV2-S phase 1 (16,000 steps of Table 12:
128 px, dropout 0.1, RandAugment 5); the best 50 are retrained from scratch on phases 1–2, the best
25 on phases 1–3 and the best 10 on all four (64,000 steps). Adam 1e-3, batch 64, linear warm-up
6,400 steps then cosine to 0 over the 64,000-step horizon in every stage (App. D); losses compared
by CIFAR-10 validation accuracy. Rerunning the command resumes: finished cells are never
retrained. Finalists land in ``<workdir>/finalists/`` as loss files.

Variant ``:runlocal``: a CPU smoke test — the ConvNet, the best 4 → 2 → 1 over three phases of 40
steps with growing dropout, in-process.
"""

import ml_collections

from configs import common
from lfe.core import protocol as protocol_lib
from lfe.experiments import defaults


def paper_protocol() -> ml_collections.ConfigDict:
    """EfficientNetV2-S with Table 12's progressive phases, 16,000 steps each (App. D)."""
    return protocol_lib.training_protocol(
        model="efficientnetv2_s", augment="effnetv2", batch_size=64, learning_rate=1e-3,
        warmup_steps=6400, total_steps=64000, eval_every=1000,  # steps: the phases' sum
        phases=protocol_lib.paper_phases(protocol_lib.TABLE12, 16000))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = common.parse_arg(arg, __file__, runlocal=False)
    c = defaults.eliminate()
    c.protocol = paper_protocol()
    if variant.runlocal:
        c.keep = (4, 2, 1)
        c.executor = "inprocess"
        c.protocol = protocol_lib.training_protocol(
            total_steps=120, warmup_steps=20, eval_every=40, eval_batch_size=1000,
            phases=[{"steps": 40, "dropout": d} for d in (0.1, 0.2, 0.3)])
    return c
