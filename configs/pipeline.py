r"""The whole method: evolve → eliminate → transfer → report, resumable at every stage.

    python -m lfe.main --config=configs/pipeline.py --workdir=runs/pipeline

Default: the paper's search (``configs/surrogate.py``), elimination protocol
(``configs/eliminate.py``: 150 → 50 → 25 → 10 on EfficientNetV2-S phases) and Table 9's transfer
of the best three finalists beside the paper's losses. Rerun the same command to resume; the
report is in ``<workdir>/report/README.md``. Every stage reads the data at the one top-level
``data_dir`` (``--config.data_dir=DIR``; "" = $LFE_DATA_DIR, else tensorflow-datasets).

Variant ``:runlocal``: a CPU-sized run on real CIFAR-10 (ConvNet everywhere): quickstart's
``runlocal`` search, the best 3 → 2 → 1 over three 40-step phases, and the finalist and
cross-entropy on a 60-step test-split transfer, all in-process.
"""

import ml_collections

from configs import common, eliminate, quickstart, surrogate, transfer_paper
from lfe.experiments import defaults


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    local = common.parse_arg(arg, __file__, runlocal=False).runlocal
    c = defaults.pipeline()
    c.evolve = quickstart.get_config("runlocal") if local else surrogate.get_config()
    c.eliminate = eliminate.get_config("runlocal" if local else None)
    table9 = transfer_paper.get_config("table9,runlocal" if local else "table9")
    table9.losses = "finalists,neuroloss1,neuroloss2,neuroloss3,cross_entropy"
    if local:
        c.eliminate.keep = (3, 2, 1)
        table9.losses, table9.seeds = "finalists,cross_entropy", 1
        c.transfer_finalists = 1
    c.transfers = ml_collections.ConfigDict({"table9": table9})
    return defaults.bind_data_dir(c)  # the stages replaced above read c.data_dir too
