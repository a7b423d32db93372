r"""Phenotype demo: Figures 2–3 for the paper's losses and integrity-check statistics.

    python -m lfe.main --config=configs/phenotypes.py --workdir=runs/phenotypes

Variants: ``configs/phenotypes.py:runlocal`` checks fewer random genomes.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = common.parse_arg(arg, __file__, runlocal=False)
    config = ml_collections.ConfigDict()
    config.mode = "phenotypes"
    config.losses = "cross_entropy,neuroloss1,neuroloss2,neuroloss3"  # names or genome JSON paths
    config.num_random = 20000  # random genomes pushed through the integrity check
    config.seed = 0
    config.op_set = "paper"  # or "authors"
    config.init = "authors"  # or "uniform"
    if variant.runlocal:
        config.num_random = 2000
    return config
