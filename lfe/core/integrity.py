"""The integrity check (paper §3.3, Algorithm 1, with the exact rules below), in NumPy.

For a batch of candidate genomes, in order:

1. structure: reject a cycle in the active graph (``cycle``), or a root from which ``y``
   (``missing_y``) or ``yhat`` (``missing_yhat``) cannot be reached;
2. the binary phenotype: 1000 points, y = [0, 1], yhat = [p, 1-p] with p = linspace(eps, 1-eps)
   built in float64 then cast to float32; phenotype[i] = loss summed over the two classes, so
   index 0 is the correct answer; evaluated in float32. Non-finite → ``non_finite``;
3. the shape rule on d = diff(phenotype): more than 10 zero steps or all zero → ``plateau``;
   zero steps take the previous sign; more than one sign change → ``multiple_optima``;
   a valley keeps its sign, an inverted valley is flipped, a (weakly) monotone curve is flipped
   only if it decreases (the authors' code gets weakly monotone curves backwards; not copied);
   argmin or argmax at indices 490–509 → ``optimum_near_half``;
4. novelty: the (flipped) phenotype min–max normalised (left as is when max−min < 1e-4) must be at
   L2 distance > 0.01 from every phenotype in the archive (``duplicate_phenotype``) and its
   printed equation must differ from every archived one (``duplicate_equation``); the archive
   is what the caller passes (evolution: the current population's, or every one seen).

The check runs in the evolution controller, which never imports JAX: everything here is
NumPy on the genomes' integer arrays. Step 1 is a table look-up per genome (the graph facts of
every wiring are tabulated once), so the ~90% of random genomes it rejects cost almost nothing.
Step 2 evaluates each distinct sub-expression of the batch once (genomes share many), level by
level, with one NumPy call per op and level, using the ops' NumPy forms exactly as
``lfe.core.reference`` does per genome, so phenotypes are bit-identical to it; level 1 (ops on the
inputs) comes from a table computed once per op set. Step 3 is vectorised over the distinct
phenotypes. Step 4 is ``lfe.core.novelty``: exact, comparing only pairs that the triangle
inequality on
the norms cannot separate, and within a batch only against candidates accepted earlier in it.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import numpy as np

from lfe.core import equation as equation_lib
from lfe.core import genome as genome_lib
from lfe.core import ops as ops_lib
from lfe.core.genome import N_HIDDEN, N_INPUTS, N_NODES, ROOT, Genome
from lfe.core.novelty import NOVELTY_THRESHOLD, Accepted, Archive, near_pairs  # noqa: F401 (API)
from lfe.core.ops import EPS

N_POINTS = 1000
MAX_ZERO_STEPS = 10
NEAR_HALF = (490, 509)  # inclusive index range of an optimum "within 1% of yhat = 0.5"
FLAT_RANGE = 1e-4  # curves with max-min below this are not rescaled

REASONS = ("ok", "cycle", "missing_y", "missing_yhat", "non_finite", "plateau",
           "multiple_optima", "optimum_near_half", "duplicate_equation", "duplicate_phenotype")
_CODE = {r: i for i, r in enumerate(REASONS)}


def phenotype_inputs(n: int = N_POINTS, p: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``y``, ``yhat`` of shape [n, 2] (float32) for the binary phenotype.

    ``p`` is the wrong class's probability (default linspace(eps, 1-eps, n), in float64 as the
    authors build it); the correct class gets 1-p, so index 0 is the correct answer.
    """
    p = np.linspace(EPS, 1.0 - EPS, n, dtype=np.float64) if p is None else np.asarray(p, np.float64)
    yhat = np.stack([p, 1.0 - p], axis=-1).astype(np.float32)
    y = np.broadcast_to(np.array([0.0, 1.0], np.float32), yhat.shape).copy()
    return y, yhat


def phenotype_of(f, n: int = N_POINTS, p: np.ndarray | None = None) -> np.ndarray:
    """The raw binary phenotype [n] of a JAX elementwise loss term ``f(y, yhat)`` (a shipped
    closed-form loss, say). Imports JAX, so it is for plotting and the loss library only."""
    import jax.numpy as jnp  # noqa: PLC0415 — keeps `import lfe.core.integrity` JAX-free

    y, yhat = phenotype_inputs(n, p)
    return np.asarray(jnp.sum(f(jnp.asarray(y), jnp.asarray(yhat)), axis=-1), np.float32)


