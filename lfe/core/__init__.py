"""The JAX-free core: the search space (ops, genome, equation), Algorithm 1 (integrity,
novelty), Algorithm 2 (evolution), and plain-data bookkeeping (records, protocol, rundir, fileio,
stats). Nothing under ``lfe.core`` imports JAX, Flax or Optax (tested), so the evolution
controller can run on a host without an accelerator stack."""
