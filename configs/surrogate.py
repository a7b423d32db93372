r"""The paper's search (§3.10): regularized evolution with the surrogate fitness.

    python -m lfe.main --config=configs/surrogate.py --workdir=runs/surrogate

Initial population 1,000 random valid genomes scored with the ConvNet for 8,000 steps, the best
100 form the population; tournament 20 (with replacement); up to 2,500 mutation attempts per child
and 7 failed children per iteration; 2,000 iterations (the paper ran 100 h on one A100).
Fitness: the gate (ConvNet 800 steps, train acc >= 0.37), then the surrogate.

Surrogate: the paper's is EfficientNetV2-S at 96x96 with RandAugment (§3.5.1). That model is not
in this code base yet, so this config uses the ConvNet protocol of the paper's initial
evolutionary run (§3.6: 8,000 steps, batch 128, Adam 1e-3, warm-up 800 + cosine) with the
surrogate's early stop 2 (train acc < 0.25 by step 3,000 stops the run). Rerunning the command
resumes the run from its work directory.
"""

import ml_collections

from lfe import search


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = search.default_config()
    if arg:
        raise ValueError(f"unknown variant {arg!r} of configs/surrogate.py; available: none")
    return c