# --------------------------------------------------------------------------- step 1: structure

def _graph(reads: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The graph facts of wirings given as ``reads[s] [K]``: the hidden nodes (bits 0–3) that
    slot ``s`` (h0–h3, root) reads. Returns ``on [K, 5]`` (active; the root always is),
    ``cycle [K]`` (a cycle among active nodes) and ``depth [K, 5]`` (0 if inactive, else the
    longest path down to an input; meaningful for acyclic wirings only)."""
    bit = [1 << s for s in range(N_HIDDEN)]
    active = reads[N_HIDDEN].copy()  # hidden nodes reachable from the root
    for _ in range(N_HIDDEN - 1):
        for s in range(N_HIDDEN):
            active |= np.where(active & bit[s], reads[s], 0)
    on = [(active & bit[s]) != 0 for s in range(N_HIDDEN)] + [np.ones(len(active), bool)]
    reach = [np.where(on[s], reads[s], 0) for s in range(N_HIDDEN)]  # from each active node
    for _ in range(N_HIDDEN - 1):
        for s in range(N_HIDDEN):
            for t in range(N_HIDDEN):
                reach[s] |= np.where(reach[s] & bit[t], reach[t], 0)
    cycle = np.any([(reach[s] & bit[s]) != 0 for s in range(N_HIDDEN)], axis=0)
    depth = np.zeros((N_NODES, len(active)), np.int64)
    for _ in range(N_HIDDEN):
        for s in range(N_NODES):
            below = np.zeros(len(active), np.int64)
            for t in range(N_HIDDEN):
                below = np.maximum(below, np.where(reads[s] & bit[t], depth[t], 0))
            depth[s] = np.where(on[s], 1 + below, 0)
    return np.stack(on, 1), cycle, depth.T


@functools.cache
def _tables() -> tuple[np.ndarray, ...]:
    """Step 1 as look-ups. A hidden slot never reads itself, so it reads a subset of the 3 other
    hidden nodes (3 bits) and the root a subset of all 4: a wiring is a 16-bit key. Returns
    ``part [5, 9, 9]`` (slot, first arg + 1, second arg + 1 → that slot's share of the key),
    ``inputs [9, 9]`` (args + 1 → the input bits they read), and per key ``on``, ``cycle``,
    ``depth`` (from ``_graph``)."""
    part = np.zeros((N_NODES, ROOT + 1, ROOT + 1), np.int64)
    inputs = np.zeros((ROOT + 1, ROOT + 1), np.int64)
    for a, b in itertools.product(range(-1, ROOT), repeat=2):
        hidden = sum(1 << (x - N_INPUTS) for x in {a, b} if x >= N_INPUTS)
        inputs[a + 1, b + 1] = sum(1 << x for x in {a, b} if 0 <= x < N_INPUTS)
        for s in range(N_HIDDEN):  # drop bit s (never set), pack the other three
            low = hidden & ((1 << s) - 1)
            part[s, a + 1, b + 1] = (low | (hidden >> (s + 1) << s)) << (3 * s)
        part[N_HIDDEN, a + 1, b + 1] = hidden << (3 * N_HIDDEN)
    keys = np.arange(1 << (3 * N_HIDDEN + N_HIDDEN))
    reads = []
    for s in range(N_HIDDEN):
        packed = (keys >> (3 * s)) & 7
        reads.append((packed & ((1 << s) - 1)) | (packed >> s << (s + 1)))
    reads.append(keys >> (3 * N_HIDDEN))
    on, cycle, depth = _graph(reads)
    return part, inputs, on, cycle, depth


def structure(args: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step 1 on encoded genomes' arguments ``args [B, 5, 2]`` (``-1`` = no second argument).

    Returns ``codes [B]`` (0, or the code of cycle / missing_y / missing_yhat) and ``depth
    [B, 5]``: for each hidden node and the root, 0 if inactive, else the length of the longest
    path from it down to an input (meaningful for acyclic genomes only).
    """
    part, inputs, on_of, cycle_of, depth_of = _tables()
    first, second = args[..., 0] + 1, args[..., 1] + 1
    key = part[np.arange(N_NODES), first, second].sum(1)
    on = on_of[key]
    used = np.bitwise_or.reduce(np.where(on, inputs[first, second], 0), axis=1)
    codes = np.select([cycle_of[key], (used & (1 << genome_lib.Y)) == 0,
                       (used & (1 << genome_lib.YHAT)) == 0],
                      [_CODE["cycle"], _CODE["missing_y"], _CODE["missing_yhat"]], 0)
    return codes, depth_of[key]


def structural_reason(g: Genome) -> str | None:
    """Step 1 for one genome, as the authors' code does it (a graph walk): ``cycle``,
    ``missing_y``, ``missing_yhat`` or None."""
    if genome_lib.has_cycle(g):
        return "cycle"
    inputs = genome_lib.used_inputs(g)
    if genome_lib.Y not in inputs:
        return "missing_y"
    if genome_lib.YHAT not in inputs:
        return "missing_yhat"
    return None


# --------------------------------------------------------------------------- step 2: phenotypes

@dataclasses.dataclass(frozen=True)
class Expressions:
    """The distinct expressions of a batch, as a table of nodes (plain arrays).

    Node ``i`` is input ``i`` for i < 4, else op ``op[i]`` applied to nodes ``first[i]`` (and
    ``second[i]``, -1 for unary ops); a node's arguments have smaller ids. ``values [n, 2000]``
    holds each node's output at the phenotype points, class 0 then class 1. Genome ``g``'s loss
    is node ``root[g]``. ``levels`` are the ``(start, stop)`` id ranges of the levels ≥ 1.
    """

    op: np.ndarray
    first: np.ndarray
    second: np.ndarray
    values: np.ndarray
    root: np.ndarray
    levels: tuple[tuple[int, int], ...]

    def phenotypes(self, nodes: np.ndarray) -> np.ndarray:
        """Raw phenotypes ``[len(nodes), 1000]``: the sum over the two classes."""
        return np.add(self.values[nodes, :N_POINTS], self.values[nodes, N_POINTS:])

    def texts(self, nodes: np.ndarray, opset: ops_lib.OpSet) -> list[str]:
        """The inline equations of ``nodes``: ``equation.format_nodes`` on this table (node ids
        are in argument-first order), so they are ``equation.text``'s (tested equal); each node
        they use is formatted once."""
        need = np.zeros(len(self.op), bool)
        need[nodes] = True
        for lo, hi in reversed(self.levels):  # mark what the wanted nodes use, top down
            used = np.arange(lo, hi)[need[lo:hi]]
            need[self.first[used]] = True
            need[self.second[used][self.second[used] >= 0]] = True
        text = equation_lib.format_nodes(opset, self.op.tolist(), self.first.tolist(),
                                         self.second.tolist(),
                                         (np.flatnonzero(need[N_INPUTS:]) + N_INPUTS).tolist())
        return [text[n] for n in nodes.tolist()]


@functools.cache
def _level_one(op_set: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every node an op set can build from the inputs alone (27 × 4 unary, 7 × 12 binary):
    ``(index [n_ops, 4, 5] → its row (a, b + 1), nodes [K, 3] (op, a, b), values [K, 2000])``,
    computed once per process with the same NumPy calls as ``evaluate``."""
    opset = ops_lib.get_op_set(op_set)
    index = np.full((len(opset), N_INPUTS, N_INPUTS + 1), -1, np.int64)
    nodes = [(o, a, b) for o in range(len(opset)) for a in range(N_INPUTS)
             for b in ([-1] if o < opset.n_unary else [b for b in range(N_INPUTS) if b != a])]
    nodes = np.array(nodes, np.int64)
    index[nodes[:, 0], nodes[:, 1], nodes[:, 2] + 1] = np.arange(len(nodes))
    inputs = _input_values()
    values = np.empty((len(nodes), 2 * N_POINTS), np.float32)
    bounds = np.flatnonzero(np.diff(nodes[:, 0])) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(nodes)], strict=True):
        _apply(opset, int(nodes[lo, 0]), inputs, nodes[lo:hi, 1], nodes[lo:hi, 2],
               values[lo:hi])
    return index, nodes, values


def _input_values() -> np.ndarray:
    """``[4, 2000]``: y, yhat, 1, -1 at the phenotype points, class 0 then class 1."""
    y, yhat = phenotype_inputs()
    return np.stack([y, yhat, np.ones_like(y), -np.ones_like(y)]).transpose(
        0, 2, 1).reshape(N_INPUTS, -1)


def _apply(opset: ops_lib.OpSet, o: int, values: np.ndarray, first: np.ndarray,
           second: np.ndarray, out: np.ndarray) -> None:
    """``out[k] = op o (values[first[k]], values[second[k]])`` with the op's NumPy form, as
    ``reference.phenotype`` calls it (a ufunc writes into ``out`` directly; same loop, same
    bits)."""
    fn = opset.ops[o].np_fn
    operands = (values[first],) if o < opset.n_unary else (values[first], values[second])
    with np.errstate(all="ignore"):
        if isinstance(fn, np.ufunc):
            fn(*operands, out=out)
        else:
            out[...] = fn(*operands)


def evaluate(ops: np.ndarray, args: np.ndarray, depth: np.ndarray, opset: ops_lib.OpSet
             ) -> Expressions:
    """Evaluates L acyclic encoded genomes, each distinct expression once.

    Nodes are evaluated level by level (``depth`` from ``structure``); a node's key is its op and
    the ids of its arguments, so equal sub-expressions of different genomes get one id and one
    computation: one NumPy call per op and level, with the ops' NumPy forms in float32 exactly
    as ``reference.phenotype`` calls them, so values are bit-identical to it. Level 1 (ops on
    the inputs) comes from a per-op-set table computed once.
    """
    index, one, one_values = _level_one(opset.name)
    n = len(ops)
    base = N_INPUTS + len(one)
    values = np.empty((base + N_NODES * n, 2 * N_POINTS), np.float32)
    values[:N_INPUTS] = _input_values()
    values[N_INPUTS:base] = one_values
    node_op, node_first, node_second = [np.full(N_INPUTS, -1), one[:, 0]], \
        [np.full(N_INPUTS, -1), one[:, 1]], [np.full(N_INPUTS, -1), one[:, 2]]
    levels = [(N_INPUTS, base)]
    size = base
    ids = np.zeros((n, ROOT + 1), np.int64)
    ids[:, :N_INPUTS] = np.arange(N_INPUTS)
    unary = ops < opset.n_unary
    g, s = np.nonzero(depth == 1)
    ids[g, N_INPUTS + s] = N_INPUTS + index[ops[g, s], args[g, s, 0], args[g, s, 1] + 1]
    for level in range(2, N_NODES + 1):
        g, s = np.nonzero(depth == level)
        if len(g) == 0:
            continue
        first = ids[g, args[g, s, 0]]
        second = np.where(unary[g, s], -1, ids[g, np.maximum(args[g, s, 1], 0)])
        span = size + 1
        keys = (ops[g, s] * span + first) * (span + 1) + second + 1
        unique, where = np.unique(keys, return_inverse=True)  # sorted by op first
        u_second = unique % (span + 1) - 1
        u_first = unique // (span + 1) % span
        u_op = unique // (span + 1) // span
        bounds = np.flatnonzero(np.diff(u_op)) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(unique)], strict=True):
            _apply(opset, int(u_op[lo]), values, u_first[lo:hi], u_second[lo:hi],
                   values[size + lo: size + hi])
        ids[g, N_INPUTS + s] = size + where
        node_op.append(u_op)
        node_first.append(u_first)
        node_second.append(u_second)
        levels.append((size, size + len(unique)))
        size += len(unique)
    return Expressions(np.concatenate(node_op), np.concatenate(node_first),
                       np.concatenate(node_second), values[:size], ids[:, ROOT], tuple(levels))


# --------------------------------------------------------------------------- step 3: shape rule

def _count(x: np.ndarray) -> np.ndarray:
    """Row counts of True in ``x [U, N]`` bool (N < 32768), as int64."""
    return x.view(np.uint8).sum(1, dtype=np.int16).astype(np.int64)


def shape_rules(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step 2's finiteness test and step 3 for phenotypes ``[U, N]``: ``(codes [U], signs [U])``.

    Codes are 0 ("ok") or those of non_finite / plateau / multiple_optima / optimum_near_half;
    signs are +1, or -1 when the curve is flipped. ``reference.shape_rule`` is the same rule
    written as a loop over one curve.
    """
    n = raw.shape[1] - 1
    finite = np.isfinite(raw).all(1)
    # For finite floats (IEEE, gradual underflow) a - b > 0 iff a > b and a - b == 0 iff a == b,
    # so the steps' signs are comparisons of neighbours; non-finite curves are rejected first.
    with np.errstate(invalid="ignore"):
        up = raw[:, 1:] > raw[:, :-1]
        flat = raw[:, 1:] == raw[:, :-1]
    zeros = _count(flat)
    plateau = (zeros > MAX_ZERO_STEPS) | (zeros == n)
    changes = _count(up[:, 1:] != up[:, :-1])
    rising = up[:, 0].copy()
    # Zero steps take the previous step's sign (leading ones the first non-zero sign), so they
    # never change sign: on the few curves with 1..10 of them, count the changes between
    # consecutive non-zero steps, and take the first non-zero step's direction.
    gaps = np.flatnonzero((zeros > 0) & ~plateau & finite)
    if len(gaps):
        nonzero = ~flat[gaps]
        row, _ = np.nonzero(nonzero)
        steps = up[gaps][nonzero]  # the non-zero steps' directions, row after row
        turn = (steps[1:] != steps[:-1]) & (row[1:] == row[:-1])
        changes[gaps] = np.bincount(row[1:][turn], minlength=len(gaps))
        rising[gaps] = steps[np.searchsorted(row, np.arange(len(gaps)))]
    flip = ((changes == 0) & ~rising) | ((changes == 1) & rising)
    signs = np.where(flip, -1, 1)
    lo, hi = NEAR_HALF
    low, high = np.argmin(raw, axis=1), np.argmax(raw, axis=1)
    near = ((low >= lo) & (low <= hi)) | ((high >= lo) & (high <= hi))
    codes = np.select([~finite, plateau, changes > 1, near],
                      [_CODE["non_finite"], _CODE["plateau"], _CODE["multiple_optima"],
                       _CODE["optimum_near_half"]], 0)
    return codes.astype(np.int64), signs.astype(np.int64)


def normalise(raw: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """Step 4's curves ``[U, N]`` float32: ``sign * raw`` min–max scaled to [0, 1], left as is
    when max − min < 1e-4 (computed as ``reference.normalise`` does, bit for bit: in float32,
    by the float64 span rounded to float32)."""
    curve = raw * signs[:, None].astype(np.float32)
    lo, hi = curve.min(1), curve.max(1)
    span = hi.astype(np.float64) - lo.astype(np.float64)
    flat = span < FLAT_RANGE
    # x - 0 and x / 1 are exact, so flat curves pass through unchanged
    curve -= np.where(flat, np.float32(0), lo)[:, None]
    curve /= np.where(flat, 1.0, span).astype(np.float32)[:, None]
    return curve


def shape_rule(ph: np.ndarray) -> tuple[str, int, np.ndarray]:
    """Steps 2–3 for one raw phenotype [N]: ``(reason, sign, normalised curve)``."""
    ph = np.asarray(ph, np.float32)[None]
    codes, signs = shape_rules(ph)
    return REASONS[int(codes[0])], int(signs[0]), normalise(ph, signs)[0]


def check_term(f) -> tuple[str, int, np.ndarray]:
    """Steps 2–3 for any JAX per-class term ``f(y, yhat)`` (a closed-form loss, say).

    Returns ``(reason, sign, normalised phenotype)``; reason is "ok" when the shape is accepted.
    """
    return shape_rule(phenotype_of(f))


# --------------------------------------------------------------------------- the check

@dataclasses.dataclass(frozen=True)
class Verdict:
    """The check's answer for one candidate."""

    ok: bool
    reason: str  # "ok" or the first rule that rejected it
    sign: int  # +1, or -1 when the loss is the negated graph
    equation: str  # the printed equation; "" when rejected before step 4
    phenotype: np.ndarray | None  # normalised, flipped; None when rejected before step 4


_REJECTED = {r: Verdict(False, r, 1, "", None) for r in REASONS[1:]}
_CHUNK = 4096  # genomes evaluated at once: bounds the value table (~300 MB at most)


def check_batch(genomes: list[Genome], archive: Archive, *, commit: bool = False,
                max_commit: int | None = None) -> list[Verdict]:
    """Algorithm 1 on a batch. All genomes must share one op set.

    ``commit=False``: each candidate is judged against the archive alone (the archive is not
    changed; the caller adds the candidate it uses). ``commit=True``: candidates are judged in
    order and each accepted one joins the archive before the next is judged — exactly as if
    ``check_batch([g], archive, commit=True)`` were called for each in turn. With ``max_commit``
    only the first ``max_commit`` accepted candidates are added; later ones are judged as with
    ``commit=False`` against the archive as it then stands.
    """
    if not genomes:
        return []
    op_sets = {g.op_set for g in genomes}
    if len(op_sets) != 1:
        raise ValueError(f"check_batch needs one op set per batch, got {sorted(op_sets)}")
    opset = ops_lib.get_op_set(op_sets.pop())
    args = genome_lib.arg_array(genomes, np.int64)  # int64: `evaluate`'s key arithmetic
    codes, depth = structure(args)
    verdicts: list[Verdict] = [_REJECTED[REASONS[c]] if c else None for c in codes.tolist()]
    live = np.flatnonzero(codes == 0)
    budget = [np.inf if max_commit is None else max_commit] if commit else [0]
    for start in range(0, len(live), _CHUNK):
        chunk = live[start: start + _CHUNK]
        ops = genome_lib.op_array([genomes[i] for i in chunk.tolist()], np.int64)
        _check_live(chunk, evaluate(ops, args[chunk], depth[chunk], opset), opset,
                    archive, budget, verdicts)
    return verdicts


def _check_live(chunk: np.ndarray, expr: Expressions, opset: ops_lib.OpSet, archive: Archive,
                budget: list, verdicts: list) -> None:
    """Steps 2–4 for the structurally valid genomes ``chunk`` (batch indices), whose
    expressions are ``expr``; fills ``verdicts`` and commits up to ``budget[0]`` accepted ones
    to ``archive`` (in batch order)."""
    roots, which = np.unique(expr.root, return_inverse=True)  # distinct losses
    raw = expr.phenotypes(roots)
    codes, signs = shape_rules(raw)
    failed = codes[which]
    for i, c in zip(chunk[failed != 0].tolist(), failed[failed != 0].tolist(), strict=True):
        verdicts[i] = _REJECTED[REASONS[c]]
    shaped = np.flatnonzero(codes == 0)
    if len(shaped) == 0:
        return
    curves = normalise(raw[shaped], signs[shaped])
    # Different expressions can have equal curves: novelty is judged per distinct curve.
    distinct: dict[bytes, int] = {}
    curve_of = np.full(len(roots), -1)
    curve_of[shaped] = [distinct.setdefault(c.tobytes(), len(distinct)) for c in curves]
    first = np.zeros(len(distinct), np.int64)
    first[curve_of[shaped][::-1]] = np.arange(len(shaped))[::-1]
    unique = curves[first]
    in_archive = archive.near(unique).tolist()
    accepted = Accepted(unique)
    text = dict(zip(shaped.tolist(), expr.texts(roots[shaped], opset), strict=True))
    curve_of, signs = curve_of.tolist(), signs.tolist()
    new: list[int] = []
    new_equations: set[str] = set()
    new_rows: list[str] = []  # the accepted equations in order: row i's is new_rows[i]
    step4 = np.flatnonzero(failed == 0)
    for i, r in zip(chunk[step4].tolist(), which[step4].tolist(), strict=True):
        eq, c = text[r], curve_of[r]
        if eq in archive.equations or eq in new_equations:
            reason = "duplicate_equation"
        elif in_archive[c] or accepted.near(c):
            reason = "duplicate_phenotype"
        else:
            reason = "ok"
        verdicts[i] = Verdict(reason == "ok", reason, signs[r], eq, unique[c])
        if reason == "ok" and budget[0] > 0:
            accepted.add(c)
            new.append(c)
            new_equations.add(eq)
            new_rows.append(eq)
            budget[0] -= 1
    if new:
        archive.extend(unique[new], new_rows)


def sample_valid(rng: np.random.Generator, n: int, archive: Archive, *, op_set: str = "paper",
                 init: str = "authors", batch_size: int = 256) -> list[tuple[Genome, Verdict]]:
    """``n`` random genomes (§3.2) that pass the check, each added to ``archive``.

    Candidates are drawn in batches and judged in draw order, so the result depends only on the
    RNG state, not on timing.
    """
    found: list[tuple[Genome, Verdict]] = []
    while len(found) < n:
        batch = [genome_lib.random_genome(rng, op_set, init) for _ in range(batch_size)]
        verdicts = check_batch(batch, archive, commit=True, max_commit=n - len(found))
        found.extend((g, v) for g, v in zip(batch, verdicts, strict=True) if v.ok)
        del found[n:]
    return found
