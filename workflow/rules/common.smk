# Helpers for the rules: named, thin wrappers around jitprop.runs, which turns the config into
# runs, paths and command lines (tested there). Functions only.
import shlex
import sys
from pathlib import Path

from jitprop import data, provenance, runs

# Jobs run the package with the interpreter that runs Snakemake, so no activated venv or PATH
# entry is needed, locally or on a cluster node.
JITPROP = f"{shlex.quote(sys.executable)} -m jitprop"
# The hash of jitprop's source is a parameter of each step that runs jitprop, and Snakemake
# reruns a job whose parameters changed; so a family's results never mix code versions, and
# results/FAMILY/provenance.json names the code that made them.
SOURCE = provenance.source_hash()
DOWNLOAD_DIR = config_defaults("mlp")["data_dir"]
MNIST_GZ = list(data.GZ_MD5)
# results/, or results/EXPERIMENT/ for a named experiment.
RESULTS = runs.results_dir(config)


def results(path):
    """A path below the config's results directory."""
    return f"{RESULTS}/{path}"


def toy_args(wildcards):
    return runs.toy_args(config, wildcards.part)


def toy_run_dirs():
    return runs.toy_run_dirs(config)


def mlp_args(wildcards):
    return runs.run_args(config, "mlp", wildcards.run)


def mlp_inputs(wildcards):
    return runs.run_inputs(config, "mlp", wildcards.run)


def mlp_run_dirs():
    return runs.run_dirs(config, "mlp")


def cnn_args(wildcards):
    return runs.run_args(config, "cnn", wildcards.run)


def cnn_inputs(wildcards):
    return runs.run_inputs(config, "cnn", wildcards.run)


def cnn_run_dirs():
    return runs.run_dirs(config, "cnn")


def mnist_dir(wildcards, input):
    """The directory of a rule's MNIST files (input.mnist)."""
    return str(Path(input.mnist[0]).parent)


def family_section(wildcards):
    """A family's resolved config section, as JSON (sorted keys: equal sections, equal text)."""
    return runs.section_json(config, wildcards.family)
