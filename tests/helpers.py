"""Helpers the workflow tests share: running Snakemake on a work directory, writing a test
config there, and hashing what a run wrote."""

import hashlib
import os
import subprocess
import sys

import pytest
import yaml

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# Every result that must come back byte for byte from the same config.
REPRODUCIBLE = [
    "results/toy/history.csv",
    "results/toy/summary.csv",
    "results/mlp/history.csv",
    "results/mlp/steps.csv",
    "results/mlp/summary.csv",
    "results/mlp/summary_by_lr.csv",
    "results/figures/toy_loss_grid.png",
    "results/figures/toy_loss_overlay.png",
    "results/figures/mlp_loss_curves.png",
    "results/figures/mlp_accuracy_curves.png",
    "results/figures/mlp_accuracy_vs_lr.png",
]


def snakemake(root, workdir, *args, check=True, env=None):
    """Run Snakemake on the project's Snakefile in `workdir`; fail the test if it fails."""
    result = subprocess.run(
        [*SNAKEMAKE, "-s", str(root / "Snakefile"), "--directory", str(workdir), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0", **(env or {})},
    )
    if check and result.returncode != 0:
        pytest.fail(f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def write_config(root, mnist_dir, directory, name="tiny", **changes):
    """tests/config/<name>.yaml with MNIST from mnist_dir, written to directory/config.yaml;
    `changes` set section__key to a value."""
    config = yaml.safe_load((root / f"tests/config/{name}.yaml").read_text())
    config["mlp"]["data_dir"] = str(mnist_dir)
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        config.setdefault(section, {})[key] = value
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def digests_of(directory, names):
    return {name: hashlib.sha256((directory / name).read_bytes()).hexdigest() for name in names}
