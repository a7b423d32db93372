"""The integrity check (paper §3.3, Algorithm 1, with the exact rules of SPEC.md).

For a batch of candidate genomes, in order:

1. structure (host, per genome): reject a cycle in the active graph (``cycle``), or a root from
   which ``y`` (``missing_y``) or ``yhat`` (``missing_yhat``) cannot be reached;
2. the binary phenotype: 1000 points, y = [0, 1], yhat = [p, 1-p] with p = linspace(eps, 1-eps)
   built in float64 then cast to float32; phenotype[i] = loss summed over the two classes, so
   index 0 is the correct answer. Non-finite → ``non_finite``;
3. the shape rule on d = diff(phenotype): more than 10 zero steps or all zero → ``plateau``;
   zero steps take the previous sign; more than one sign change → ``multiple_optima``;
   a valley keeps its sign, an inverted valley is flipped, a (weakly) monotone curve is flipped
   only if it decreases (the authors' code gets weakly monotone curves backwards; not copied);
   argmin or argmax at indices 490–509 → ``optimum_near_half``;
4. novelty: the (flipped) phenotype min–max normalised (left as is when max−min < 1e-4) must be at
   L2 distance > 0.01 from every phenotype in the archive (``duplicate_phenotype``) and its
   printed equation must differ from every archived one (``duplicate_equation``).

Steps 2–3 and the normalisation run for the whole batch in one jitted call (``analyse``); the
novelty comparison is one float32 matrix product against the archive with an exact float64
re-check of the near pairs. The archive can hold every phenotype seen in a run.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from lfe import compile as compile_lib
from lfe import equation as equation_lib
from lfe import genome as genome_lib
from lfe.genome import Genome
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
    """The raw binary phenotype [n] of any elementwise loss term ``f(y, yhat)``."""
    y, yhat = phenotype_inputs(n, p)
    return np.asarray(jnp.sum(f(jnp.asarray(y), jnp.asarray(yhat)), axis=-1), np.float32)


def shape_rule(ph: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Steps 2–3 for one raw phenotype [N]: ``(reason code, sign, normalised flipped curve)``.

    Jittable and vmappable; ``reference.shape_rule`` is the same rule written as plain loops.
    """
    n = ph.shape[0] - 1
    finite = jnp.all(jnp.isfinite(ph))
    s = jnp.sign(jnp.diff(ph))
    zeros = jnp.sum(s == 0)
    plateau = (zeros > MAX_ZERO_STEPS) | (zeros == n)
    # Zero steps take the previous step's sign; leading zeros take the first non-zero sign.
    last_nonzero = jax.lax.cummax(jnp.where(s != 0, jnp.arange(n), -1))
    first_nonzero = jnp.argmax(s != 0)
    filled = s[jnp.where(last_nonzero >= 0, last_nonzero, first_nonzero)]
    changes = jnp.sum(filled[1:] != filled[:-1])
    first = filled[0]
    flip = ((changes == 0) & (first < 0)) | ((changes == 1) & (first > 0))
    sign = jnp.where(flip, -1, 1)

    def near_half(i):
        return (i >= NEAR_HALF[0]) & (i <= NEAR_HALF[1])

    near = near_half(jnp.argmin(ph)) | near_half(jnp.argmax(ph))
    code = jnp.select(
        [~finite, plateau, changes > 1, near],
        [_CODE["non_finite"], _CODE["plateau"], _CODE["multiple_optima"],
         _CODE["optimum_near_half"]],
        _CODE["ok"])
    curve = jnp.where(finite, sign * ph, 0.0)
    lo, hi = jnp.min(curve), jnp.max(curve)
    span = hi - lo
    normalised = jnp.where(span < FLAT_RANGE, curve, (curve - lo) / jnp.where(span > 0, span, 1))
    return code, sign, normalised


@functools.partial(jax.jit, static_argnames=("op_set",))
def analyse(ops, args, order, *, op_set: str = "paper"):
    """Phenotypes, shape rule and normalisation of B encoded genomes in one call.

    Returns ``codes [B]``, ``signs [B]``, ``normalised [B, 1000]``, ``raw [B, 1000]``.
    """
    y, yhat = phenotype_inputs()
    raw = compile_lib.evaluate_batch(ops, args, order, y, yhat, op_set=op_set).sum(-1)
    codes, signs, normalised = jax.vmap(shape_rule)(raw)
    return codes, signs, normalised, raw


def check_term(f) -> tuple[str, int, np.ndarray]:
    """Steps 2–3 for any per-class term ``f(y, yhat)`` (a closed-form loss, say).

    Returns ``(reason, sign, normalised phenotype)``; reason is "ok" when the shape is accepted.
    """
    code, sign, normalised = jax.device_get(jax.jit(shape_rule)(phenotype_of(f)))
    return REASONS[int(code)], int(sign), np.asarray(normalised, np.float32)


def structural_reason(g: Genome) -> str | None:
    """Step 1 for one genome: ``cycle``, ``missing_y``, ``missing_yhat`` or None."""
    if genome_lib.has_cycle(g):
        return "cycle"
    inputs = genome_lib.used_inputs(g)
    if genome_lib.Y not in inputs:
        return "missing_y"
    if genome_lib.YHAT not in inputs:
        return "missing_yhat"
    return None


