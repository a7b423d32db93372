import numpy as np
import pytest

from lfe.core import novelty as N


def clusters(rng, n_centres=30, per=12, scales=(0.0, 0.004, 0.0099, 0.0101, 0.02), n=1000):
    """Clusters of near-identical curves at distances around the threshold, some exactly equal,
    shuffled so that members of a cluster arrive in random order."""
    centres = rng.random((n_centres, n)).astype(np.float32)
    members = [centres[k] + rng.normal(0, rng.choice(scales) / np.sqrt(n), n).astype(np.float32)
               for k in rng.integers(0, n_centres, n_centres * per)]
    curves = np.concatenate([centres, np.stack(members)])
    return curves[rng.permutation(len(curves))]


def brute_force_accept(curves):
    """The sequential rule as the authors apply it: compare with every accepted curve."""
    accepted = []
    for c in range(len(curves)):
        if not any(N.is_near(curves[c], curves[k]) for k in accepted):
            accepted.append(c)
    return accepted


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accepted_follows_the_sequential_commit_rule(seed):
    curves = clusters(np.random.default_rng(seed))
    acc = N.Accepted(curves)
    mine = []
    for c in range(len(curves)):
        if not acc.near(c):
            acc.add(c)
            mine.append(c)
    want = brute_force_accept(curves)
    assert mine == want
    assert 30 <= len(want) <= len(curves) - 100  # many rejected, by exact and near twins
    # asking again is consistent: every curve is now near an accepted one
    assert all(acc.near(c) for c in range(len(curves)))


def test_accepted_on_curves_at_the_threshold():
    # pairs at exactly representable offsets straddling 0.01 along one coordinate
    base = np.zeros((1, 1000), np.float32)
    offsets = np.float32([0.0, 0.0099999, 0.01, 0.0100001, 0.02, 0.0300001])
    curves = np.repeat(base, len(offsets), 0)
    curves[:, 0] = offsets
    acc = N.Accepted(curves)
    got = []
    for c in range(len(curves)):
        if not acc.near(c):
            acc.add(c)
            got.append(c)
    assert got == brute_force_accept(curves)


def test_near_pairs_is_exact():
    rng = np.random.default_rng(17)
    base = rng.random((40, 1000)).astype(np.float32)
    keys = np.concatenate([base] + [base + rng.normal(0, s / np.sqrt(1000), base.shape)
                                    .astype(np.float32) for s in (0.0, 0.005, 0.0099, 0.0101)])
    queries = keys[::3] + np.float32(1e-4)
    i, j = N.near_pairs(queries, keys)
    d = np.sqrt(((queries[:, None].astype(np.float64) - keys[None]) ** 2).sum(-1))
    want = np.nonzero(d <= 0.01)
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == \
        sorted(zip(want[0].tolist(), want[1].tolist(), strict=True))
    assert 0 < len(i) < d.size


def test_archive_grows_and_near_is_exact():
    archive = N.Archive(n_points=4)
    rng = np.random.default_rng(0)
    pts = rng.random((200, 4)).astype(np.float32)
    for i, p in enumerate(pts[:150]):
        archive.add(p, f"e{i}")
    archive.extend(pts[150:], [f"e{i}" for i in range(150, 200)])
    assert len(archive) == 200 and len(archive.equations) == 200
    np.testing.assert_array_equal(archive.phenotypes, pts)
    q = np.stack([pts[3] + np.float32([0.0099, 0, 0, 0]), pts[3] + np.float32([0.0101, 0, 0, 0])])
    near = archive.near(q)
    dists = np.sqrt(((pts[None].astype(np.float64) - q[:, None]) ** 2).sum(-1)).min(1)
    np.testing.assert_array_equal(near, dists <= 0.01)
    twin = archive.copy()
    twin.add(q[0], "new")
    assert len(archive) == 200 and "new" not in archive.equations and len(twin) == 201


def test_subset_keeps_the_rows_asked_for_in_order():
    archive = N.Archive(3)
    archive.extend(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32), ["a", "b", "c"])
    part = archive.subset([2, 0])
    np.testing.assert_array_equal(part.phenotypes, [[0, 1, 0], [0, 0, 0]])
    assert part.equations == {"c", "a"} and part.added_since(0)[0][1] == "c"
    near = part.near(np.array([[1, 0, 0], [0, 1, 0.005]], np.float32))
    assert near.tolist() == [False, True]  # row "b" is out of the subset; "c" is 0.005 away
    assert len(archive.subset([])) == 0 and len(archive) == 3
    with pytest.raises(IndexError, match="outside 0..2"):
        archive.subset([3])
