import os

import pytest

from bench import common


def test_table_formats_numbers_and_rows():
    t = common.table(["name", "rate"], [["a", 1234.5], ["b", 0.012345], ["c", 7]])
    assert t.splitlines() == ["| name | rate |", "|---|---|", "| a | 1,234 |", "| b | 0.0123 |",
                              "| c | 7 |"]


def test_spread_is_median_and_range():
    assert common.spread([3.0, 1.0, 2.0]) == "2 (1–3)"
    assert common.spread([1.0, 2.0]) == "1.5 (1–2)"


def test_machine_describes_cpu_versions_and_revision():
    info = common.machine()
    for key in ("cpu", "cores", "ram", "numpy", "jax", "revision", "date"):
        assert info[key]


def test_write_section_appends_then_replaces_in_place(tmp_path):
    path = os.path.join(tmp_path, "BENCHMARKS.md")
    info = dict(common.machine(), revision="abc", date="today")
    common.write_section("one", "First", "body 1", path=path, info=info)
    common.write_section("two", "Second", "body 2", path=path, info=info)
    common.write_section("one", "First", "body 1b", path=path, info=dict(info, revision="def"))
    text = open(path).read()
    assert text.startswith(common.TITLE)
    assert text.count("<!-- machine -->") == 1 and "revision: def" in text
    assert "body 1b" in text and "body 1\n" not in text and "body 2" in text
    assert text.index("## First") < text.index("## Second")  # replaced where it was
    assert "Command: `python" in text


def test_convnet_xla_settings_and_environments():
    from bench import convnet_xla
    from lfe.core import malloc

    settings = convnet_xla.settings()
    labels = [convnet_xla.label(s) for s in settings]
    assert len(set(labels)) == len(labels) == 12  # 2 threads x 2 malloc x 2 conv + 4 PyTorch
    one = next(s for s in settings if s["threads"] == "1 core" and not s["tuned"])
    env = convnet_xla._env(one)
    assert "--xla_cpu_multi_thread_eigen=false" in env["XLA_FLAGS"]
    assert env[malloc.OPT_OUT] == "1" and "GLIBC_TUNABLES" not in env
    all_cores = next(s for s in settings if s["tuned"] and s["threads"] == "all cores")
    tuned = convnet_xla._env(all_cores)
    assert malloc.tuned(tuned) == malloc.applies() and malloc.OPT_OUT not in tuned


