import subprocess
import sys

import numpy as np
import pytest

from lfe.core import equation as E
from lfe.core import genome as G
from lfe.core import integrity as I
from lfe.core import reference as R


def check_one(nodes, archive=None):
    return I.check_batch([G.make(nodes)], archive or I.Archive())[0]


# One hand-built genome per rejection rule; each trips exactly that rule.
CASES = {
    "cycle": [("add", ["y", "h1"]), ("mul", ["yhat", "h0"]), ("neg", ["h0"]), ("neg", ["h0"]),
              ("neg", ["h0"])],
    "missing_y": [("ln", ["yhat"]), ("neg", ["h0"]), ("neg", ["h0"]), ("neg", ["h0"]),
                  ("neg", ["h0"])],
    "missing_yhat": [("ln", ["y"]), ("neg", ["yhat"]), ("neg", ["h0"]), ("neg", ["h0"]),
                     ("neg", ["h0"])],
    # 1/((y - yhat) + eps) divides by zero at the first point (y = 0, yhat = eps)
    "non_finite": [("sub", ["y", "yhat"]), ("neg", ["h0"]), ("neg", ["h0"]), ("neg", ["h0"]),
                   ("reciprocal", ["h0"])],
    # -(yhat) - |y| sums to the constant -2 over the two classes: every step is zero
    "plateau": [("abs", ["y"]), ("neg", ["yhat"]), ("neg", ["h0"]), ("neg", ["h0"]),
                ("sub", ["h1", "h0"])],
    "multiple_optima": [("tanh", ["y"]), ("dtanh", ["yhat"]), ("neg", ["h0"]), ("neg", ["h0"]),
                        ("max", ["h1", "h0"])],
    # |y + yhat^2| sums to 1 + p^2 + (1-p)^2: a valley at yhat = 0.5
    "optimum_near_half": [("square", ["yhat"]), ("add", ["y", "h0"]), ("neg", ["h0"]),
                          ("neg", ["h0"]), ("abs", ["h1"])],
}


@pytest.mark.parametrize("reason", sorted(CASES))
def test_each_rule_has_a_genome_that_trips_it(reason):
    v = check_one(CASES[reason])
    assert (v.ok, v.reason) == (False, reason)
    assert R.check(G.make(CASES[reason]), [], set())[0] == reason


def test_accepted_examples_and_orientation():
    ce = [("ln", ["yhat"]), ("mul", ["y", "h0"]), ("neg", ["h0"]), ("neg", ["h0"]),
          ("neg", ["h1"])]
    v = check_one(ce)
    assert (v.ok, v.sign) == (True, 1)  # CE increases away from the correct answer
    assert check_one(ce[:4] + [("abs", ["h1"])]).sign == 1  # |y ln yhat| is CE again
    neg_ce = ce[:4] + [("sinh", ["h1"])]  # y ln(yhat) is decreasing -> flipped
    v = check_one(neg_ce)
    assert (v.ok, v.sign) == (True, -1)
    assert v.phenotype[0] == pytest.approx(0.0) and v.phenotype.max() == pytest.approx(1.0)


def test_duplicate_phenotype_and_duplicate_equation():
    archive = I.Archive()
    a = [("mul", ["y", "yhat"]), ("neg", ["h0"]), ("neg", ["h0"]), ("neg", ["h0"]),
         ("sub", ["h1", "h0"])]
    assert I.check_batch([G.make(a)], archive, commit=True)[0].ok
    # same phenotype, different printed equation (arguments of mul swapped)
    b = [("mul", ["yhat", "y"])] + a[1:]
    assert check_one(b, archive).reason == "duplicate_phenotype"
    # same printed equation, different genome (an inactive node differs)
    c = a[:2] + [("exp", ["y"])] + a[3:]
    assert G.make(c) != G.make(a)
    assert check_one(c, archive).reason == "duplicate_equation"
    # scaling a phenotype does not make it novel: 3 * (...) normalises to the same curve
    d = [("mul", ["y", "yhat"]), ("neg", ["h0"]), ("sub", ["h1", "h0"]), ("add", ["h2", "h1"]),
         ("add", ["h3", "h1"])]
    assert check_one(d, archive).reason == "duplicate_phenotype"


