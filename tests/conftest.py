"""Shared fixtures: where the canonical MNIST files are (../shared/data/mnist beside the clone,
or JITPROP_MNIST_DIR), and the repository root."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mnist_dir():
    path = Path(os.environ.get("JITPROP_MNIST_DIR", ROOT.parent / "shared" / "data" / "mnist"))
    # Not a skip: CI always has these files, and a missing copy must fail loudly.
    assert (path / "train-images-idx3-ubyte.gz").is_file(), (
        f"MNIST not found in {path}; set JITPROP_MNIST_DIR to a directory holding the IDX files"
    )
    return path.resolve()


@pytest.fixture(scope="session")
def root():
    return ROOT
