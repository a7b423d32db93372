"""The launch scripts, run with stand-ins for ``ray`` and ``python`` on PATH (no cluster)."""

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAY_START_OUTPUT = """Local node IP: 10.1.2.3
--------------------
Ray runtime started.
--------------------
Next steps
  To add another node to this Ray cluster, run
    ray start --address='10.1.2.3:6390'
"""


def stub(tmp_path, name, body):
    path = tmp_path / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)


def run(tmp_path, script, *args, **env):
    full = dict(os.environ, PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}",
                LFE_DATA_DIR="/data/cifar", **env)
    return subprocess.run([os.path.join(ROOT, "launch", script), *args], cwd=tmp_path,
                          env=full, capture_output=True, text=True, timeout=60)


def test_head_prints_the_address_ray_uses(tmp_path):
    stub(tmp_path, "ray", f'echo "stats=$RAY_USAGE_STATS_ENABLED args=$*" >&2\n'
                          f"cat <<'EOF'\n{RAY_START_OUTPUT}EOF\n")
    out = run(tmp_path, "ray_head.sh", "--num-gpus=2", RAY_PORT="6390")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == (
        "head at 10.1.2.3:6390  (export RAY_ADDRESS=10.1.2.3:6390 on the submitting host)")
    assert ("stats=0 args=start --head --port=6390 --include-dashboard=false --num-gpus=2"
            in out.stderr)


def test_head_fails_when_ray_start_fails(tmp_path):
    stub(tmp_path, "ray", "echo 'port taken' >&2\nexit 1\n")
    out = run(tmp_path, "ray_head.sh")
    assert out.returncode != 0 and "head at" not in out.stdout


def test_submit_leaves_num_gpus_to_the_cluster_unless_asked(tmp_path):
    stub(tmp_path, "python", 'echo "stats=$RAY_USAGE_STATS_ENABLED $*"\n')
    args = ("configs/surrogate.py", "runs/s", "--config.seed=3")
    auto = run(tmp_path, "ray_submit.sh", *args, RAY_ADDRESS="10.1.2.3:6390")
    assert auto.returncode == 0, auto.stderr
    assert auto.stdout.strip() == (
        "stats=0 -m lfe.main --config=configs/surrogate.py --workdir=runs/s "
        "--config.executor=ray --config.seed=3")  # config.ray.num_gpus: -1, auto
    half = run(tmp_path, "ray_submit.sh", *args, RAY_ADDRESS="h:1", NUM_GPUS="0.5")
    assert "--config.executor=ray --config.ray.num_gpus=0.5 --config.seed=3" in half.stdout
