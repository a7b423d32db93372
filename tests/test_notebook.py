"""notebooks/quickstart.ipynb runs as written, at its smoke size, on real CIFAR-10 (slow).

The notebook is executed cell by cell in a fresh Jupyter kernel (nbclient) from the repository
root, as a user opening it in a checkout would: install check, data, the `:runlocal` evolution
through `python -m lfe.main`, Figures 2–4, the found loss in JAX, and its NumPy (and PyTorch,
where installed) export compared with the JAX loss inside the notebook.
"""

import json
import os

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

from tests.conftest import REPO_ROOT  # noqa: E402

NOTEBOOK = REPO_ROOT / "notebooks" / "quickstart.ipynb"


def test_the_notebook_is_valid_and_names_only_real_paths():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    source = "\n".join(c.source for c in nb.cells)
    for path in ("configs/quickstart.py", "configs/surrogate.py", "configs/table4.py",
                 "launch/README.md"):
        assert path in source and (REPO_ROOT / path).exists(), path
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "commit the notebook without outputs"


@pytest.mark.slow
def test_the_notebook_runs_at_smoke_size(cifar_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LFE_DATA_DIR", str(cifar_dir))
    monkeypatch.setenv("LFE_NOTEBOOK_WORKDIR", str(tmp_path / "run"))
    monkeypatch.delenv("LFE_NOTEBOOK_FULL", raising=False)
    monkeypatch.setenv("LFE_COMPILATION_CACHE", str(tmp_path / "jax-cache"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=1800, kernel_name="python3",
                                     resources={"metadata": {"path": str(REPO_ROOT)}})
    client.execute()
    run = tmp_path / "run"
    for name in ("evolution.png", "best_phenotypes.png", "paper_phenotypes.png",
                 "found_loss_numpy.py"):
        assert (run / name).is_file(), name
    best = json.loads((run / "best.json").read_text())
    assert best and best[0]["fitness"] > 0.1
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for o in c.outputs)
    assert "equal to the JAX loss" in text
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                 for o in c.outputs)
    assert images >= 5  # Figure 4, Figures 2-3 of the run and of the paper's losses
    assert os.path.isdir(run / "tensorboard")
