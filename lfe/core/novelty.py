"""Step 4 of the integrity check (paper §3.3): novelty of normalised phenotypes.

A candidate's normalised phenotype must lie at L2 distance > 0.01 from every archived one. The
authors compare one by one (``lfe.core.reference``); here both comparisons are exact and cheap:

* against the archive (thousands of curves), ``near_pairs`` bounds which pairs can be within the
  threshold by the triangle inequality on their norms (``|‖a‖ − ‖b‖| ≤ ‖a − b‖``: a binary search
  in the norm-sorted archive) and by the distance over a few coordinates, and decides the rest in
  float64;
* within a batch judged in order (``commit=True``), only curves accepted earlier in the batch
  matter, and those are mutually more than 0.01 apart: ``Accepted`` keeps them sorted by norm, so
  a candidate meets the few in its norm window, and a cluster of near-identical curves costs one
  distance per member.

NumPy only: the check runs in the evolution controller, which never imports JAX.
"""

from __future__ import annotations

import bisect

import numpy as np

NOVELTY_THRESHOLD = 0.01
# Norm windows: the triangle-inequality bound widened by far more than the float64 error of the
# norms (~1e-13 here), so no pair within the threshold falls outside its window.
_SLACK_FACTOR, _SLACK_ABS = 1 + 1e-6, 1e-9


def norms(x: np.ndarray) -> np.ndarray:
    """Row L2 norms ``[n]`` of ``x [n, N]`` in float64 (used only for windows with slack)."""
    return np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))


def is_near(a: np.ndarray, b: np.ndarray, threshold: float = NOVELTY_THRESHOLD) -> bool:
    """The authors' test for two curves, exactly as ``reference.check`` computes it."""
    d = a.astype(np.float64) - b.astype(np.float64)
    return bool(np.sqrt(np.dot(d, d)) <= threshold)


