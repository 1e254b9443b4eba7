# Helpers for the rules: named, thin wrappers around jitprop.runs, which turns the config into
# runs, paths and command lines (tested there). Functions only.
import shlex
import sys
from pathlib import Path

from jitprop import data, runs

# Jobs run the package with the interpreter that runs Snakemake, so no activated venv or PATH
# entry is needed, locally or on a cluster node.
JITPROP = f"{shlex.quote(sys.executable)} -m jitprop"
DOWNLOAD_DIR = config_defaults("mlp")["data_dir"]
MNIST_GZ = list(data.GZ_MD5)


def toy_args(wildcards):
    return runs.toy_args(config["toy"], wildcards.part)


def toy_run_dirs():
    return runs.toy_run_dirs(config["toy"])


def mlp_args(wildcards):
    return runs.run_args(config["mlp"], "mlp", wildcards.lr, wildcards.seed)


def mlp_run_dirs():
    return runs.run_dirs(config["mlp"], "mlp")


def cnn_args(wildcards):
    return runs.run_args(config["cnn"], "cnn", wildcards.lr, wildcards.seed)


def cnn_run_dirs():
    return runs.run_dirs(config["cnn"], "cnn")


def mnist_files(section):
    return runs.mnist_files(config[section]["data_dir"])


def mnist_dir(wildcards, input):
    """The directory of a rule's MNIST files (input.mnist)."""
    return str(Path(input.mnist[0]).parent)


def cnn_test_size(wildcards):
    """--test-size N for cnn-plot when the runs used the first N test images only."""
    size = config["cnn"]["test_size"]
    return "" if size is None else f"--test-size {size}"