def _suite_row(name, model, k=1, precision="default", step_s=0.01, peak=2 ** 30):
    return {"name": name, "model": model, "k": k, "precision": precision, "steps": 300,
            "wall_s": 10.0, "first_interval_s": 3.0, "step_s": step_s, "eval_s": 0.2,
            "compile_s": 2.0, "status": ["ok"], "peak_bytes_in_use": peak,
            "bytes_in_use": peak // 2, "bytes_limit": 2 ** 37}


def test_gpu_suite_section_from_results(tmp_path):
    """The section a finished GPU run's results file becomes (no training: instant)."""
    import json

    from bench import gpu_suite

    rows = [_suite_row("warm-up (first compile)", "convnet"),
            _suite_row("sequential gate", "convnet", step_s=0.002),
            _suite_row("sequential surrogate", "convnet", step_s=0.002),
            _suite_row("surrogate", "efficientnetv2_s", precision="bfloat16", step_s=0.025,
                       peak=2 ** 32),
            _suite_row("surrogate", "efficientnetv2_s", step_s=0.05, peak=2 ** 33),
            _suite_row("vmapped", "convnet", k=8, step_s=0.004),
            _suite_row("sequential surrogate", "convnet", precision="bfloat16", step_s=0.002),
            _suite_row("sequential surrogate", "convnet", precision="highest", step_s=0.004)]
    result = {"device": "NVIDIA H200", "platform": "gpu", "jax": "0.10.2", "jaxlib": "0.10.2",
              "flax": "0.12.8", "python": "3.11", "revision": "abc", "date": "today",
              "command": "python -m bench.gpu_suite --synthetic", "total_s": 300.0,
              "data": "synthetic", "tiny": False, "rows": rows, "skipped": ["x (budget)"],
              "errors": [], "k_choice": {"k": 8, "source": "measured", "wall_s": 20.0,
                                         "max_k": 16, "rows": [
                                             {"k": 1, "rate": 500.0, "compile_s": 2.0,
                                              "peak_bytes": 2 ** 30},
                                             {"k": 2, "rate": 900.0, "compile_s": 2.0,
                                              "peak_bytes": 2 ** 30},
                                             {"k": 4, "rate": 1500.0, "compile_s": 2.0,
                                              "peak_bytes": 2 ** 31},
                                             {"k": 8, "rate": 2000.0, "compile_s": 2.0,
                                              "peak_bytes": 2 ** 31},
                                             {"k": 16, "error": "XlaRuntimeError: OOM"}]}}
    json.dump(result, open(tmp_path / "gpu.json", "w"))
    bench_md = str(tmp_path / "BENCHMARKS.md")
    gpu_suite.main(["--from-json", str(tmp_path / "gpu.json"), "--benchmarks", bench_md])
    text = open(bench_md).read()
    assert text.count("<!-- bench:gpu-suite-h200 -->") == 1
    assert "## 7. One accelerator: NVIDIA H200" in text
    assert gpu_suite.render(result) in text
    # candidates/h: sequential 800 * 0.002 + 2 + 2 + 8000 * 0.002 + 80 * 0.2 = 37.6 s
    assert "| sequential (`train.run`) | 1 | 8000 | 37.6 | 95.7 | 4 |" in text
    assert "| vmapped (`population.run`) | 8 | 8000 | 6.4 | 562 | 2 |" in text
    effnet = "| surrogate | efficientnetv2_s | 1 |"
    assert f"{effnet} bfloat16 | 300 | 2 | 40 | 40 | 0.2 | 4.00 |" in text  # each its own peak
    assert f"{effnet} default | 300 | 2 | 20 | 20 | 0.2 | 8.00 |" in text
    assert "| vmapped | convnet | 8 | default | 300 | 2 | 250 | 2,000 | 0.2 | ≤ 1.00 |" in text
    assert "**6.9 min per candidate** once the step is compiled" in text  # 400 + 16 s
    assert "bf16 compute, float32 parameters and loss" in text and "**3.6 min" in text
    assert "| efficientnetv2_s | 20 |  | 40 | 2 | 2 | 2 |" in text  # bf16 2x, no highest row
    assert "| convnet | 500 | 250 | 500 | 1 | 2 | 2 |" in text
    assert "**K = 8**" in text and "| 16 |  |  | n/a | XlaRuntimeError: OOM |" in text
    assert "Skipped (time budget): x (budget)." in text


# slow: the tiny suite trains every row on the CPU (ConvNet data-form steps, two-stage
# EfficientNetV2 in float32 and bf16, a K=2 population, the K choice at K=1 and 2): seven XLA
# compiles, 410-470 s on 2 cores under other load
@pytest.mark.slow
def test_gpu_suite_tiny_runs_on_cpu_and_rewrites_its_section_from_json(tmp_path):
    import json

    from bench import gpu_suite

    bench_md = str(tmp_path / "BENCHMARKS.md")
    result = gpu_suite.main(["--tiny", "--synthetic", "--out", str(tmp_path), "--budget-s",
                             "100000", "--benchmarks", bench_md])  # every row, however slow
    runs = {(r["name"], r["model"], r["k"], r["precision"]) for r in result["rows"]}
    assert runs == {("sequential gate", "convnet", 1, "default"),
                    ("sequential surrogate", "convnet", 1, "default"),
                    ("surrogate", "efficientnetv2_s", 1, "default"),
                    ("vmapped", "convnet", 2, "default"),
                    ("surrogate", "efficientnetv2_s", 1, "bfloat16"),
                    ("sequential surrogate", "convnet", 1, "bfloat16")}
    assert not result["errors"] and not result["skipped"]
    for r in result["rows"]:
        assert r["status"] == ["ok"] and r["step_s"] > 0 and r["compile_s"] > 0
    choice = result["k_choice"]
    assert choice["k"] in (1, 2) and choice["rows"][0]["k"] == 1 and choice["rows"][0]["rate"] > 0
    saved = json.load(open(tmp_path / "gpu_suite.json"))
    assert saved["rows"] == json.loads(json.dumps(result["rows"])) and "synthetic" in saved["data"]
    text = open(bench_md).read()
    assert "<!-- bench:gpu-suite-cpu -->" in text and "code-path check" in text
    assert "candidates/h" in text and "RandAugment), bf16 compute" in text
    assert "bf16 speed-up over default" in text and "K choice" in text
    assert gpu_suite.render(saved) in text


def test_keras_convnet_schedule_interleaves_and_report_takes_ratios_within_repeats():
    from bench import keras_convnet

    order = keras_convnet.schedule(["jax_step", "keras"], ["all", "1"], 2)
    assert order == [(0, "all", "jax_step"), (0, "all", "keras"), (0, "1", "jax_step"),
                     (0, "1", "keras"), (1, "1", "keras"), (1, "1", "jax_step"),
                     (1, "all", "keras"), (1, "all", "jax_step")]

    def res(rate, cpu):
        return {"blocks": [{"steps_per_s": rate, "cpu_ms_per_step": cpu},
                           {"steps_per_s": rate / 2, "cpu_ms_per_step": 2 * cpu}],
                "compile_s": 1.0}

    results = {("1", "jax_step"): [res(10.0, 100.0), res(20.0, 50.0)],
               ("1", "keras"): [res(20.0, 50.0), res(20.0, 100.0)]}
    text = keras_convnet.report(results, ["jax_step", "keras"], ["1"], repeats=2, steps=3,
                                blocks=2, loss="cross_entropy",
                                params=((13930, 72), (13930, 72)), notes=["torch skipped"])
    assert "| 1 core | jax_step / keras | 0.75 (0.5–1) | 1.25 (0.5–2) |" in text
    assert "13,930 + 72 (equal)" in text and "- torch skipped" in text
    keep, notes = keras_convnet.available(["jax_step", "keras"], None)
    assert keep == ["jax_step"] and "keras skipped" in notes[0]
    with pytest.raises(ValueError, match="unknown variant"):
        keras_convnet.available(["jax"], None)


def test_keras_convnet_tiny_runs_the_project_step_and_keras_where_tensorflow_is():
    """One thread setting, 3 steps; the Keras variant only where this venv has TensorFlow (the
    bench's own TensorFlow lives in .venv-bench, not in the test venv)."""
    import importlib.util
    import sys

    from bench import keras_convnet

    variants = ["jax_step"]
    if importlib.util.find_spec("tensorflow") is not None:
        variants.append("keras")
    text = keras_convnet.main(["--tiny", "--threads", "1", "--variants", ",".join(variants),
                               "--keras-python", sys.executable, "--no-write"])
    assert "| 1 core | jax_step |" in text and "13,930 trainable + 72 BatchNorm" in text
    if "keras" in variants:
        assert "jax_step / keras" in text and "(equal)" in text
