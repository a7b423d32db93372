"""The integrity check (paper §3.3, Algorithm 1, with the exact rules of SPEC.md), in NumPy.

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
   printed equation must differ from every archived one (``duplicate_equation``).

The check runs in the evolution controller, which stays JAX-free (DESIGN.md): everything here is
NumPy on the genomes' integer arrays. Step 1 is vectorised over the batch, so the ~90% of random
genomes it rejects cost almost nothing. Step 2 evaluates each distinct sub-expression of the batch
once (genomes share many), level by level, with one NumPy call per op and level, using the ops'
NumPy forms exactly as ``lfe.reference`` does per genome, so phenotypes are bit-identical to it.
Step 3 is vectorised over the distinct phenotypes. Step 4 finds close pairs exactly: the triangle
inequality on the L2 norms, then a few coordinates, bound which pairs can be within 0.01; only
those get the float64 distance.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from lfe import genome as genome_lib
from lfe import ops as ops_lib
from lfe.equation import _TEXT_INPUTS
from lfe.genome import N_HIDDEN, N_INPUTS, N_NODES, ROOT, Genome
from lfe.ops import EPS

N_POINTS = 1000
NOVELTY_THRESHOLD = 0.01
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
    import jax.numpy as jnp  # noqa: PLC0415 — keeps `import lfe.integrity` JAX-free

    y, yhat = phenotype_inputs(n, p)
    return np.asarray(jnp.sum(f(jnp.asarray(y), jnp.asarray(yhat)), axis=-1), np.float32)


# --------------------------------------------------------------------------- step 1: structure

def structure(ops: np.ndarray, args: np.ndarray, opset: ops_lib.OpSet
              ) -> tuple[np.ndarray, np.ndarray]:
    """Step 1 on encoded genomes (``genome.to_arrays``): ``ops [B, 5]``, ``args [B, 5, 2]``.

    Returns ``codes [B]`` (0, or the code of cycle / missing_y / missing_yhat) and ``depth
    [B, 5]``: for each hidden node and the root, 0 if inactive, else the length of the longest
    path from it down to an input (meaningful for acyclic genomes only). Node sets are bit masks
    (bits 0–3 the inputs, 4–7 the hidden nodes), so each step is a few integer array ops.
    """
    binary = ops >= opset.n_unary
    masks = (1 << args[..., 0].astype(np.int64)) | np.where(
        binary, 1 << np.where(binary, args[..., 1], 0).astype(np.int64), 0)
    reads = [masks[:, s] >> N_INPUTS for s in range(N_NODES)]  # hidden nodes each slot reads
    bit = [1 << s for s in range(N_HIDDEN)]
    active = reads[N_HIDDEN].copy()  # hidden nodes reachable from the root
    for _ in range(N_HIDDEN - 1):
        for s in range(N_HIDDEN):
            active |= np.where(active & bit[s], reads[s], 0)
    on = [(active & bit[s]) != 0 for s in range(N_HIDDEN)]
    inputs = masks[:, N_HIDDEN] & 0xF
    reach = []  # hidden nodes reachable from each active hidden node
    for s in range(N_HIDDEN):
        inputs |= np.where(on[s], masks[:, s] & 0xF, 0)
        reach.append(np.where(on[s], reads[s], 0))
    for _ in range(N_HIDDEN - 1):
        for s in range(N_HIDDEN):
            for t in range(N_HIDDEN):
                reach[s] |= np.where(reach[s] & bit[t], reach[t], 0)
    cycle = np.zeros(len(ops), bool)
    for s in range(N_HIDDEN):
        cycle |= (reach[s] & bit[s]) != 0
    codes = np.select([cycle, (inputs & (1 << genome_lib.Y)) == 0,
                       (inputs & (1 << genome_lib.YHAT)) == 0],
                      [_CODE["cycle"], _CODE["missing_y"], _CODE["missing_yhat"]], 0)
    depth = np.zeros((N_NODES, len(ops)), np.int64)
    for _ in range(N_HIDDEN):
        for s in range(N_HIDDEN + 1):
            below = np.zeros(len(ops), np.int64)
            for t in range(N_HIDDEN):
                below = np.maximum(below, np.where(reads[s] & bit[t], depth[t], 0))
            depth[s] = np.where(on[s], 1 + below, 0) if s < N_HIDDEN else 1 + below
    return codes, depth.T


def encode(genomes: list[Genome]) -> tuple[np.ndarray, np.ndarray]:
    """``genome.to_arrays`` for a list of genomes, flattened in one pass (it is on the hot path)."""
    flat = np.fromiter(itertools.chain.from_iterable(
        g.ops + g.args[0] + g.args[1] + g.args[2] + g.args[3] + g.args[4] for g in genomes),
        np.int64, len(genomes) * 3 * N_NODES).reshape(len(genomes), 3 * N_NODES)
    return flat[:, :N_NODES], flat[:, N_NODES:].reshape(len(genomes), N_NODES, 2)


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
    ``second[i]``, -1 for unary ops). ``values [n, 2000]`` holds each node's output at the
    phenotype points, class 0 then class 1. Genome ``g``'s loss is node ``root[g]``.
    """

    op: np.ndarray
    first: np.ndarray
    second: np.ndarray
    values: np.ndarray
    root: np.ndarray

    def phenotypes(self, nodes: np.ndarray) -> np.ndarray:
        """Raw phenotypes ``[len(nodes), 1000]``: the sum over the two classes."""
        v = self.values[nodes]
        return v[:, :N_POINTS] + v[:, N_POINTS:]

    def text(self, node: int, opset: ops_lib.OpSet, memo: dict[int, str]) -> str:
        """The inline equation of a node, as ``equation.text`` prints it (tested equal)."""
        if node < N_INPUTS:
            return _TEXT_INPUTS[node]
        if node not in memo:
            a = self.text(int(self.first[node]), opset, memo)
            b = self.text(int(self.second[node]), opset, memo) if self.second[node] >= 0 else ""
            memo[node] = opset.ops[int(self.op[node])].text.format(a=a, b=b)
        return memo[node]


