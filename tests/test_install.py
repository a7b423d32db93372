"""Installing lfe (issue #18): `pip install .` into a fresh virtual environment gives `lfe` and
the `lfe` command outside the checkout; the package declares requirements.txt's pins; the
CIFAR-10 fallback through tensorflow-datasets works offline when tfds has the data."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ("pyproject.toml", "README.md", "requirements.txt", "requirements-ray.txt",
           "requirements-tensorboard.txt", "requirements-export.txt", "requirements-test.txt",
           "lfe", "configs")


def pins(name: str) -> list[str]:
    """The requirement lines of a requirements file (comments and blank lines dropped)."""
    with open(os.path.join(ROOT, name)) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def test_requirement_files_are_plain_pins():
    """pyproject.toml reads these files as its dependencies and extras, so every line must be
    one exact pin (an inline comment or an option would break the package's metadata)."""
    for name in SOURCES:
        if name.startswith("requirements"):
            lines = pins(name)
            assert lines, name
            for line in lines:
                assert "#" not in line and not line.startswith("-"), (name, line)
                assert "==" in line, (name, line)
    assert "importlib-resources==7.1.0" in pins("requirements.txt")  # tfds needs it, see below


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """`pip install .` of a copy of the sources into a fresh venv that sees this environment's
    packages through a .pth file (--no-deps, --no-build-isolation, --no-index: no network)."""
    base = tmp_path_factory.mktemp("install")
    src = base / "src"
    for name in SOURCES:
        origin = os.path.join(ROOT, name)
        if os.path.isdir(origin):
            shutil.copytree(origin, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            os.makedirs(src, exist_ok=True)
            shutil.copy(origin, src / name)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=300)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    with open(os.path.join(site, "_lfe_test_dependencies.pth"), "w") as f:
        f.write("\n".join(sorted(ours)) + "\n")
    out = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                          "--no-deps", "--no-build-isolation", "--no-index", "-q", str(src)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    return venv, elsewhere


def run_in(installed, *args):
    venv, elsewhere = installed
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(args, cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=300)


def test_installed_package_imports_outside_the_checkout(installed):
    venv, _ = installed
    out = run_in(installed, str(venv / "bin" / "python"), "-c",
                 "import lfe, configs, lfe.main; from importlib import metadata; "
                 "print(lfe.__file__); print(configs.__file__); "
                 "print('\\n'.join(metadata.requires('lfe')))")
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith(str(venv)) and lines[1].startswith(str(venv))
    requires = lines[2:]
    for pin in pins("requirements.txt"):
        assert pin in requires
    assert 'ray==2.60.0; extra == "ray"' in requires
    assert 'tensorboard==2.21.0; extra == "tensorboard"' in requires
    assert 'torch==2.13.0; extra == "export"' in requires
    assert 'pytest==9.2.0; extra == "test"' in requires


def test_lfe_command_has_the_cli_and_finds_the_configs(installed):
    venv, _ = installed
    lfe = str(venv / "bin" / "lfe")
    helped = run_in(installed, lfe, "--help")
    assert helped.returncode == 0, helped.stderr[-3000:]
    assert "quickstart.py" in helped.stdout and "transfer_paper.py" in helped.stdout
    assert str(venv) in helped.stdout  # the installed configs are where paths resolve
    printed = run_in(installed, lfe, "--config=configs/quickstart.py:runlocal",
                     "--config.max_iterations=2", "--print_config")
    assert printed.returncode == 0, printed.stderr[-3000:]
    config = json.loads(printed.stdout)
    assert config["mode"] == "evolve" and config["max_iterations"] == 2


# ---------------------------------------------------------------- the tensorflow-datasets fallback

tfds = pytest.importorskip("tensorflow_datasets")


def test_tfds_cifar10_download_path_has_its_imports(tmp_path):
    """The chain that died with `No module named 'importlib_resources'` before tfds downloads
    (builder.code_path, read for the checksums and the URL), offline."""
    builder = tfds.builder("cifar10", data_dir=str(tmp_path))
    assert str(builder.code_path).endswith("cifar.py")
    assert [str(u) for u in builder.url_infos] == [
        "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"]


def test_evolve_data_check_reads_cifar10_from_tfds_without_lfe_data_dir(monkeypatch):
    """What `mode: evolve` loads first (fitness.load_dataset) when neither LFE_DATA_DIR nor
    data_dir is set: tfds's cifar10, here its mock data (the paper's 5,000 held out)."""
    from lfe.training import fitness

    monkeypatch.delenv("LFE_DATA_DIR", raising=False)
    with tfds.testing.mock_data(num_examples=5003):
        ds = fitness.load_dataset("cifar10", "")
    assert ds.num_classes == 10 and ds.image_shape == (32, 32, 3)
    assert len(ds.train_labels) == 3 and len(ds.val_labels) == 5000
    assert len(ds.test_labels) == 5003


PREPARE_AND_READ = """
import json, os, sys
from unittest import mock
import numpy as np
import tensorflow_datasets as tfds
from lfe.training import data

root = sys.argv[1]
rng = np.random.default_rng(0)
folder = os.path.join(root, "extracted", "cifar-10-batches-bin")
os.makedirs(folder)
counts = {f"data_batch_{i}.bin": 2 for i in range(1, 6)} | {"test_batch.bin": 3}
for name, n in counts.items():  # the binary version's records: label byte, 3x32x32 pixels
    labels = np.arange(n, dtype=np.uint8) % 10
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    np.concatenate([labels[:, None], images.reshape(n, -1)], axis=1).tofile(
        os.path.join(folder, name))
    if name == "test_batch.bin":
        test = sorted((img.transpose(1, 2, 0).tobytes().hex(), int(y))
                      for img, y in zip(images, labels))
with open(os.path.join(folder, "batches.meta.txt"), "w") as f:
    f.write("airplane\\nautomobile\\nbird\\ncat\\ndeer\\ndog\\nfrog\\nhorse\\nship\\ntruck\\n")
data_dir = os.path.join(root, "tfds")
builder = tfds.builder("cifar10", data_dir=data_dir, file_format="array_record")
with mock.patch.object(tfds.download.DownloadManager, "download_and_extract",
                       return_value=os.path.join(root, "extracted")):
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
ds = data.load("cifar10", data_dir=data_dir, val_size=0)
read = sorted((img.tobytes().hex(), int(y)) for img, y in zip(ds.test_images, ds.test_labels))
print(json.dumps({"same_test_split": read == test, "train": len(ds.train_labels),
                  "classes": ds.num_classes, "names": list(ds.class_names)}))
"""


@pytest.mark.slow  # TensorFlow's import and tfds's preparation: ~50 s on the loaded CI machine
def test_cifar10_prepared_by_tfds_is_read_back_by_lfe(tmp_path):
    """tfds prepares cifar10 from a (tiny) copy of the official binary archive's contents, as it
    does after downloading it (offline here), then lfe reads that tfds data folder. Preparing
    needs TensorFlow (the `export` extra), so this runs in its own process."""
    pytest.importorskip("tensorflow")
    out = subprocess.run([sys.executable, "-c", PREPARE_AND_READ, str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["same_test_split"] and result["train"] == 10 and result["classes"] == 10
    assert result["names"][:2] == ["airplane", "automobile"]


def test_cifar10_without_data_or_network_is_one_line_naming_the_way_out(monkeypatch):
    """No $LFE_DATA_DIR and tfds cannot download: the error says where the data comes from."""
    from lfe.training import data

    monkeypatch.delenv("LFE_DATA_DIR", raising=False)

    def offline(name, split, data_dir):
        raise ConnectionError("Max retries exceeded with url: /~kriz/cifar-10-binary.tar.gz")

    with pytest.raises(OSError) as info:
        data.load("cifar10", reader=offline)
    assert str(info.value) == (
        "no CIFAR-10 from tensorflow-datasets (Max retries exceeded with url: "
        "/~kriz/cifar-10-binary.tar.gz); set $LFE_DATA_DIR to a cifar-10-batches-bin folder, "
        "the official binary version https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz "
        "unpacked")
