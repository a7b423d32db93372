"""Genome → loss: a jittable ``loss(y, yhat) -> [batch]``, and an evaluator of encoded genomes.

``to_loss`` unrolls the active nodes of one genome as Python-constant JAX code, so a train step
traces exactly the ops the loss uses (no dead branches: a NaN in an unused op would poison the
gradients). ``evaluate_one`` computes the graph output of a genome given as integer arrays
(``encode``): ``lax.switch`` over the op set per node, differentiable and ``vmap``-able over
genomes, which is how population training (``lfe.training.population``) trains many losses in
one program. The integrity check does not use JAX: it is NumPy, in ``lfe.core.integrity``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lfe.core import genome as genome_lib
from lfe.core import ops as ops_lib
from lfe.core.genome import N_HIDDEN, N_INPUTS, ROOT, Genome

Elementwise = Callable[[jax.Array, jax.Array], jax.Array]


def graph_fn(g: Genome) -> Elementwise:
    """The raw graph output ``f(y, yhat)`` elementwise (no sign flip, no reduction)."""
    order = genome_lib.topological_order(g)
    if order is None:
        raise ValueError("cannot compile a genome whose active graph has a cycle")
    active = set(genome_lib.active_nodes(g))
    plan = [(n, g.opset.ops[g.ops[n - N_INPUTS]].fn, g.node_args(n))
            for n in order + [ROOT] if n in active]

    def f(y, yhat):
        values = {0: y, 1: yhat, 2: jnp.ones_like(y), 3: -jnp.ones_like(y)}
        for n, fn, args in plan:
            values[n] = fn(*(values[a] for a in args))
        return values[ROOT]

    return f


def to_loss(g: Genome, sign: int) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``loss(y, yhat) -> [batch]``: ``sign`` × graph, summed over classes, in float32.

    ``y`` is the target distribution and ``yhat`` the softmax probabilities, both ``[..., C]``.
    ``sign`` is the integrity check's orientation (+1, or -1 when the check flipped the graph).
    """
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 or -1, got {sign!r}")
    f = graph_fn(g)

    def loss(y, yhat):
        y = jnp.asarray(y, jnp.float32)
        yhat = jnp.asarray(yhat, jnp.float32)
        return sign * jnp.sum(f(y, yhat), axis=-1)

    return loss


# --------------------------------------------------------------------------- batched evaluation

def encode(genomes: list[Genome]) -> dict[str, np.ndarray]:
    """Genomes as arrays for ``evaluate_one``: ops [B,5], args [B,5,2], order [B,4].

    ``order`` is each genome's topological order of hidden nodes; a cyclic genome gets the
    identity order (its values are then meaningless: the integrity check rejects it anyway).
    Unused second arguments are encoded as input 0 (the unary branch ignores them).
    """
    ops, args = genome_lib.to_arrays(genomes)
    args = np.where(args < 0, 0, args)
    identity = list(range(N_INPUTS, ROOT))
    order = np.array([genome_lib.topological_order(g) or identity for g in genomes],
                     dtype=np.int32).reshape(len(genomes), N_HIDDEN)
    return {"ops": ops, "args": args, "order": order}


def _branches(opset: ops_lib.OpSet) -> list[Callable]:
    unary = [lambda a, b, fn=op.fn: fn(a) for op in opset.unary]
    binary = [lambda a, b, fn=op.fn: fn(a, b) for op in opset.binary]
    return unary + binary


def _evaluate_one(ops, args, order, y, yhat, *, branches):
    """Graph output of one encoded genome on arrays ``y``, ``yhat`` of the same shape."""
    values = jnp.stack([y, yhat, jnp.ones_like(y), -jnp.ones_like(y)]
                       + [jnp.zeros_like(y)] * (N_HIDDEN + 1))

    def node(values, n):
        slot = n - N_INPUTS
        a, b = values[args[slot, 0]], values[args[slot, 1]]
        return values.at[n].set(jax.lax.switch(ops[slot], branches, a, b))

    for k in range(N_HIDDEN):
        values = node(values, order[k])
    return node(values, ROOT)[ROOT]


def evaluate_one(ops, args, order, y, yhat, *, op_set: str = "paper"):
    """Graph output of one encoded genome (``encode`` rows ``ops [5]``, ``args [5,2]``,
    ``order [4]``) on ``y``, ``yhat`` of one shape; differentiable, and ``vmap``-able over
    genomes (a batched ``lax.switch`` feeds each unselected op stop-gradient inputs, so its NaN or
    Inf cannot reach the gradient)."""
    return _evaluate_one(ops, args, order, y, yhat,
                         branches=_branches(ops_lib.get_op_set(op_set)))
