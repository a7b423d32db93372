import json
import os
import subprocess
import sys

import pytest

from configs import phenotypes as phenotypes_config
from configs import quickstart as quickstart_config
from lfe import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "lfe.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_phenotypes_mode_writes_figures_and_statistics(tmp_path):
    config = phenotypes_config.get_config("runlocal")
    config.num_random = 1500
    stats = main.dispatch(config, str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["accepted.jsonl", "integrity_stats.json",
                                            "phenotypes.png", "phenotypes_zoom.png"]
    saved = json.load(open(tmp_path / "integrity_stats.json"))
    assert saved == stats and saved["genomes"] == 1500
    assert saved["accepted"] + sum(saved["rejected_by"].values()) == 1500
    lines = (tmp_path / "accepted.jsonl").read_text().splitlines()
    assert len(lines) == saved["accepted"] > 0
    from lfe.training import losses
    first = tmp_path / "first.json"
    first.write_text(lines[0])
    assert losses.resolve(str(first)).sign in (1, -1)


def test_unknown_mode_is_rejected(tmp_path):
    config = phenotypes_config.get_config()
    config.mode = "dance"
    with pytest.raises(ValueError,
                       match="unknown mode 'dance'; available: augment_grid, compare, "):
        main.dispatch(config, str(tmp_path))


def test_unknown_variant_is_rejected():
    with pytest.raises(ValueError, match="unknown variant"):
        phenotypes_config.get_config("bogus")


def test_cli_runs_and_reports_bad_input_in_one_line(tmp_path):
    ok = run_cli("--config=configs/phenotypes.py:runlocal", f"--workdir={tmp_path}/ok",
                 "--config.num_random=300")
    assert ok.returncode == 0, ok.stderr
    assert "integrity check:" in ok.stdout

    bad_loss = run_cli("--config=configs/phenotypes.py:runlocal", f"--workdir={tmp_path}/b",
                       "--config.losses=cross_entropy,nosuchloss")
    assert bad_loss.returncode == 2
    errors = [line for line in bad_loss.stderr.splitlines() if line.startswith("lfe: error")]
    assert errors == ["lfe: error: unknown loss 'nosuchloss'; available: " + ", ".join(
        __import__("lfe.training.losses").losses.available())
        + ", neuroloss1 (= neuroloss1_reading), or a path to a genome JSON file"]

    bad_key = run_cli("--config=configs/phenotypes.py", f"--workdir={tmp_path}/k",
                      "--config.no_such_key=1")
    assert bad_key.returncode != 0
    assert "no_such_key" in bad_key.stderr


def test_evolve_cli_one_line_errors(tmp_path):
    base = ["--config=configs/quickstart.py:runlocal", f"--workdir={tmp_path}/run"]
    missing = run_cli(*base, "--config.fitness.data_dir=/nonexistent")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1].startswith("lfe: error: no CIFAR-10 data at")
    assert not (tmp_path / "run").exists()  # nothing written for a run that cannot start
    typo = run_cli(*base, "--config.fitnes.data_dir=/x")
    assert typo.returncode == 2
    assert typo.stderr.strip().splitlines()[-1] == (
        'lfe: error: unknown config key in a --config.* override: fitnes; '
        'Did you mean "fitness" instead of "fitnes"?')


def test_invocation_is_the_command_line_as_a_shell_line():
    argv = ["/x/lfe/main.py", "--config=configs/table4.py:runlocal", "--workdir=runs/a b",
            "--config.dataset=npz:/data/my set.npz"]
    assert main.invocation(argv) == (
        "python -m lfe.main --config=configs/table4.py:runlocal '--workdir=runs/a b' "
        "'--config.dataset=npz:/data/my set.npz'")
    assert main.invocation(["lfe"]) == "python -m lfe.main"


def test_the_tpu_probe_line_is_dropped_and_nothing_else():
    import logging

    main.quiet_tpu_probe()
    main.quiet_tpu_probe()  # once
    logger = logging.getLogger("jax._src.xla_bridge")
    assert sum(isinstance(f, main._NoTpuProbe) for f in logger.filters) == 1
    probe = ("Unable to initialize backend 'tpu': INTERNAL: Failed to open libtpu.so: "
             "libtpu.so: cannot open shared object file: No such file or directory")
    failed = "Unable to initialize backend 'tpu': UNAVAILABLE: TPU chip busy"

    def shown(level, message):
        return logger.filter(logger.makeRecord(logger.name, level, "x.py", 1, message, (), None))

    assert not shown(logging.INFO, probe)
    assert shown(logging.WARNING, probe)  # a warning is never hidden
    assert shown(logging.INFO, failed)  # a TPU host whose TPU fails to start: shown
    assert shown(logging.INFO, "Unable to initialize backend 'cuda': no GPU")


