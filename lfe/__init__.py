"""lfe: neural loss function evolution (Morgan & Hougen, NeuroLoss1/2/3) in JAX/Flax.

Layers: ``lfe.core`` (JAX-free search: genome, integrity, evolution, run directory),
``lfe.executors`` (where work runs), ``lfe.worker`` (the functions executors run),
``lfe.training`` (JAX: losses, training loop, models, data), ``lfe.experiments`` (the modes).
``from lfe import losses`` is the loss library (``lfe.training.losses``), loaded on first use.
"""

import importlib

__version__ = "0.1.0"

_LAZY = {"losses": "lfe.training.losses"}


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(_LAZY[name])
    raise AttributeError(f"module 'lfe' has no attribute {name!r}")
