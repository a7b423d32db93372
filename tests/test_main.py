import json
import os
import subprocess
import sys

import pytest

from configs import phenotypes as phenotypes_config
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
        __import__("lfe.training.losses").losses.available()) + ", or a path to a genome JSON file"]

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

