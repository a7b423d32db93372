"""A per-candidate reference of the integrity check, written the way the authors' code works.

One genome at a time: its phenotype is computed in NumPy (float32, the ops' NumPy forms), the
shape rule is a plain loop over the differences, and novelty is compared with each archived
phenotype one by one. It shares only the rule constants and the per-genome graph walk of step 1
with ``lfe.core.integrity`` (none of its batched machinery), so tests use it to cross-check the
batched
check, and ``bench/integrity.py`` uses it as the speed baseline.
"""

from __future__ import annotations

import numpy as np

from lfe.core import equation as equation_lib
from lfe.core import genome as genome_lib
from lfe.core import integrity as integrity_lib
from lfe.core.genome import N_INPUTS, ROOT, Genome


def phenotype(g: Genome) -> np.ndarray:
    """The raw binary phenotype [1000] of one genome, in float32 NumPy."""
    y, yhat = integrity_lib.phenotype_inputs()
    values = {0: y, 1: yhat, 2: np.ones_like(y), 3: -np.ones_like(y)}
    active = set(genome_lib.active_nodes(g))
    with np.errstate(all="ignore"):
        for n in (genome_lib.topological_order(g) or []) + [ROOT]:
            if n in active:
                fn = g.opset.ops[g.ops[n - N_INPUTS]].np_fn
                values[n] = np.asarray(fn(*(values[a] for a in g.node_args(n))), np.float32)
        return values[ROOT].sum(axis=-1, dtype=np.float32)


def shape_rule(ph: np.ndarray) -> tuple[str, int]:
    """The shape rule as a loop: ``(reason, sign)``, reason "ok" when accepted."""
    if not np.all(np.isfinite(ph)):
        return "non_finite", 1
    with np.errstate(over="ignore", invalid="ignore"):
        d = np.diff(ph)
    signs = [int(np.sign(x)) for x in d]
    zeros = signs.count(0)
    if zeros > integrity_lib.MAX_ZERO_STEPS or zeros == len(signs):
        return "plateau", 1
    previous = next(s for s in signs if s != 0)
    filled = []
    for s in signs:
        previous = s if s != 0 else previous
        filled.append(previous)
    changes = sum(1 for a, b in zip(filled, filled[1:], strict=False) if a != b)
    if changes > 1:
        return "multiple_optima", 1
    lo, hi = integrity_lib.NEAR_HALF
    if lo <= int(np.argmin(ph)) <= hi or lo <= int(np.argmax(ph)) <= hi:
        return "optimum_near_half", 1
    if changes == 1:
        return "ok", (-1 if filled[0] > 0 else 1)  # inverted valley is flipped
    return "ok", (-1 if filled[0] < 0 else 1)  # weakly monotone: flip if decreasing


def normalise(curve: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(curve)), float(np.max(curve))
    if hi - lo < integrity_lib.FLAT_RANGE:
        return curve.astype(np.float32)
    return ((curve - lo) / (hi - lo)).astype(np.float32)


def check(g: Genome, phenotypes: list[np.ndarray], equations: set[str]) -> tuple[str, int]:
    """Algorithm 1 for one genome against lists it appends to when the genome passes."""
    reason = integrity_lib.structural_reason(g)
    if reason is not None:
        return reason, 1
    ph = phenotype(g)
    reason, sign = shape_rule(ph)
    if reason != "ok":
        return reason, sign
    eq = equation_lib.text(g)
    if eq in equations:
        return "duplicate_equation", sign
    normalised = normalise(sign * ph)
    for other in phenotypes:
        diff = normalised.astype(np.float64) - other.astype(np.float64)
        if np.sqrt(np.dot(diff, diff)) <= integrity_lib.NOVELTY_THRESHOLD:
            return "duplicate_phenotype", sign
    phenotypes.append(normalised)
    equations.add(eq)
    return "ok", sign
