r"""Report of a finished run directory: tables in the paper's layouts and the figures.

    python -m lfe.main --config=configs/report.py --workdir=runs/pipeline

Reads the run directory (``--config.run_dir``, default the ``--workdir`` itself: an evolve,
eliminate, transfer or compare run, or a whole pipeline) and writes ``<workdir>/report/``.
"""

import ml_collections

from configs import common
from lfe.experiments import defaults


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    common.parse_arg(arg, __file__)  # no variants
    return defaults.report()
