# Helpers for the rules: named, thin wrappers around jitprop.runs, which turns the config into
# runs, paths and command lines (tested there). Functions only.
import shlex
import sys

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
    return runs.mlp_args(config["mlp"], wildcards.lr, wildcards.seed)


def mlp_run_dirs():
    return runs.mlp_run_dirs(config["mlp"])


def mnist_files(section):
    return runs.mnist_files(config[section]["data_dir"])
