r"""Table 4: the ConvNet surrogate protocol for CE, NeuroLoss1–3 and the Bessel loss.

    python -m lfe.main --config=configs/table4.py --workdir=runs/table4

ConvNet, 8,000 steps, batch 128, Adam 1e-3 with 800 warm-up steps then cosine, best validation
accuracy over evaluations every 100 steps, on the 45,000/5,000 CIFAR-10 split. Finished cells are
kept in the work directory; rerunning the command resumes the grid.
Variants: ``:runlocal`` (2 losses x 2 seeds x 300 steps, in-process) for a smoke test.
"""

import ml_collections

from configs import common
from lfe.experiments import defaults


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = common.parse_arg(arg, __file__, runlocal=False)
    c = defaults.compare()
    c.title = "Table 4: ConvNet surrogate protocol on CIFAR-10"
    # NeuroLoss1 both as the library ships it (the reading) and as Table 5 prints it
    c.losses = ("cross_entropy,neuroloss1_printed,neuroloss1_reading,neuroloss2,neuroloss3,"
                "bessel_loss")
    c.seeds = 5
    common.with_paper(c, {  # Table 4: measured on this dataset and protocol; the paper's
        # NeuroLoss1 beside both forms of it
        "bessel_loss": "58.839 ± 0.572", "neuroloss1_printed": "58.711 ± 0.455",
        "neuroloss1_reading": "58.711 ± 0.455",
        "neuroloss2": "58.579 ± 0.612", "neuroloss3": "58.660 ± 0.557",
        "cross_entropy": "58.474 ± 0.569"})
    c.command = "python -m lfe.main --config=configs/table4.py --workdir=runs/table4"
    if variant.runlocal:
        c.losses = "cross_entropy,neuroloss3"
        c.seeds = 2
        c.protocol.steps = 300
        c.protocol.total_steps = 300
        c.protocol.warmup_steps = 30
        c.executor = "inprocess"
    return c
