"""The loss-function cell genome (paper §3.1–3.2, App. B).

A genome is a small computational graph held as plain data:

* node ids 0–3 are the inputs ``y``, ``yhat``, ``1``, ``-1``;
* node ids 4–7 are the hidden state nodes ``h0``–``h3``;
* node id 8 is the root (output) node.

``ops[k]`` is the global op index (see ``lfe.core.ops``) of hidden node k (k < 4) or the root (k =
4);
``args[k]`` is ``(x1, x2)`` with ``x2 = -1`` for a unary op. A hidden node takes arguments from
the inputs or from *other* hidden nodes; the root takes arguments from hidden nodes only, so the
loss is never a bare op on the inputs. A binary node's two arguments are distinct nodes, ordered.
Inactive nodes (not reachable from the root) are kept: mutation can make them active again.

Randomness comes from a ``numpy.random.Generator`` passed in, whose state is plain data, so the
evolution controller can checkpoint it.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import operator
from collections.abc import Sequence

import numpy as np
from numpy.typing import DTypeLike

from lfe.core import ops as ops_lib

N_INPUTS = 4
N_HIDDEN = 4
ROOT = N_INPUTS + N_HIDDEN  # node id of the root
N_NODES = N_HIDDEN + 1  # genome slots: hidden nodes, then the root
INPUT_NAMES = ("y", "yhat", "one", "minus_one")
Y, YHAT, ONE, MINUS_ONE = range(N_INPUTS)
FORMAT = "lfe-genome-v1"

# Sampling probabilities of the authors' code: P(unary) per node kind.
AUTHORS_P_UNARY_HIDDEN = 0.7
AUTHORS_P_UNARY_ROOT = 0.2
# Appendix B.
P_CHANGE_OP = 0.70
P_CHANGE_CONNECTION = 0.15  # the rest (0.15) switches arity
P_SWAP_ARGS = 0.20


def node_name(node_id: int) -> str:
    if node_id < N_INPUTS:
        return INPUT_NAMES[node_id]
    if node_id < ROOT:
        return f"h{node_id - N_INPUTS}"
    return "root"


def node_id(name: str) -> int:
    names = [node_name(i) for i in range(ROOT + 1)]
    if name not in names:
        raise ValueError(f"unknown node {name!r}; nodes are: {', '.join(names)}")
    return names.index(name)


@dataclasses.dataclass(frozen=True)
class Genome:
    """A loss cell: op indices and argument node ids for h0–h3 and the root."""

    ops: tuple[int, ...]
    args: tuple[tuple[int, int], ...]
    op_set: str = "paper"

    def __post_init__(self):
        validate(self)

    @property
    def opset(self) -> ops_lib.OpSet:
        return ops_lib.get_op_set(self.op_set)

    def arity(self, slot: int) -> int:
        return self.opset.arity(self.ops[slot])

    def node_args(self, node: int) -> tuple[int, ...]:
        """The argument node ids of hidden/root node id ``node`` (4–8)."""
        slot = node - N_INPUTS
        a, b = self.args[slot]
        return (a,) if self.arity(slot) == 1 else (a, b)


def allowed_args(slot: int) -> list[int]:
    """Node ids that genome slot ``slot`` (0–3 hidden, 4 root) may take as an argument."""
    if slot == N_HIDDEN:
        return list(range(N_INPUTS, ROOT))
    own = N_INPUTS + slot
    return [i for i in range(ROOT) if i != own]


def validate(g: Genome) -> None:
    """Raises ValueError (one line) if ``g`` breaks the search-space rules."""
    opset = ops_lib.get_op_set(g.op_set)
    if len(g.ops) != N_NODES or len(g.args) != N_NODES:
        raise ValueError(f"a genome has {N_NODES} nodes (h0-h3, root), got {len(g.ops)}")
    for slot, (op, (a, b)) in enumerate(zip(g.ops, g.args, strict=True)):
        name = node_name(N_INPUTS + slot)
        if not 0 <= op < len(opset):
            raise ValueError(f"node {name}: op index {op} out of range 0..{len(opset) - 1}")
        allowed = allowed_args(slot)
        if a not in allowed:
            raise ValueError(f"node {name}: argument {node_name(a) if 0 <= a <= ROOT else a} "
                             f"not allowed; allowed: {', '.join(map(node_name, allowed))}")
        if opset.arity(op) == 1:
            if b != -1:
                raise ValueError(f"node {name}: unary op {opset.ops[op].name} takes one argument")
        else:
            if b not in allowed:
                raise ValueError(f"node {name}: second argument {b} not allowed; allowed: "
                                 f"{', '.join(map(node_name, allowed))}")
            if a == b:
                raise ValueError(f"node {name}: binary op needs two distinct arguments")


def make(nodes: Sequence[tuple[str, Sequence[str]]], op_set: str = "paper") -> Genome:
    """Builds a genome from ``[(op_name, [arg names]), ...]`` for h0, h1, h2, h3, root.

    Example: ``make([("ln", ["yhat"]), ("mul", ["y", "h0"]), ("neg", ["h1"]),
    ("neg", ["h0"]), ("neg", ["h2"])])`` is cross-entropy (h3 inactive).
    """
    opset = ops_lib.get_op_set(op_set)
    if len(nodes) != N_NODES:
        raise ValueError(f"a genome has {N_NODES} nodes (h0-h3, root), got {len(nodes)}")
    ops, args = [], []
    for slot, (op_name, arg_names) in enumerate(nodes):
        op = opset.index(op_name)
        arity = opset.arity(op)
        if len(arg_names) != arity:
            raise ValueError(f"node {node_name(N_INPUTS + slot)}: op {op_name!r} takes {arity} "
                             f"argument(s), got {len(arg_names)}")
        ids = [node_id(n) for n in arg_names] + [-1] * (2 - arity)
        ops.append(op)
        args.append((ids[0], ids[1]))
    return Genome(tuple(ops), tuple(args), op_set)


# --------------------------------------------------------------------------- graph structure

def active_nodes(g: Genome) -> list[int]:
    """Node ids (hidden and root) reachable from the root, sorted; terminates on cycles."""
    seen: set[int] = set()
    stack = [ROOT]
    while stack:
        n = stack.pop()
        if n in seen or n < N_INPUTS:
            continue
        seen.add(n)
        stack.extend(g.node_args(n))
    return sorted(seen)


def used_inputs(g: Genome) -> set[int]:
    """Input ids (0–3) reachable from the root."""
    return {a for n in active_nodes(g) for a in g.node_args(n) if a < N_INPUTS}


def has_cycle(g: Genome) -> bool:
    """True if the active graph has a cycle (a hidden node that depends on itself)."""
    return topological_order(g) is None


def topological_order(g: Genome) -> list[int] | None:
    """Hidden node ids in an order where each active node follows its arguments.

    Active hidden nodes come first, in dependency order; inactive ones follow in id order (their
    values are never used). Returns None if the active graph has a cycle.
    """
    order: list[int] = []
    state: dict[int, int] = {}  # 1 = on the DFS stack, 2 = done

    def visit(n: int) -> bool:
        if n < N_INPUTS or state.get(n) == 2:
            return True
        if state.get(n) == 1:
            return False
        state[n] = 1
        if not all(visit(a) for a in g.node_args(n)):
            return False
        state[n] = 2
        if n != ROOT:
            order.append(n)
        return True

    if not visit(ROOT):
        return None
    return order + [n for n in range(N_INPUTS, ROOT) if n not in order]


# --------------------------------------------------------------------------- sampling, mutation

def _random_op(rng: np.random.Generator, opset: ops_lib.OpSet, arity: int,
               exclude: int | None = None) -> int:
    lo, hi = (0, opset.n_unary) if arity == 1 else (opset.n_unary, len(opset))
    choices = [i for i in range(lo, hi) if i != exclude]
    return int(choices[rng.integers(len(choices))])


def _random_arg(rng: np.random.Generator, slot: int, exclude: Sequence[int] = ()) -> int:
    choices = [i for i in allowed_args(slot) if i not in exclude]
    return int(choices[rng.integers(len(choices))])


def random_genome(rng: np.random.Generator, op_set: str = "paper",
                  init: str = "authors") -> Genome:
    """Samples a genome per §3.2.

    ``init="authors"``: hidden nodes unary with p=0.7, the root unary with p=0.2 (the authors'
    code); ``init="uniform"``: each op uniform over all 34 (the paper's text). Connections are
    uniform over each node's allowed arguments, distinct for binary ops.
    """
    opset = ops_lib.get_op_set(op_set)
    if init not in ("authors", "uniform"):
        raise ValueError(f"unknown init {init!r}; available: authors, uniform")
    ops, args = [], []
    for slot in range(N_NODES):
        if init == "uniform":
            op = int(rng.integers(len(opset)))
        else:
            p_unary = AUTHORS_P_UNARY_ROOT if slot == N_HIDDEN else AUTHORS_P_UNARY_HIDDEN
            op = _random_op(rng, opset, 1 if rng.random() < p_unary else 2)
        a = _random_arg(rng, slot)
        b = _random_arg(rng, slot, exclude=(a,)) if opset.arity(op) == 2 else -1
        ops.append(op)
        args.append((a, b))
    return Genome(tuple(ops), tuple(args), op_set)


def mutate(rng: np.random.Generator, g: Genome) -> Genome:
    """One mutation per Appendix B.

    Picks an active node (root or hidden) uniformly; with p=0.70 changes its op to a different op
    of the same arity; with p=0.15 changes a connection (unary: a different argument; binary: 20%
    swap x1/x2, else re-draw x1 or x2 with 50/50); with p=0.15 switches arity (unary→binary adds
    a random second argument as x1 or x2 with 50/50; binary→unary drops x1 or x2 with 50/50).
    """
    opset = g.opset
    active = active_nodes(g)
    slot = active[rng.integers(len(active))] - N_INPUTS
    ops, args = list(g.ops), [list(a) for a in g.args]
    arity = opset.arity(ops[slot])
    r = rng.random()
    if r < P_CHANGE_OP:
        ops[slot] = _random_op(rng, opset, arity, exclude=ops[slot])
    elif r < P_CHANGE_OP + P_CHANGE_CONNECTION:
        a, b = args[slot]
        if arity == 1:
            args[slot][0] = _random_arg(rng, slot, exclude=(a,))
        elif rng.random() < P_SWAP_ARGS:
            args[slot] = [b, a]
        elif rng.random() < 0.5:
            args[slot][0] = _random_arg(rng, slot, exclude=(a, b))
        else:
            args[slot][1] = _random_arg(rng, slot, exclude=(a, b))
    elif arity == 1:
        ops[slot] = _random_op(rng, opset, 2)
        a = args[slot][0]
        extra = _random_arg(rng, slot, exclude=(a,))
        args[slot] = [a, extra] if rng.random() < 0.5 else [extra, a]
    else:
        ops[slot] = _random_op(rng, opset, 1)
        a, b = args[slot]
        args[slot] = [b, -1] if rng.random() < 0.5 else [a, -1]
    return Genome(tuple(ops), tuple((int(a), int(b)) for a, b in args), g.op_set)


# --------------------------------------------------------------------------- arrays and JSON

_chain = itertools.chain.from_iterable


def op_array(genomes: Sequence[Genome], dtype: DTypeLike = np.int32) -> np.ndarray:
    """The genomes' op indices ``[B, 5]`` (h0–h3, root), in one pass."""
    return np.fromiter(_chain(map(operator.attrgetter("ops"), genomes)), dtype,
                       len(genomes) * N_NODES).reshape(len(genomes), N_NODES)


def arg_array(genomes: Sequence[Genome], dtype: DTypeLike = np.int32) -> np.ndarray:
    """The genomes' argument node ids ``[B, 5, 2]``, ``-1`` where a unary op has no second."""
    return np.fromiter(_chain(_chain(map(operator.attrgetter("args"), genomes))), dtype,
                       len(genomes) * N_NODES * 2).reshape(len(genomes), N_NODES, 2)


def to_arrays(genomes: Sequence[Genome], dtype: DTypeLike = np.int32
              ) -> tuple[np.ndarray, np.ndarray]:
    """The genome encoder: ``(op_array, arg_array)``, ops ``[B, 5]`` and args ``[B, 5, 2]``.

    Every array form of genomes derives from it: the integrity check reads them as int64 (its
    expression keys need 64 bits), ``lfe.training.compile.encode`` adds the layout its JAX
    evaluator takes. Built with ``np.fromiter`` (≈2× faster than ``np.array`` on the tuples).
    """
    return op_array(genomes, dtype), arg_array(genomes, dtype)


def to_dict(g: Genome) -> dict:
    opset = g.opset
    nodes = []
    for slot in range(N_NODES):
        n_args = opset.arity(g.ops[slot])
        nodes.append({"node": node_name(N_INPUTS + slot), "op": opset.ops[g.ops[slot]].name,
                      "args": [node_name(a) for a in g.args[slot][:n_args]]})
    return {"format": FORMAT, "op_set": g.op_set, "nodes": nodes}


def from_dict(d: dict) -> Genome:
    """Parses ``to_dict``'s output; any problem raises a one-line ValueError naming it."""
    if not isinstance(d, dict):
        raise ValueError(f"genome JSON must be an object, got {type(d).__name__}")
    unknown = set(d) - {"format", "op_set", "nodes"}
    if unknown:
        raise ValueError(f"genome JSON has unknown key(s): {', '.join(sorted(unknown))}")
    if d.get("format", FORMAT) != FORMAT:
        raise ValueError(f"genome JSON format {d.get('format')!r} is not {FORMAT!r}")
    nodes = d.get("nodes")
    if not isinstance(nodes, list) or len(nodes) != N_NODES:
        raise ValueError(f"genome JSON needs 'nodes': a list of {N_NODES} nodes (h0-h3, root)")
    spec = []
    for slot, node in enumerate(nodes):
        want = node_name(N_INPUTS + slot)
        if not isinstance(node, dict) or set(node) - {"node", "op", "args"}:
            raise ValueError(f"genome JSON node {slot} must be an object with node/op/args")
        if node.get("node", want) != want:
            raise ValueError(f"genome JSON node {slot} is named {node.get('node')!r}, "
                             f"expected {want!r}")
        op, args = node.get("op"), node.get("args")
        if not isinstance(op, str) or not isinstance(args, list) \
                or not all(isinstance(a, str) for a in args):
            raise ValueError(f"genome JSON node {want}: 'op' must be a string and 'args' a list "
                             "of node names")
        spec.append((op, args))
    return make(spec, op_set=d.get("op_set", "paper"))


def dumps(g: Genome) -> str:
    return json.dumps(to_dict(g))


def loads(text: str) -> Genome:
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"genome JSON is malformed: {e}") from None
    return from_dict(d)
