import json
import math

import numpy as np
import pytest

from lfe.core import genome as G
from lfe.core import ops

CE = [("ln", ["yhat"]), ("mul", ["y", "h0"]), ("neg", ["h0"]), ("neg", ["h0"]), ("neg", ["h1"])]


def random_genomes(n, seed=0, **kw):
    rng = np.random.default_rng(seed)
    return [G.random_genome(rng, **kw) for _ in range(n)]


def test_random_genomes_respect_search_space():
    for g in random_genomes(3000):
        for slot in range(4):
            a, b = g.args[slot]
            assert a != 4 + slot and b != 4 + slot  # never itself
            assert a in range(8)
        assert all(4 <= a < 8 for a in g.args[4] if a != -1)  # root: hidden nodes only
        for slot in range(5):
            a, b = g.args[slot]
            assert (b == -1) == (g.arity(slot) == 1)
            assert a != b


def test_authors_init_arity_probabilities():
    gs = random_genomes(20000, seed=1)
    hidden_unary = np.mean([g.arity(s) == 1 for g in gs for s in range(4)])
    root_unary = np.mean([g.arity(4) == 1 for g in gs])
    assert abs(hidden_unary - 0.7) < 0.01 and abs(root_unary - 0.2) < 0.015


def test_uniform_init_draws_from_all_34_ops():
    gs = random_genomes(20000, seed=2, init="uniform")
    unary = np.mean([g.arity(s) == 1 for g in gs for s in range(5)])
    assert abs(unary - 27 / 34) < 0.01
    assert len({g.ops[0] for g in gs}) == 34


def test_make_and_active_nodes():
    g = G.make(CE)
    assert G.active_nodes(g) == [4, 5, 8]  # h0, h1, root; h2, h3 inactive
    assert G.used_inputs(g) == {G.Y, G.YHAT}
    assert G.topological_order(g)[:2] == [4, 5]
    assert not G.has_cycle(g)


def test_cycle_detected_only_when_active():
    nodes = [("add", ["y", "h1"]), ("mul", ["yhat", "h0"]), ("neg", ["h3"]), ("neg", ["h2"]),
             ("neg", ["h0"])]
    assert G.has_cycle(G.make(nodes))
    # h2 <-> h3 cycle is inactive once the root reads a different path
    inactive = [("ln", ["yhat"]), ("mul", ["y", "h0"]), ("neg", ["h3"]), ("neg", ["h2"]),
                ("neg", ["h1"])]
    assert not G.has_cycle(G.make(inactive))


def _classify(parent, child):
    slots = [s for s in range(5)
             if parent.ops[s] != child.ops[s] or parent.args[s] != child.args[s]]
    assert len(slots) == 1, "exactly one node changes"
    s = slots[0]
    if parent.arity(s) != child.arity(s):
        return s, "arity"
    if parent.ops[s] != child.ops[s]:
        assert parent.args[s] == child.args[s]
        return s, "op"
    a, b = parent.args[s]
    return s, ("swap" if child.args[s] == (b, a) else "connection")


def test_mutation_statistics_match_appendix_b():
    rng = np.random.default_rng(7)
    parents = random_genomes(400, seed=3)
    counts = {"op": 0, "connection": 0, "swap": 0, "arity": 0}
    binary_conn = swaps = 0
    n = 0
    for parent in parents:
        for _ in range(50):
            child = rng_child = G.mutate(rng, parent)
            s, kind = _classify(parent, rng_child)
            assert 4 + s in G.active_nodes(parent), "only active nodes mutate"
            counts[kind] += 1
            if kind in ("connection", "swap") and parent.arity(s) == 2:
                binary_conn += 1
                swaps += kind == "swap"
            n += 1
            del child

    def close(p_hat, p, m):  # within 4 standard errors
        return abs(p_hat - p) < 4 * math.sqrt(p * (1 - p) / m)

    assert close(counts["op"] / n, 0.70, n)
    assert close((counts["connection"] + counts["swap"]) / n, 0.15, n)
    assert close(counts["arity"] / n, 0.15, n)
    assert close(swaps / binary_conn, 0.20, binary_conn)