def synthetic(kind):
    x = np.linspace(0.0, 1.0, 1000)
    curves = {
        "increasing": x, "decreasing": -x, "valley": (x - 0.2) ** 2,
        "inverted_valley": -((x - 0.8) ** 2), "two_valleys": np.cos(6 * np.pi * x),
        "weak_increasing": np.floor(x * 995) / 995,  # monotone with a few zero steps
        "weak_decreasing": -np.floor(x * 995) / 995,
        "long_plateau": np.minimum(x, 0.9), "leading_zeros": np.maximum(x, 0.004),
        "half_valley": (x - 0.5) ** 2, "flat": np.zeros_like(x),
    }
    return curves[kind].astype(np.float32)


@pytest.mark.parametrize("kind, reason, sign", [
    ("increasing", "ok", 1), ("decreasing", "ok", -1), ("valley", "ok", 1),
    ("inverted_valley", "ok", -1), ("two_valleys", "multiple_optima", 1),
    ("weak_increasing", "ok", 1), ("weak_decreasing", "ok", -1),
    ("long_plateau", "plateau", 1), ("leading_zeros", "ok", 1),
    ("half_valley", "optimum_near_half", 1), ("flat", "plateau", 1),
])
def test_shape_rule_on_synthetic_curves(kind, reason, sign):
    ph = synthetic(kind)
    got, s, normalised = I.shape_rule(ph)
    assert got == reason
    assert R.shape_rule(ph) == (reason, sign if reason == "ok" else 1)
    if reason == "ok":
        assert s == sign
        assert float(normalised.min()) == pytest.approx(0)
        assert float(normalised.max()) == pytest.approx(1)
        assert float(normalised[0]) < float(normalised[-1]) or kind.endswith("valley")
        np.testing.assert_array_equal(normalised, R.normalise(sign * ph))


def test_weakly_monotone_curves_are_not_trained_backwards():
    # The authors' code flipped weakly increasing curves; here they keep their sign.
    assert I.shape_rule(synthetic("weak_increasing"))[:2] == ("ok", 1)


def test_non_finite_and_flat_normalisation():
    ph = np.linspace(0, 1, 1000).astype(np.float32)
    ph[3] = np.nan
    assert I.shape_rule(ph)[0] == "non_finite"
    tiny = (np.linspace(0, 1, 1000) * 1e-5).astype(np.float32)
    _, _, normalised = I.shape_rule(tiny)
    np.testing.assert_array_equal(normalised, tiny)  # left as is below 1e-4


def test_phenotype_inputs_follow_spec():
    y, yhat = I.phenotype_inputs()
    assert y.shape == yhat.shape == (1000, 2) and yhat.dtype == np.float32
    assert np.all(y == [0.0, 1.0])
    assert yhat[0, 1] == np.float32(1 - 1e-7) and yhat[0, 0] == np.float32(1e-7)


def random_genomes(n, seed):
    rng = np.random.default_rng(seed)
    return [G.random_genome(rng) for _ in range(n)]


def test_batched_check_equals_per_genome_check():
    gs = random_genomes(1500, seed=11)
    batched = I.check_batch(gs, I.Archive(), commit=True)
    archive = I.Archive()
    single = [I.check_batch([g], archive, commit=True)[0] for g in gs]
    assert [(v.reason, v.sign) for v in batched] == [(v.reason, v.sign) for v in single]
    assert sum(v.ok for v in batched) > 30