def evaluate(ops: np.ndarray, args: np.ndarray, depth: np.ndarray, opset: ops_lib.OpSet
             ) -> Expressions:
    """Evaluates L acyclic encoded genomes, each distinct expression once.

    Nodes are evaluated level by level (``depth`` from ``structure``); a node's key is its op and
    the ids of its arguments, so equal sub-expressions of different genomes get one id and one
    computation: one NumPy call per op and level, with the ops' NumPy forms in float32 exactly
    as ``reference.phenotype`` calls them, so values are bit-identical to it.
    """
    y, yhat = phenotype_inputs()
    n = len(ops)
    values = np.empty((N_INPUTS + N_NODES * n, 2 * N_POINTS), np.float32)
    values[:N_INPUTS] = np.stack([y, yhat, np.ones_like(y), -np.ones_like(y)]).transpose(
        0, 2, 1).reshape(N_INPUTS, -1)
    node_op, node_first, node_second = [np.full(N_INPUTS, -1)], [np.full(N_INPUTS, -1)], \
        [np.full(N_INPUTS, -1)]
    size = N_INPUTS
    ids = np.zeros((n, ROOT + 1), np.int64)
    ids[:, :N_INPUTS] = np.arange(N_INPUTS)
    unary = ops < opset.n_unary
    with np.errstate(all="ignore"):
        for level in range(1, N_NODES + 1):
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
                o = int(u_op[lo])
                fn = opset.ops[o].np_fn
                a = values[u_first[lo:hi]]
                values[size + lo: size + hi] = (fn(a) if o < opset.n_unary
                                                else fn(a, values[u_second[lo:hi]]))
            ids[g, N_INPUTS + s] = size + where
            node_op.append(u_op)
            node_first.append(u_first)
            node_second.append(u_second)
            size += len(unique)
    return Expressions(np.concatenate(node_op), np.concatenate(node_first),
                       np.concatenate(node_second), values[:size], ids[:, ROOT])


# --------------------------------------------------------------------------- step 3: shape rule

