# Helpers for the workflow: the one place that turns config lists into run paths, so
# the fan-out and the aggregation can never disagree. Functions only.
import shlex
from pathlib import Path
import sys

from jitprop.data import FILES, GZ_MD5

# Jobs run the package with the interpreter that runs Snakemake, so no activated venv or PATH
# entry is needed, locally or on a cluster node.
JITPROP = f"{shlex.quote(sys.executable)} -m jitprop"


MNIST_GZ = list(GZ_MD5)
MLP_TABLES = ["history", "steps", "summary", "timing"]


def lr_label(lr):
    """A learning rate as it appears in paths: the shortest repr that round-trips."""
    return repr(float(lr))


def toy_runs():
    """Every toy run as (lr, start) in the canonical order of history.csv: learning rates
    ascending, the sheet start first, then seeds ascending."""
    toy = config["toy"]
    starts = ["sheet"] + [f"seed{seed}" for seed in sorted(toy["seeds"])]
    return [(lr, start) for lr in sorted(toy["learning_rates"]) for start in starts]


def toy_parts():
    """The jobs' outputs, in canonical order: one per run (self-describing paths), or, with
    toy.runs_per_job > 1, one per chunk of that many consecutive runs."""
    runs, size = toy_runs(), config["toy"]["runs_per_job"]
    if size == 1:
        return [f"lr~{lr_label(lr)}/start~{start}" for lr, start in runs]
    return [f"chunk~{index:05d}" for index in range(-(-len(runs) // size))]


def toy_part_files(suffix):
    return [f"results/toy/runs/{part}.{suffix}" for part in toy_parts()]


def toy_run_args(wildcards):
    """Arguments of `jitprop toy` for one job, every value from the config (or the path)."""
    toy = config["toy"]
    args = ["--steps", toy["steps"], "--weights", *toy["weights"], "--inputs", *toy["inputs"]]
    args += ["--targets", *toy["targets"], "--init-range", *toy["init_range"]]
    if wildcards.part.startswith("chunk~"):
        size = toy["runs_per_job"]
        first = int(wildcards.part.removeprefix("chunk~")) * size
        for lr, start in toy_runs()[first : first + size]:
            args += ["--run", lr, start.removeprefix("seed")]
    else:
        lr, start = (field.split("~")[1] for field in wildcards.part.split("/"))
        args += ["--lr", lr]
        if start != "sheet":
            args += ["--seed", start.removeprefix("seed")]
    return [repr(a) if isinstance(a, float) else str(a) for a in args]


def mlp_run_dirs():
    return [
        f"results/mlp/runs/lr~{lr_label(lr)}/seed~{seed}"
        for lr in config["mlp"]["learning_rates"]
        for seed in config["mlp"]["seeds"]
    ]


def mnist_files():
    """The four IDX files the MLP reads: in data_dir, gzipped (as downloaded) unless the user's
    directory holds them decompressed."""
    data_dir = Path(config["mlp"]["data_dir"])
    return [
        str(data_dir / stem) if (data_dir / stem).is_file() else str(data_dir / f"{stem}.gz")
        for stem in FILES.values()
    ]


def mlp_run_args(wildcards):
    """Arguments of `jitprop mlp` for one run, every value from the config (or the path)."""
    mlp = config["mlp"]
    args = ["--seed", wildcards.seed, "--data-dir", mlp["data_dir"], "--layers", *mlp["layers"]]
    keys = ["activation", "loss", "epochs", "batch_size", "momentum", "weight_decay"]
    for key in keys + ["lr_schedule", "divergence_threshold"]:
        args += [f"--{key.replace('_', '-')}", mlp[key]]
    args += ["--dtype", mlp["dtype"], "--log-every", mlp["log_every"]]
    for key in ["train_size", "test_size"]:
        if mlp[key] is not None:
            args += [f"--{key.replace('_', '-')}", mlp[key]]
    return [repr(a) if isinstance(a, float) else str(a) for a in args]
