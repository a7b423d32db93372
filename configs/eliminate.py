r"""The loss function elimination protocol (§3.9) on an evolution run directory.

    python -m lfe.main --config=configs/eliminate.py --workdir=runs/eliminate \
        --config.source=runs/surrogate

The best 150 losses of the run (scored by its surrogate: ``candidates_stage="surrogate"``; the
initial population's ConvNet scores are another scale) are trained on EfficientNetV2-S phase 1
(16,000 steps of Table 12: 128 px, dropout 0.1, RandAugment 5); the best 50 are retrained from
scratch on phases 1–2, the best 25 on phases 1–3 and the best 10 on all four (64,000 steps).
Adam 1e-3, batch 64, linear warm-up 6,400 steps then cosine to 0 over the 64,000-step horizon in
every stage (App. D); losses compared by CIFAR-10 validation accuracy, best over evaluations
every 1,000 steps. Augmentation and stochastic depth: the authors' EfficientNetV2-S recipe
(``configs/effnetv2_s.py``). Rerunning the command resumes: finished cells are never retrained.
Finalists land in ``<workdir>/finalists/`` as loss files.

Variants:
  authors   the authors' script instead of the paper's counts: the best 150 in two halves of 75,
            each trained 75 → 25 → 12 → 6 with the best 4 of each half kept (8 finalists); a run
            whose training accuracy is below 0.45 at step 4,000 stops (their callback checks each
            100-step epoch from the 41st of every phase and ends only that phase); validation
            every 100 steps
  automl    the google/automl EfficientNetV2 recipe (lfe's before issue #21; see
            ``configs/effnetv2_s.py``); combines with ``authors``
  runlocal  a CPU smoke test — the ConvNet, the best 4 → 2 → 1 over three phases of 40 steps with
            growing dropout, in-process, taking every evaluated genome (``candidates_stage=""``:
            a tiny search scores few children)
"""

import ml_collections

from configs import common, effnetv2_s
from lfe.core import protocol as protocol_lib
from lfe.experiments import defaults

AUTHORS_STOP = ((4000, 0.45),)  # their EpochCallback(threshold=0.45, epoch=40), 100-step epochs


def paper_protocol(recipe: str = "authors") -> ml_collections.ConfigDict:
    """EfficientNetV2-S with Table 12's progressive phases, 16,000 steps each (App. D)."""
    return effnetv2_s.protocol("eliminate", recipe)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = common.parse_arg(arg, __file__, authors=False, automl=False, runlocal=False)
    c = defaults.eliminate()
    c.protocol = paper_protocol("automl" if variant.automl else "authors")
    if variant.authors:
        c.groups, c.keep, c.finalists = 2, (75, 25, 12, 6), 4
        c.protocol.stop_rules, c.protocol.eval_every = AUTHORS_STOP, 100
    if variant.runlocal:
        c.keep = (4, 2, 1) if not variant.authors else (2, 1)
        c.candidates_stage = ""
        c.executor = "inprocess"
        c.protocol = protocol_lib.training_protocol(
            total_steps=120, warmup_steps=20, eval_every=40, eval_batch_size=1000,
            phases=[{"steps": 40, "dropout": d} for d in (0.1, 0.2, 0.3)],
            stop_rules=((40, 0.0),) if variant.authors else ())
        if variant.authors:
            c.finalists = 1
    return c
