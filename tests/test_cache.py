"""Numba's on-disk cache: NUMBA_CACHE_DIR is honoured, and a cold cache filled by many jobs at
once (--cores 8 on a 2-core machine) is neither crashed on nor corrupted."""

import os
import subprocess
import sys

import pytest

from helpers import digests_of, snakemake, write_config

TABLES = [
    "results/toy/history.csv",
    "results/toy/summary.csv",
    "results/mlp/history.csv",
    "results/mlp/summary.csv",
    "results/mlp/steps.csv",
    "results/cnn/history.csv",
    "results/cnn/summary.csv",
]


def toy_job(cache, out):
    """One toy job on `cache`; returns the cache lines Numba printed (NUMBA_DEBUG_CACHE)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "NUMBA_DEBUG_CACHE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "jitprop", "toy", "--lr", "0.5", "--steps", "3", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.startswith("[cache]")]


def test_numba_cache_dir_is_honoured(tmp_path):
    cache = tmp_path / "cache"
    first = toy_job(cache, tmp_path / "a")
    assert any("data saved to" in line and str(cache) in line for line in first), first
    assert list(cache.rglob("*toy_train_kernel*.nbi")), "no index in NUMBA_CACHE_DIR"
    second = toy_job(cache, tmp_path / "b")
    assert any("data loaded from" in line and "toy_train_kernel" in line for line in second)
    assert not any("saved" in line for line in second), f"compiled again: {second}"


@pytest.mark.workflow
def test_cold_cache_with_many_concurrent_jobs(root, mnist_dir, tmp_path):
    cache = tmp_path / "cache"
    printed = {}
    for name, cores in (("cold", "8"), ("warm", "1")):
        workdir = tmp_path / name
        config_file = write_config(root, mnist_dir, workdir, toy={})  # the default sweep: 36 jobs
        # NUMBA_DEBUG_CACHE: every job prints what it loads from and saves to the cache.
        env = {"NUMBA_CACHE_DIR": str(cache), "NUMBA_DEBUG_CACHE": "1"}
        args = ["--cores", cores, "--configfile", str(config_file)]
        printed[name] = snakemake(root, workdir, *args, env=env).stdout
    assert digests_of(tmp_path / "cold", TABLES) == digests_of(tmp_path / "warm", TABLES)
    assert "[cache] data saved" in printed["cold"]
    # The cache the racing jobs wrote is whole: the same jobs again load it and compile nothing.
    assert "[cache] data loaded" in printed["warm"]
    saved = [line for line in printed["warm"].splitlines() if "[cache] data saved" in line]
    assert saved == [], f"cache incomplete or corrupt: {saved[:5]}"


def mlp_job(cache, mnist_dir, out):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "jitprop",
            "mlp",
            "--lr",
            "0.1",
            "--seed",
            "1",
            "--data-dir",
            str(mnist_dir),
            "--layers",
            "784",
            "16",
            "10",
            "--epochs",
            "1",
            "--train-size",
            "300",
            "--test-size",
            "100",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
    )


def test_callers_compiled_against_cached_parallel_kernels_load_again(mnist_dir, tmp_path):
    """Jobs sharing a cache fill it in any order: here the training loop is compiled by a job
    that loaded its parallel kernels from the cache, then loaded by a third job.  Numba once
    segfaulted exactly there (numba/numba#8578), which jitprop.mlp works around."""
    cache = tmp_path / "cache"
    assert mlp_job(cache, mnist_dir, tmp_path / "a").returncode == 0
    callers = [*cache.rglob("mlp._train_batches-*"), *cache.rglob("mlp._train_step-*")]
    assert callers, "the first job cached no training loop"
    for path in callers:
        path.unlink()
    for name in ("b", "c"):
        result = mlp_job(cache, mnist_dir, tmp_path / name)
        assert result.returncode == 0, f"job {name}: exit {result.returncode}\n{result.stderr}"
    assert (tmp_path / "a/history.csv").read_bytes() == (tmp_path / "c/history.csv").read_bytes()
