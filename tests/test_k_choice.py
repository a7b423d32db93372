"""K for the vmap executor: the selection rule, the caches, a real measurement, the executor."""

import json

import pytest

from lfe import executors, worker
from lfe.core import protocol as protocol_lib
from lfe.training import k_choice, population


def rates(table):
    """A fake measurement: ``table[k]`` candidate-steps/s, an exception where it holds one."""
    seen = []

    def rate(k):
        seen.append(k)
        if isinstance(table[k], Exception):
            raise table[k]
        return table[k]

    rate.seen = seen
    return rate


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(k_choice, "_CACHE", {})
    monkeypatch.setenv(k_choice.ENV, str(tmp_path / "k_choice.json"))


def test_select_doubles_while_each_doubling_gains_ten_percent():
    rate = rates({1: 10, 2: 19, 4: 30, 8: 31, 16: 100})
    k, rows = k_choice.select(rate)
    assert k == 4 and rate.seen == [1, 2, 4, 8]  # 31 < 1.1 * 30: stop, 16 is never tried
    assert rows == [{"k": 1, "rate": 10.0}, {"k": 2, "rate": 19.0}, {"k": 4, "rate": 30.0},
                    {"k": 8, "rate": 31.0}]
    assert k_choice.select(rates({1: 10, 2: 10.9, 4: 50}))[0] == 1  # < 10%: sequential
    assert k_choice.select(rates({1: 10, 2: 7}))[0] == 1  # vmapped slower (XLA:CPU)
    assert k_choice.select(rates({1: 1, 2: 2, 4: 4}), ks=[1, 2, 4])[0] == 4  # up to the last


def test_select_stops_at_the_first_k_that_does_not_fit():
    oom = RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate\nmore")
    k, rows = k_choice.select(rates({1: 10, 2: 20, 4: 40, 8: oom, 16: 100}))
    assert k == 4 and rows[-1] == {"k": 8, "error": "RuntimeError: RESOURCE_EXHAUSTED: Out of "
                                   "memory while trying to allocate"}
    with pytest.raises(RuntimeError):  # the sequential baseline itself failed
        k_choice.select(rates({1: oom}))


def test_doubling():
    assert k_choice.doubling(32) == [1, 2, 4, 8, 16, 32]
    assert k_choice.doubling(5) == [1, 2, 4] and k_choice.doubling(0) == [1]


def _surrogate():
    return protocol_lib.fitness_config().surrogate


def test_choose_measures_once_then_answers_from_this_process_and_from_disk(tmp_path):
    shape = {"image_shape": (32, 32, 3), "num_classes": 10}
    first = k_choice.choose(_surrogate(), **shape, table={},
                            rate=rates({1: 10, 2: 19, 4: 30, 8: 31}))
    assert (first.k, first.source) == (4, "measured") and first.device.startswith("cpu:")
    assert "K = 4 (measured on cpu" in first.describe() and "K=8 31" in first.describe()
    boom = rates({})  # any further measurement would raise KeyError
    assert k_choice.choose(_surrogate(), **shape, table={}, rate=boom) == first
    k_choice._CACHE.clear()  # a new process: the table on disk answers
    again = k_choice.choose(_surrogate(), **shape, table={}, rate=boom)
    assert (again.k, again.source, again.rates) == (4, "disk", first.rates)
    stored = json.load(open(tmp_path / "k_choice.json"))
    assert list(stored) == [first.device] and len(stored[first.device]) == 1
    # another protocol shape (bf16, another batch) is measured apart and kept beside it
    other = protocol_lib.with_precision(_surrogate(), "bfloat16")
    assert k_choice.choose(other, **shape, table={}, rate=rates({1: 5, 2: 4})).k == 1
    assert len(json.load(open(tmp_path / "k_choice.json"))[first.device]) == 2
    assert not boom.seen