@pytest.mark.parametrize("op_set, init", [("paper", "authors"), ("authors", "uniform")])
def test_batched_check_gives_the_reference_verdicts(op_set, init):
    # Same NumPy ops in float32, so the phenotypes and hence the verdicts are identical.
    rng = np.random.default_rng(12)
    gs = [G.random_genome(rng, op_set, init) for _ in range(2500)]
    batched = I.check_batch(gs, I.Archive(), commit=True)
    phenotypes, equations = [], set()
    ref = [R.check(g, phenotypes, equations) for g in gs]
    assert [(v.reason, v.sign if v.ok else 1) for v in batched] == \
        [(r, s if r == "ok" else 1) for r, s in ref]
    accepted = [v.phenotype for v in batched if v.ok]
    assert len(accepted) == len(phenotypes) > 30
    for mine, theirs in zip(accepted, phenotypes, strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_structure_matches_the_graph_walk():
    rng = np.random.default_rng(14)
    gs = [G.random_genome(rng, "paper", init) for init in ("authors", "uniform")
          for _ in range(1500)]
    codes, depth = I.structure(G.arg_array(gs, np.int64))
    for g, c, d in zip(gs, codes, depth, strict=True):
        assert I.REASONS[c] == (I.structural_reason(g) or "ok")
        active = {G.N_INPUTS + s for s in range(G.N_NODES) if d[s] > 0}
        if c == 0:
            assert active == set(G.active_nodes(g))
            order = G.topological_order(g)
            assert all(d[n - G.N_INPUTS] > max([d[a - G.N_INPUTS] for a in g.node_args(n)
                                                 if a >= G.N_INPUTS], default=0)
                       for n in order if n in active)


def test_equations_and_phenotypes_are_the_per_genome_ones():
    gs = random_genomes(1500, seed=16)
    verdicts = I.check_batch(gs, I.Archive())
    checked = [(g, v) for g, v in zip(gs, verdicts, strict=True) if v.equation]
    assert len(checked) > 50
    for g, v in checked:
        assert v.equation == E.text(g)
        np.testing.assert_array_equal(v.phenotype, R.normalise(v.sign * R.phenotype(g)))


def test_importing_the_check_does_not_import_jax():
    code = ("import sys, lfe.core.integrity, lfe.core.evolution, lfe.core.reference; "
            "assert 'jax' not in sys.modules, 'jax imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_commit_false_leaves_archive_unchanged():
    gs = random_genomes(300, seed=13)
    archive = I.Archive()
    v = I.check_batch(gs, archive)
    assert len(archive) == 0 and not archive.equations
    assert sum(x.ok for x in v) >= sum(x.ok for x in I.check_batch(gs, I.Archive(), commit=True))


def test_sample_valid_yields_only_valid_distinct_genomes():
    archive = I.Archive()
    found = I.sample_valid(np.random.default_rng(5), 40, archive, batch_size=128)
    assert len(found) == 40 == len(archive)
    recheck = I.Archive()
    for g, v in found:
        assert v.ok
        assert I.check_batch([g], recheck, commit=True)[0].ok  # valid and mutually novel
    # deterministic given the RNG
    again = I.sample_valid(np.random.default_rng(5), 40, I.Archive(), batch_size=128)
    assert [g for g, _ in again] == [g for g, _ in found]


def test_prefilled_archive_gives_the_reference_verdicts():
    # The controller's setting: thousands archived, new genomes judged against them.
    rng = np.random.default_rng(21)
    archive = I.Archive()
    I.sample_valid(rng, 150, archive, batch_size=256)
    parents = random_genomes(400, seed=22)
    gs = random_genomes(1500, seed=23) + [G.mutate(rng, p) for p in parents]
    phenotypes, equations = list(archive.phenotypes), set(archive.equations)
    batched = I.check_batch(gs, archive.copy(), commit=True)
    ref = [R.check(g, phenotypes, equations) for g in gs]
    assert [(v.reason, v.sign if v.ok else 1) for v in batched] == \
        [(r, s if r == "ok" else 1) for r, s in ref]
    reasons = {v.reason for v in batched}
    assert {"ok", "duplicate_phenotype", "duplicate_equation"} <= reasons