def near_pairs(queries: np.ndarray, keys: np.ndarray, threshold: float = NOVELTY_THRESHOLD,
               *, key_norms: np.ndarray | None = None, order: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """All ``(i, j)`` with ``|queries[i] - keys[j]|_2 <= threshold``, decided as ``is_near``.

    Exact, without comparing every pair: only keys whose norm is within ``threshold`` of the
    query's can match (found by binary search in the norm-sorted keys), and the distance over a
    few coordinates is a lower bound of the full one. ``key_norms`` / ``order`` (norms and their
    argsort) may be passed in when cached.
    """
    empty = np.zeros(0, np.int64)
    if len(queries) == 0 or len(keys) == 0:
        return empty, empty
    if key_norms is None:
        key_norms = norms(keys)
    if order is None:
        order = np.argsort(key_norms, kind="stable")
    q_norms = norms(queries)
    slack = threshold * _SLACK_FACTOR + _SLACK_ABS
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
        for u in unsure.tolist():  # exactly as the reference decides
            near[u] = is_near(queries[i[u]], keys[j[u]], threshold)
    return i[near], j[near]


class Archive:
    """Normalised phenotypes and equations, for the novelty rule: every one seen, or (``subset``)
    those of the current population.

    Plain data: it is rebuilt from genomes on resume (phenotypes are a pure function of them).
    """

    def __init__(self, n_points: int = 1000):
        self._data = np.zeros((0, n_points), np.float32)
        self._norms = np.zeros((0,), np.float64)
        self._size = 0
        self._order: np.ndarray | None = None  # argsort of the norms, rebuilt after adds
        self.equations: set[str] = set()
        self._equation_rows: list[str] = []  # the equation of each row, in order

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
        self.extend(np.asarray(phenotype)[None], [equation])

    def extend(self, phenotypes: np.ndarray, equations: list[str]) -> None:
        """Adds ``phenotypes [k, N]`` and their ``k`` equations (grown by doubling)."""
        k = len(phenotypes)
        if self._size + k > len(self._data):
            rows = max(64, 2 * len(self._data), self._size + k)
            grown = np.zeros((rows, self._data.shape[1]), np.float32)
            grown[: self._size] = self._data[: self._size]
            grown_norms = np.zeros(rows, np.float64)
            grown_norms[: self._size] = self._norms[: self._size]
            self._data, self._norms = grown, grown_norms
        new = slice(self._size, self._size + k)
        self._data[new] = phenotypes
        self._norms[new] = norms(self._data[new])
        self._size += k
        self._order = None
        self.equations.update(equations)
        self._equation_rows.extend(equations)

    def copy(self) -> Archive:
        """An independent archive with the same contents."""
        out = Archive(self._data.shape[1])
        out.extend(self.phenotypes, list(self._equation_rows))
        return out

    def subset(self, rows: list[int]) -> Archive:
        """An independent archive of the given rows, in that order (the novelty scope of a
        search that checks against its current population only)."""
        out = Archive(self._data.shape[1])
        if rows and not 0 <= min(rows) <= max(rows) < self._size:
            raise IndexError(f"archive rows {min(rows)}..{max(rows)} outside 0..{self._size - 1}")
        if rows:
            out.extend(self._data[np.asarray(rows, np.int64)], [self._equation_rows[i]
                                                                for i in rows])
        return out

    def added_since(self, n: int) -> list[tuple[np.ndarray, str]]:
        """``(phenotype, equation)`` of every row added after the first ``n``, in order."""
        return [(self._data[i].copy(), self._equation_rows[i]) for i in range(n, self._size)]

    def near(self, phenotypes: np.ndarray, threshold: float = NOVELTY_THRESHOLD) -> np.ndarray:
        """``bool [B]``: whether each phenotype lies within L2 ``threshold`` of an archived one."""
        norms_ = self._norms[: self._size]
        if self._order is None:
            self._order = np.argsort(norms_, kind="stable")
        i, _ = near_pairs(phenotypes, self.phenotypes, threshold, key_norms=norms_,
                          order=self._order)
        out = np.zeros(len(phenotypes), bool)
        out[i] = True
        return out


class Accepted:
    """The curves accepted so far while a batch is judged in order (rows of ``curves``).

    ``near(c)``: is curve ``c`` within the threshold of an accepted one? Only accepted curves in
    ``c``'s norm window are compared, each with ``is_near`` (the reference's arithmetic), stopping
    at the first hit; accepted curves are mutually novel, so windows hold few of them.
    """

    def __init__(self, curves: np.ndarray, threshold: float = NOVELTY_THRESHOLD):
        self._curves = curves
        self._threshold = threshold
        self._slack = threshold * _SLACK_FACTOR + _SLACK_ABS
        self._norms = norms(curves).tolist()
        self._sorted: list[float] = []  # norms of the accepted curves, ascending
        self._ids: list[int] = []  # the accepted curves in that order
        self._near: set[int] = set()  # accepted, or found near an accepted one (stays so)
        self._wide: dict[int, np.ndarray] = {}  # float64 copies of the curves compared so far

    def _row(self, c: int) -> np.ndarray:
        row = self._wide.get(c)
        if row is None:
            row = self._wide[c] = self._curves[c].astype(np.float64)
        return row

    def near(self, c: int) -> bool:
        if c in self._near:
            return True
        norm = self._norms[c]
        lo = bisect.bisect_left(self._sorted, norm - self._slack)
        hi = bisect.bisect_right(self._sorted, norm + self._slack)
        for k in self._ids[lo:hi]:
            d = self._row(c) - self._row(k)  # as is_near computes it
            if np.sqrt(np.dot(d, d)) <= self._threshold:
                self._near.add(c)
                return True
        return False

    def add(self, c: int) -> None:
        at = bisect.bisect_right(self._sorted, self._norms[c])
        self._sorted.insert(at, self._norms[c])
        self._ids.insert(at, c)
        self._near.add(c)