class Archive:
    """Every normalised phenotype and equation seen, for the novelty rule.

    Plain data: it is rebuilt from genomes on resume (phenotypes are a pure function of them).
    """

    def __init__(self, n_points: int = N_POINTS):
        self._data = np.zeros((0, n_points), np.float32)
        self._sq = np.zeros((0,), np.float32)
        self._size = 0
        self.equations: set[str] = set()

    def __len__(self) -> int:
        return self._size

    @property
    def phenotypes(self) -> np.ndarray:
        return self._data[: self._size]

    def add(self, phenotype: np.ndarray, equation: str) -> None:
        if self._size == len(self._data):
            grown = np.zeros((max(64, 2 * len(self._data)), self._data.shape[1]), np.float32)
            grown[: self._size] = self._data[: self._size]
            sq = np.zeros(len(grown), np.float32)
            sq[: self._size] = self._sq[: self._size]
            self._data, self._sq = grown, sq
        self._data[self._size] = phenotype
        self._sq[self._size] = float(np.dot(phenotype.astype(np.float64), phenotype))
        self._size += 1
        self.equations.add(equation)

    def near(self, phenotypes: np.ndarray, threshold: float = NOVELTY_THRESHOLD) -> np.ndarray:
        """``bool [B]``: whether each phenotype lies within L2 ``threshold`` of an archived one."""
        return near_any(phenotypes, self.phenotypes, self._sq[: self._size], threshold)


def near_any(queries: np.ndarray, keys: np.ndarray, key_sq: np.ndarray,
             threshold: float) -> np.ndarray:
    """For each query row, is some key row within L2 ``threshold``? (exact in float64)."""
    out = np.zeros(len(queries), bool)
    if len(keys) == 0 or len(queries) == 0:
        return out
    q_sq = np.einsum("ij,ij->i", queries, queries, dtype=np.float64)
    approx = q_sq[:, None] + key_sq[None, :] - 2.0 * (queries @ keys.T)
    # float32 products carry an error of order 1e-6 * (|q|^2 + |k|^2): screen with a margin,
    # then decide the screened pairs exactly.
    margin = 1e-5 * (q_sq[:, None] + key_sq[None, :]) + 1e-6
    for i, j in zip(*np.nonzero(approx <= threshold ** 2 + margin), strict=True):
        if out[i]:
            continue
        diff = queries[i].astype(np.float64) - keys[j].astype(np.float64)
        out[i] = float(np.sqrt(np.dot(diff, diff))) <= threshold
    return out


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The check's answer for one candidate."""

    ok: bool
    reason: str  # "ok" or the first rule that rejected it
    sign: int  # +1, or -1 when the loss is the negated graph
    equation: str
    phenotype: np.ndarray | None  # normalised, flipped; None when step 1 rejected it


def _bucket(n: int) -> int:
    """Batch sizes are padded to powers of two (at least 8) so the jitted call rarely retraces."""
    return max(8, 1 << (n - 1).bit_length())


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
    structural = [structural_reason(g) for g in genomes]
    live = [i for i, r in enumerate(structural) if r is None]
    verdicts: list[Verdict | None] = [None] * len(genomes)
    for i, r in enumerate(structural):
        if r is not None:
            verdicts[i] = Verdict(False, r, 1, "", None)
    if live:
        enc = compile_lib.encode([genomes[i] for i in live])
        pad = _bucket(len(live)) - len(live)
        enc = {k: np.concatenate([v, np.repeat(v[:1], pad, 0)]) for k, v in enc.items()}
        codes, signs, normalised, _ = jax.device_get(analyse(**enc, op_set=op_sets.pop()))
        normalised = np.asarray(normalised, np.float32)
        in_archive = archive.near(normalised[: len(live)])
        batch_keys: list[int] = []  # rows of `normalised` accepted so far (commit=True)
        for row, i in enumerate(live):
            eq = equation_lib.text(genomes[i])
            reason = REASONS[int(codes[row])]
            if reason == "ok":
                reason = _novelty_reason(eq, normalised, row, in_archive[row], archive,
                                         batch_keys)
            verdicts[i] = Verdict(reason == "ok", reason, int(signs[row]), eq, normalised[row])
            if commit and reason == "ok" and (max_commit is None or len(batch_keys) < max_commit):
                archive.add(normalised[row], eq)
                batch_keys.append(row)
    return verdicts  # type: ignore[return-value]


def _novelty_reason(eq: str, normalised: np.ndarray, row: int, in_archive: bool,
                    archive: Archive, batch_keys: list[int]) -> str:
    if eq in archive.equations:
        return "duplicate_equation"
    if in_archive:
        return "duplicate_phenotype"
    if batch_keys:
        keys = normalised[batch_keys]
        sq = np.einsum("ij,ij->i", keys, keys, dtype=np.float64)
        if near_any(normalised[row: row + 1], keys, sq, NOVELTY_THRESHOLD)[0]:
            return "duplicate_phenotype"
    return "ok"


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
