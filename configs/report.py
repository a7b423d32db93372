r"""Report of a finished run directory: tables in the paper's layouts and the figures.

    python -m lfe.main --config=configs/report.py --workdir=runs/pipeline

Reads the run directory (``--config.run_dir``, default the ``--workdir`` itself: an evolve,
eliminate, transfer or compare run, or a whole pipeline) and writes ``<workdir>/report/``.
"""

import ml_collections

from lfe.experiments import report


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if arg:
        raise ValueError(f"unknown variant {arg!r} of configs/report.py; available: none")
    return report.default_config()