def test_a_cli_run_records_its_command_line_with_its_overrides(tmp_path):
    """A compare run on another dataset: the table's Reproduce line is the command that made
    it, overrides included, and the paper's column (CIFAR-10, Table 4's protocol) is left out
    (the fake training never reads the dataset)."""
    import numpy as np

    work, data = tmp_path / "cmp", tmp_path / "other.npz"
    x, y = np.zeros((4, 32, 32, 3), np.uint8), np.arange(4) % 2
    np.savez(data, x_train=x, y_train=y, x_test=x, y_test=y)
    args = ["--config=configs/table4.py:runlocal", f"--workdir={work}",
            f"--config.dataset=npz:{data}", "--config.seeds=1"]
    done = subprocess.run([sys.executable, "-m", "tests.drive",
                           "--task=train_cell=tests.fake_training:train", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    command = "python -m lfe.main " + " ".join(args)
    assert json.load(open(work / "config.json"))["command"] == command
    md = (work / "results.md").read_text()
    assert f"Reproduce: `{command}`" in md
    assert "(paper)" not in md and "58.660" not in md
    assert "measured on in dataset, protocol.steps" in md  # runlocal: a shorter protocol too


# --------------------------------------------------------------------- issue #18: CLI and messages

def last_error(result) -> str:
    """The last stderr line, which must be the only 'lfe: error' line and no traceback."""
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert [x for x in lines if x.startswith("lfe: error")] == lines[-1:], result.stderr[-2000:]
    return lines[-1]


def test_help_names_modes_configs_variants_and_how_to_see_keys():
    out = run_cli("--help")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for mode in main.MODES:
        assert mode in text
    quickstart = text[text.index("  quickstart.py "):text.index("  report.py ")]
    assert "(mode evolve)" in quickstart and "variants: runlocal" in quickstart
    assert "variants: table8 | table9 | table10 | table11 (one required), runlocal" in text
    assert "--print_config" in text and "--config.fitness.surrogate.steps=300" in text
    assert "cifar-10-binary.tar.gz" in text  # where the data comes from
    assert run_cli("-h").stdout == text


def test_print_config_prints_the_resolved_config_with_overrides_and_exits():
    out = run_cli("--config=configs/quickstart.py:runlocal", "--config.max_iterations=7",
                  "--config.fitness.surrogate.steps=90", "--print_config")
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    assert printed["mode"] == "evolve" and printed["max_iterations"] == 7
    assert printed["fitness"]["surrogate"]["steps"] == 90
    assert printed["population_size"] == 3  # the runlocal variant


def test_a_bad_config_value_fails_at_once_naming_the_key_and_the_type(tmp_path):
    base = ["--config=configs/quickstart.py:runlocal", f"--workdir={tmp_path}/run"]
    band = run_cli(*base, "--config.ce_band=abc")
    assert band.returncode == 2
    assert last_error(band).startswith(
        "lfe: error: config.ce_band: expected () or three fitness values (max, mean, min)")
    assert not (tmp_path / "run").exists()  # refused before anything was written or trained
    top = run_cli(*base, "--config.top_k=abc")
    assert last_error(top) == ("lfe: error: config.top_k: expected an integer (it is 10 now), "
                               "got 'abc'")
    rules = run_cli(*base, "--print_config", "--config.fitness.gate.optimizer=adamw")
    assert rules.returncode == 2
    assert last_error(rules) == ("lfe: error: config.fitness.gate.optimizer: expected one of "
                                 "'adam', 'sgd_nesterov', got 'adamw'")


def test_unknown_variant_and_missing_config_are_one_plain_line():
    bad = run_cli("--config=configs/quickstart.py:bogus", "--workdir=/tmp/unused")
    assert bad.returncode == 2
    assert last_error(bad) == ("lfe: error: configs/quickstart.py:bogus: unknown variant "
                               "'bogus'; available: runlocal")
    missing = run_cli("--config=configs/nosuch.py", "--workdir=/tmp/unused")
    assert missing.returncode == 2
    line = last_error(missing)
    assert line.startswith("lfe: error: no config file 'configs/nosuch.py' (looked in ")
    assert "configs/quickstart.py" in line


def test_config_paths_resolve_outside_the_checkout(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-m", "lfe.main", "--print_config",
                          "--config=configs/phenotypes.py:runlocal"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["mode"] == "phenotypes"


def test_os_errors_name_the_path_and_the_cause(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    base = ["--config=configs/phenotypes.py:runlocal", "--config.num_random=10"]
    is_file = run_cli(*base, f"--workdir={a_file}")
    assert is_file.returncode == 2
    assert last_error(is_file) == (f"lfe: error: --workdir {a_file} is a file, not a "
                                   "directory; name a directory (created if missing)")
    under = run_cli(*base, f"--workdir={a_file}/run")
    assert under.returncode == 2
    assert last_error(under) == f"lfe: error: {a_file}/run: Not a directory"
    # as root a read-only directory is writable, so the message is checked on the error itself
    denied = PermissionError(13, "Permission denied", "/runs/x/config.json")
    assert main._last_line(denied) == "/runs/x/config.json: Permission denied"
    assert main.os_error(OSError(18, "Invalid cross-device link", "/a", None, "/b")) == (
        "/a -> /b: Invalid cross-device link")
    assert main._last_line(OSError(17, "File exists")) == "File exists"


def test_a_refused_resume_names_the_changed_key_path_and_both_values(tmp_path):
    from lfe.core import rundir

    run = tmp_path / "run"
    run.mkdir()
    rundir.claim(str(run), quickstart_config.get_config("runlocal"))
    out = subprocess.run(
        [sys.executable, "-m", "tests.drive", "--task=evaluate=tests.fake_fitness:evaluate",
         "--config=configs/quickstart.py:runlocal", f"--workdir={run}",
         "--config.fitness.surrogate.steps=50"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert last_error(out) == (f"lfe: error: {run} holds a run with a different config "
                               "(fitness.surrogate.steps: 100 → 50); use a new --workdir or the "
                               "same config")
    assert rundir.describe_changes({"a": {"b": 1}, "gone": 2}, {"a": {"b": 3}, "new": "x" * 80},
                                   ["a.b", "gone", "new"]) == (
        "a.b: 1 → 3, gone: 2 → (none), new: (none) → '" + "x" * 56 + "...")
    assert rundir.describe_changes({}, {"k": "v"}, ["k"], absent={"k": "old"}) == (
        "k: 'old' (this run, before the setting existed) → 'v'")
