import os

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