def test_mutation_picks_active_nodes_uniformly_and_changes_op_within_arity():
    g = G.make(CE)  # active: h0 (unary), h1 (binary), root (unary)
    rng = np.random.default_rng(0)
    picked = {4: 0, 5: 0, 8: 0}
    n = 6000
    for _ in range(n):
        c = G.mutate(rng, g)
        s, kind = _classify(g, c)
        picked[4 + s] += 1
        if kind == "op":
            assert c.arity(s) == g.arity(s) and c.ops[s] != g.ops[s]
        if kind == "arity" and g.arity(s) == 2:
            assert c.args[s][0] in g.args[s]  # binary -> unary keeps x1 or x2
        if kind == "arity" and g.arity(s) == 1:
            assert g.args[s][0] in c.args[s]  # unary -> binary keeps the argument
    for count in picked.values():
        assert abs(count / n - 1 / 3) < 0.03


def test_mutation_is_deterministic_given_rng_state():
    g = random_genomes(1, seed=9)[0]
    a = [G.mutate(np.random.default_rng(5), g) for _ in range(3)]
    assert a[0] == a[1] == a[2]


def test_json_round_trip_is_exact():
    for op_set in ("paper", "authors"):
        for g in random_genomes(2000, seed=4, op_set=op_set):
            assert G.loads(G.dumps(g)) == g
            assert G.from_dict(json.loads(json.dumps(G.to_dict(g)))) == g


def test_json_names_ops_and_nodes():
    d = G.to_dict(G.make(CE))
    assert d["nodes"][0] == {"node": "h0", "op": "ln", "args": ["yhat"]}
    assert d["nodes"][4] == {"node": "root", "op": "neg", "args": ["h1"]}


@pytest.mark.parametrize("text, match", [
    ("{not json", "genome JSON is malformed"),
    ("[1, 2]", "must be an object"),
    ('{"nodes": []}', "needs 'nodes'"),
    ('{"nodes": [], "extra": 1}', "unknown key"),
])
def test_malformed_json_gives_one_line_error(text, match):
    with pytest.raises(ValueError, match=match) as e:
        G.loads(text)
    assert "\n" not in str(e.value)


def _with(index, **kw):
    d = G.to_dict(G.make(CE))
    d["nodes"][index].update(kw)
    return json.dumps(d)


@pytest.mark.parametrize("text, match", [
    (_with(0, op="lnn"), "unknown op 'lnn'"),
    (_with(0, args=["yhat", "y"]), "takes 1 argument"),
    (_with(0, args=["h0"]), "argument h0 not allowed"),
    (_with(4, args=["y"]), "argument y not allowed"),
    (_with(1, args=["y", "y"]), "two distinct arguments"),
    (_with(1, args=["y", "h9"]), "unknown node 'h9'"),
    (_with(2, node="h3"), "expected 'h2'"),
])
def test_invalid_genome_gives_one_line_error(text, match):
    with pytest.raises(ValueError, match=match) as e:
        G.loads(text)
    assert "\n" not in str(e.value)


def test_to_arrays_shapes():
    gs = random_genomes(7)
    o, a = G.to_arrays(gs)
    assert o.shape == (7, 5) and a.shape == (7, 5, 2) and o.dtype == np.int32
    assert o.max() < len(ops.get_op_set("paper"))


def test_to_arrays_is_the_genomes_fields():
    gs = random_genomes(50)
    o, a = G.to_arrays(gs, np.int64)
    assert o.dtype == a.dtype == np.int64
    np.testing.assert_array_equal(o, np.array([g.ops for g in gs]))
    np.testing.assert_array_equal(a, np.array([g.args for g in gs]))
    assert (a[..., 1] == -1).any()  # unary ops keep their -1
    np.testing.assert_array_equal(G.op_array(gs[3:5]), o[3:5])
    np.testing.assert_array_equal(G.arg_array(gs[3:5]), a[3:5])
    empty_ops, empty_args = G.to_arrays([])
    assert empty_ops.shape == (0, 5) and empty_args.shape == (0, 5, 2)
