"""Shared pytest fixtures."""

import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cifar_dir() -> pathlib.Path:
    """The real CIFAR-10 binary directory: $LFE_DATA_DIR (the folder or its parent), else
    ../shared/data/cifar-10-batches-bin next to the repo. Skips only when neither exists (CI has
    it)."""
    candidates = []
    if os.environ.get("LFE_DATA_DIR"):
        env = pathlib.Path(os.environ["LFE_DATA_DIR"]).expanduser()
        candidates += [env, env / "cifar-10-batches-bin"]
    candidates.append(REPO_ROOT.parent / "shared" / "data" / "cifar-10-batches-bin")
    for candidate in candidates:
        if (candidate / "data_batch_1.bin").is_file():
            return candidate
    pytest.skip(f"no CIFAR-10 binary directory among {[str(c) for c in candidates]}")
