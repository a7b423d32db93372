"""Genome → loss: a jittable ``loss(y, yhat) -> [batch]``, and an evaluator of encoded genomes.

Two forms of the same loss:

* ``to_loss`` unrolls the active nodes of one genome as Python-constant JAX code: a train step
  traces exactly the ops the loss uses, and a step built around it is compiled again for every
  genome. This is the form of the importable library (``lfe.training.losses``).
* The data form: ``evaluate_one`` computes the graph output of a genome given as integer arrays
  (``encode``), ``lax.switch`` over the op set per node. ``data_loss(g, sign)`` packs it as a
  ``DataLoss``: a shared, hashable ``GenomeProgram`` (one per op set) and the genome's codes as
  array ``params``. A train step that takes the params as an argument is compiled once per
  (model, protocol shape, op set) and serves every candidate (``lfe.training.train``).
  Un-batched, ``lax.switch`` executes only the selected op of each node; nodes outside the active
  graph select a no-op branch (zeros), so, as in the unrolled form, no unused op runs at all (a
  NaN or Inf in an unused op, times its zero cotangent, would otherwise poison the gradient).
  ``vmap``ped over genomes (population training, ``lfe.training.population``) the switch
  becomes a selection whose unselected ops see stop-gradient inputs.

Both forms compute the same float32 values and gradients (``tests/test_compile.py`` checks
1,000 random accepted genomes). The integrity check does not use JAX: it is NumPy, in
``lfe.core.integrity``.
"""

from __future__ import annotations

import dataclasses
import functools
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

def noop_code(opset: ops_lib.OpSet) -> int:
    """The op code ``encode`` gives nodes outside the active graph: a branch after the op set's
    own that returns zeros (so an unused node runs no op)."""
    return len(opset)


def encode(genomes: list[Genome]) -> dict[str, np.ndarray]:
    """Genomes as arrays for ``evaluate_one``: ops [B,5], args [B,5,2], order [B,4].

    ``order`` is each genome's topological order of hidden nodes; a cyclic genome gets the
    identity order (its values are then meaningless: the integrity check rejects it anyway).
    Hidden nodes outside a genome's active graph get the no-op code (``noop_code``); unused
    second arguments are encoded as input 0 (the unary branch ignores them).
    """
    ops, args = genome_lib.to_arrays(genomes)
    args = np.where(args < 0, 0, args)
    identity = list(range(N_INPUTS, ROOT))
    order = np.array([genome_lib.topological_order(g) or identity for g in genomes],
                     dtype=np.int32).reshape(len(genomes), N_HIDDEN)
    for i, g in enumerate(genomes):
        active = set(genome_lib.active_nodes(g))
        for slot in range(N_HIDDEN):
            if slot + N_INPUTS not in active:
                ops[i, slot] = noop_code(g.opset)
    return {"ops": ops, "args": args, "order": order}


@functools.cache
def _branches(op_set: str) -> tuple[Callable, ...]:
    opset = ops_lib.get_op_set(op_set)
    unary = [lambda a, b, fn=op.fn: fn(a) for op in opset.unary]
    binary = [lambda a, b, fn=op.fn: fn(a, b) for op in opset.binary]
    return (*unary, *binary, lambda a, b: jnp.zeros_like(a))


def evaluate_one(ops, args, order, y, yhat, *, op_set: str = "paper"):
    """Graph output of one encoded genome (``encode`` rows ``ops [5]``, ``args [5,2]``,
    ``order [4]``) on ``y``, ``yhat`` of one shape; differentiable, and ``vmap``-able over
    genomes (a batched ``lax.switch`` feeds each unselected op stop-gradient inputs, so its NaN or
    Inf cannot reach the gradient)."""
    branches = _branches(op_set)
    ops, args = jnp.asarray(ops, jnp.int32), jnp.asarray(args, jnp.int32)
    values = jnp.stack([y, yhat, jnp.ones_like(y), -jnp.ones_like(y)]
                       + [jnp.zeros_like(y)] * (N_HIDDEN + 1))

    def node(values, n):
        slot = n - N_INPUTS
        a, b = values[args[slot, 0]], values[args[slot, 1]]
        return values.at[n].set(jax.lax.switch(ops[slot], branches, a, b)), None

    # One loop body over the nodes (hidden ones in topological order, then the root): the op set's
    # branches are compiled once, not once per node (a 5x smaller program to compile).
    nodes = jnp.concatenate([jnp.asarray(order, jnp.int32), jnp.full((1,), ROOT, jnp.int32)])
    values, _ = jax.lax.scan(node, values, nodes)
    return values[ROOT]


# --------------------------------------------------------------------------- the data form

@dataclasses.dataclass(frozen=True)
class GenomeProgram:
    """``program(params, y, yhat) -> [batch]``: ``params["sign"]`` × the graph output of the
    genome encoded in ``params`` (``ops``, ``args``, ``order``), summed over classes, float32.
    One per op set, equal (and equally hashed) wherever it is made, so jitted steps keyed by it
    are shared by every genome of the op set."""

    op_set: str = "paper"

    def __call__(self, params: dict, y, yhat) -> jax.Array:
        y, yhat = jnp.asarray(y, jnp.float32), jnp.asarray(yhat, jnp.float32)
        out = evaluate_one(params["ops"], params["args"], params["order"], y, yhat,
                           op_set=self.op_set)
        return params["sign"] * jnp.sum(out, axis=-1)


@dataclasses.dataclass(frozen=True)
class Closed:
    """A plain ``loss(y, yhat)`` as a program without params (``program((), y, yhat)``)."""

    fn: Callable

    def __call__(self, params, y, yhat) -> jax.Array:
        del params
        return self.fn(y, yhat)


@dataclasses.dataclass(frozen=True, eq=False)
class DataLoss:
    """A loss as a shared ``program`` and its own array ``params``; also callable as
    ``loss(y, yhat)``, so it goes wherever a plain loss goes."""

    program: Callable
    params: object

    def __call__(self, y, yhat) -> jax.Array:
        return self.program(self.params, y, yhat)


def genome_params(g: Genome, sign: int) -> dict[str, np.ndarray]:
    """The array params of ``g`` for ``GenomeProgram``: its ``encode`` row and ``sign``."""
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 or -1, got {sign!r}")
    if genome_lib.has_cycle(g):
        raise ValueError("cannot compile a genome whose active graph has a cycle")
    code = {name: value[0] for name, value in encode([g]).items()}
    return {**code, "sign": np.asarray(sign, np.float32)}


def data_loss(g: Genome, sign: int) -> DataLoss:
    """``to_loss(g, sign)`` in the data form: the same values and gradients, with a program
    shared by every genome of ``g``'s op set."""
    return DataLoss(GenomeProgram(g.op_set), genome_params(g, sign))


def as_program(loss_fn: Callable) -> tuple[Callable, object]:
    """``(program, params)`` of a loss: a ``DataLoss``'s own, else ``(Closed(loss_fn), ())``."""
    if isinstance(loss_fn, DataLoss):
        return loss_fn.program, loss_fn.params
    return Closed(loss_fn), ()