def shape_rules(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step 2's finiteness test and step 3 for phenotypes ``[U, N]``: ``(codes [U], signs [U])``.

    Codes are 0 ("ok") or those of non_finite / plateau / multiple_optima / optimum_near_half;
    signs are +1, or -1 when the curve is flipped. ``reference.shape_rule`` is the same rule
    written as a loop over one curve.
    """
    n = raw.shape[1] - 1
    finite = np.isfinite(raw).all(1)
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.diff(raw, axis=1)
    up = d > 0
    nonzero = up | (d < 0)
    zeros = n - nonzero.sum(1)
    plateau = (zeros > MAX_ZERO_STEPS) | (zeros == n)
    # Zero steps take the previous step's sign (leading ones the first non-zero sign); only
    # the few curves with 1..10 zero steps need the fill.
    filled = up
    gaps = np.nonzero((zeros > 0) & ~plateau)[0]
    if len(gaps):
        last = np.maximum.accumulate(np.where(nonzero[gaps], np.arange(n), -1), axis=1)
        last = np.where(last < 0, np.argmax(nonzero[gaps], axis=1)[:, None], last)
        filled = up.copy()
        filled[gaps] = np.take_along_axis(up[gaps], last, axis=1)
    changes = (filled[:, 1:] != filled[:, :-1]).sum(1)
    rising = filled[:, 0]
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
    when max − min < 1e-4 (computed as ``reference.normalise`` does, bit for bit)."""
    curve = raw * signs[:, None].astype(np.float32)
    lo, hi = curve.min(1), curve.max(1)
    span = hi.astype(np.float64) - lo.astype(np.float64)
    flat = span < FLAT_RANGE
    scaled = (curve - lo[:, None]) / np.where(flat, 1.0, span).astype(np.float32)[:, None]
    return np.where(flat[:, None], curve, scaled)


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


# --------------------------------------------------------------------------- step 4: novelty

def near_pairs(queries: np.ndarray, keys: np.ndarray, threshold: float = NOVELTY_THRESHOLD,
               *, key_norms: np.ndarray | None = None, order: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """All ``(i, j)`` with ``|queries[i] - keys[j]|_2 <= threshold``, decided in float64.

    Exact, without comparing every pair: ``| |q| - |k| | <= |q - k|`` (so only keys whose norm is
    within ``threshold`` of the query's can match, found by binary search in the norm-sorted
    keys), and the distance over a few coordinates is a lower bound of the full one.
    ``key_norms`` / ``order`` (norms and their argsort) may be passed in when cached.
    """
    empty = np.zeros(0, np.int64)
    if len(queries) == 0 or len(keys) == 0:
        return empty, empty
    if key_norms is None:
        key_norms = np.sqrt(np.einsum("ij,ij->i", keys, keys, dtype=np.float64))
    if order is None:
        order = np.argsort(key_norms, kind="stable")
    q_norms = np.sqrt(np.einsum("ij,ij->i", queries, queries, dtype=np.float64))
    slack = threshold * (1 + 1e-6) + 1e-9  # float64 norm error is ~1e-13 here
    sorted_norms = key_norms[order]
    start = np.searchsorted(sorted_norms, q_norms - slack, "left")
    stop = np.searchsorted(sorted_norms, q_norms + slack, "right")
    counts = stop - start
    if counts.sum() == 0:
        return empty, empty
    i = np.repeat(np.arange(len(queries)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    j = order[np.repeat(start, counts) + offsets]
    probe = slice(None, None, 16)  # a sub-vector's distance is a lower bound of the full one
    partial = queries[:, probe][i].astype(np.float64) - keys[:, probe][j]
    keep = np.einsum("ij,ij->i", partial, partial) <= slack ** 2
    i, j = i[keep], j[keep]
    near = np.zeros(len(i), bool)
    limit = threshold ** 2
    for lo in range(0, len(i), 2048):  # bounded memory for clusters of equal curves
        part = slice(lo, lo + 2048)
        diff = queries[i[part]] - keys[j[part]]  # float32: decides all but borderline pairs
        d2 = np.einsum("ij,ij->i", diff, diff, dtype=np.float64)
        near[part] = d2 <= limit * (1 - 1e-4)
        unsure = np.nonzero(np.abs(d2 - limit) <= limit * 1e-4)[0] + lo
        for u in unsure.tolist():  # exactly as the reference decides: float64 difference
            d = queries[i[u]].astype(np.float64) - keys[j[u]].astype(np.float64)
            near[u] = np.sqrt(np.dot(d, d)) <= threshold
    return i[near], j[near]


class Archive:
    """Every normalised phenotype and equation seen, for the novelty rule.

    Plain data: it is rebuilt from genomes on resume (phenotypes are a pure function of them).
    """

    def __init__(self, n_points: int = N_POINTS):
        self._data = np.zeros((0, n_points), np.float32)
        self._norms = np.zeros((0,), np.float64)
        self._size = 0
        self._order: np.ndarray | None = None  # argsort of the norms, rebuilt after adds
        self.equations: set[str] = set()

    def __len__(self) -> int:
        return self._size

    @property
    def phenotypes(self) -> np.ndarray:
        return self._data[: self._size]

    @property
    def nbytes(self) -> int:
        """Bytes held by the phenotype store (its capacity, not just the used rows)."""
        return self._data.nbytes + self._norms.nbytes

    def add(self, phenotype: np.ndarray, equation: str) -> None:
        if self._size == len(self._data):
            grown = np.zeros((max(64, 2 * len(self._data)), self._data.shape[1]), np.float32)
            grown[: self._size] = self._data[: self._size]
            norms = np.zeros(len(grown), np.float64)
            norms[: self._size] = self._norms[: self._size]
            self._data, self._norms = grown, norms
        self._data[self._size] = phenotype
        self._norms[self._size] = np.sqrt(np.dot(self._data[self._size].astype(np.float64),
                                                 self._data[self._size]))
        self._size += 1
        self._order = None
        self.equations.add(equation)

    def near(self, phenotypes: np.ndarray, threshold: float = NOVELTY_THRESHOLD) -> np.ndarray:
        """``bool [B]``: whether each phenotype lies within L2 ``threshold`` of an archived one."""
        norms = self._norms[: self._size]
        if self._order is None:
            self._order = np.argsort(norms, kind="stable")
        i, _ = near_pairs(phenotypes, self.phenotypes, threshold, key_norms=norms,
                          order=self._order)
        out = np.zeros(len(phenotypes), bool)
        out[i] = True
        return out


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
    ops, args = encode(genomes)
    codes, depth = structure(ops, args, opset)
    verdicts: list[Verdict] = [_REJECTED[REASONS[c]] if c else None for c in codes.tolist()]
    live = np.nonzero(codes == 0)[0]
    budget = [np.inf if max_commit is None else max_commit] if commit else [0]
    for start in range(0, len(live), _CHUNK):
        chunk = live[start: start + _CHUNK]
        _check_live(chunk, evaluate(ops[chunk], args[chunk], depth[chunk], opset), opset,
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
    shaped = np.nonzero(codes == 0)[0]
    curves = normalise(raw[shaped], signs[shaped])
    # Different expressions can have equal curves: novelty is judged per distinct curve.
    distinct: dict[bytes, int] = {}
    curve_of = np.full(len(roots), -1)
    curve_of[shaped] = [distinct.setdefault(c.tobytes(), len(distinct)) for c in curves]
    first = np.zeros(len(distinct), np.int64)
    first[curve_of[shaped][::-1]] = np.arange(len(shaped))[::-1]
    in_archive = archive.near(curves[first])
    close: dict[int, list[int]] = {}  # distinct curves within 0.01 of each other
    if budget[0] > 0:
        for a, b in zip(*(x.tolist() for x in near_pairs(curves[first], curves[first])),
                        strict=True):
            if a != b:
                close.setdefault(a, []).append(b)
    memo: dict[int, str] = {}
    committed: set[int] = set()
    for i, r in zip(chunk.tolist(), which.tolist(), strict=True):
        if codes[r]:
            verdicts[i] = _REJECTED[REASONS[codes[r]]]
            continue
        c = int(curve_of[r])
        eq = expr.text(int(roots[r]), opset, memo)
        if eq in archive.equations:
            reason = "duplicate_equation"
        elif in_archive[c] or c in committed or not committed.isdisjoint(close.get(c, ())):
            reason = "duplicate_phenotype"
        else:
            reason = "ok"
        curve = curves[first[c]]
        verdicts[i] = Verdict(reason == "ok", reason, int(signs[r]), eq, curve)
        if reason == "ok" and budget[0] > 0:
            archive.add(curve, eq)
            committed.add(c)
            budget[0] -= 1


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
