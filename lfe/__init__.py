"""lfe: neural loss function evolution (Morgan & Hougen, NeuroLoss1/2/3) in JAX/Flax."""

__version__ = "0.1.0"
