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
    """A work directory where tests/config/tiny.yaml's workflow ran to the end on 2 cores: the
    bytes other runs of the same config (other cores and threads, a cold cache, SLURM) must
    give.  Its jobs use the package's own Numba cache, which the tests before them filled."""
    from helpers import snakemake, write_config

    workdir = tmp_path_factory.mktemp("tiny_run")
    config = write_config(root, mnist_dir, workdir, "tiny")
    snakemake(root, workdir, "--cores", "2", "--configfile", str(config))
    return workdir


@pytest.fixture(scope="session")
def raced_cache(root, mnist_dir, tmp_path_factory):
    """(work directory, Numba cache): the tiny config with one learning rate for the MLP and
    the CNN (two runs each, beside the toy's nine), on an empty cache of its own, with
    --cores 8 on this 2-core machine, so that up to eight jobs compiled the same kernels into
    it at once.  workdir/snakemake.out holds what the jobs printed of the cache
    (NUMBA_DEBUG_CACHE)."""
    from helpers import snakemake, write_config

    workdir = tmp_path_factory.mktemp("raced")
    config = write_config(
        root, mnist_dir, workdir, "tiny", mlp__learning_rates=[0.05], cnn__learning_rates=[0.1]
    )
    cache = workdir / "numba-cache"
    env = {"NUMBA_CACHE_DIR": str(cache), "NUMBA_DEBUG_CACHE": "1"}
    result = snakemake(root, workdir, "--cores", "8", "--configfile", str(config), env=env)
    (workdir / "snakemake.out").write_text(result.stdout)
    return workdir, cache
