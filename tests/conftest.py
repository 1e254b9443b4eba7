"""Shared fixtures: where the canonical MNIST files are (../shared/data/mnist beside the clone,
or JITPROP_MNIST_DIR), the repository root, and the tiny config's workflow, run once for every
test that compares against it."""

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


@pytest.fixture(scope="session")
def tiny_run(root, mnist_dir, tmp_path_factory):
    """A work directory where tests/config/tiny.yaml's workflow ran to the end: the bytes other
    runs of the same config (other threads, another cache, SLURM) must give.  It ran on an empty
    Numba cache of its own (workdir/numba-cache), with --cores 8 on this 2-core machine, so that
    up to eight jobs compiled the same kernels into it at once: workdir/snakemake.out holds
    what Snakemake and the jobs printed, the cache's loads and saves (NUMBA_DEBUG_CACHE)
    included, for tests/test_cache.py."""
    from helpers import snakemake, write_config

    workdir = tmp_path_factory.mktemp("tiny_run")
    config = write_config(root, mnist_dir, workdir, "tiny")
    env = {"NUMBA_CACHE_DIR": str(workdir / "numba-cache"), "NUMBA_DEBUG_CACHE": "1"}
    result = snakemake(root, workdir, "--cores", "8", "--configfile", str(config), env=env)
    (workdir / "snakemake.out").write_text(result.stdout)
    return workdir