def test_choose_uses_the_measured_table_on_cpu_and_k1_for_protocols_it_cannot_batch(
        monkeypatch):
    shape = {"image_shape": (32, 32, 3), "num_classes": 10}
    boom = rates({})
    choice = k_choice.choose(_surrogate(), **shape, rate=boom)  # population.MEASURED_K
    assert (choice.k, choice.source) == (population.MEASURED_K["cpu"], "table") == (1, "table")
    two_phases = protocol_lib.effnetv2_protocol(
        [{"steps": 10, "image_size": 32}, {"steps": 10, "image_size": 64}], total_steps=20)
    assert k_choice.choose(two_phases, **shape, table={}, rate=boom).source == "protocol"
    failed = k_choice.choose(_surrogate(), **shape, table={}, file="",
                             rate=rates({1: MemoryError("no")}))
    assert failed.k == 1 and failed.source.startswith("fallback: measurement failed (MemoryError")
    assert not boom.seen
    monkeypatch.setenv(k_choice.ENV, "off")
    assert k_choice.path() == ""


def test_k_choice_for_the_convnet_on_cpu_is_sequential(cifar_dir):
    """The fitness config's ConvNet surrogate on this CPU: K = 1 from the measured table."""
    config = protocol_lib.fitness_config()
    config.data_dir = str(cifar_dir)
    got = worker.population_k({"name": "cross_entropy"}, config.to_dict(), "surrogate")
    assert got["k"] == 1 and got["source"] == "table" and "K = 1 (table" in got["text"]


# slow: two compiles of the data-form genome step (sequential and K = 2), ~50 s of CPU time
@pytest.mark.slow
def test_measure_times_the_sequential_and_the_vmapped_step():
    """A real measurement of a tiny ConvNet protocol at K = 1 and 2 (no timing asserted: the
    choice is whichever was faster here by the rule)."""
    protocol = protocol_lib.training_protocol(
        batch_size=8, model_kwargs={"features": (4, 4, 4), "conv_impl": "xla"})
    rows = []
    rate = k_choice.measure(protocol, image_shape=(8, 8, 3), num_classes=4, steps=2,
                            min_seconds=0.0, on_row=rows.append)
    choice = k_choice.choose(protocol, image_shape=(8, 8, 3), num_classes=4, table={},
                             file="", rate=rate, max_k=2)
    assert choice.source == "measured" and choice.k in (1, 2)
    assert [r["k"] for r in rows] == [r["k"] for r in choice.rates] == [1, 2][:len(rows)]
    assert all(r["rate"] > 0 and r["compile_s"] > 0 for r in rows)
    assert choice.k == (2 if rows[-1]["rate"] >= 1.1 * rows[0]["rate"] else 1)


def test_vmap_executor_chooses_k_per_kind_of_evaluation_at_its_first_task(monkeypatch):
    chosen, calls = [], []

    def fake_k(spec, config, stage="surrogate"):
        chosen.append(stage)
        k = {"surrogate": 3, "initial": 1}[stage]
        return {"k": k, "text": f"K = {k} (fake)"}

    def fake_population(specs, config, seeds, stage):
        calls.append((len(specs), stage))
        return [{"fitness": float(s)} for s in seeds]

    monkeypatch.setattr(worker, "population_k", fake_k)
    monkeypatch.setattr(population, "evaluate_population", fake_population)
    monkeypatch.setattr(worker, "evaluate_candidate",
                        lambda spec, config, seed, stage="surrogate": {"fitness": -seed})
    ex = executors.make("vmap")
    assert ex.capacity == 1  # before any task: MEASURED_K["cpu"]
    cfg = {"a": 1}
    for i in range(4):
        ex.submit(str(i), worker.EVALUATE, {"name": "cross_entropy"}, cfg, i, "surrogate")
        assert ex.capacity == 3
    for i in (7, 8):
        ex.submit(f"i{i}", worker.EVALUATE, {"name": "cross_entropy"}, cfg, i, "initial")
    assert ex.capacity == 1 and chosen == ["surrogate", "initial"]  # once per kind
    got = []
    while ex.pending:
        got += ex.wait_any()
    assert calls == [(3, "surrogate"), (1, "surrogate")]
    assert [o.value["fitness"] for _, o in got] == [0.0, 1.0, 2.0, 3.0, -7, -8]
    fixed = executors.make("vmap", 2)  # workers given: K is that, nothing is measured
    fixed.submit("a", worker.EVALUATE, {"name": "cross_entropy"}, cfg, 0, "initial")
    assert fixed.capacity == 2 and chosen == ["surrogate", "initial"]
