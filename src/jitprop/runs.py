"""The runs a validated config asks for: their self-describing directories, in the canonical order
of the sweep's tables, and the `jitprop` command-line arguments of each job.  The workflow's
fan-out and its aggregation both read these, so they can never disagree."""

import json

from jitprop import config, data

RESULTS = "results"


def lr_label(lr):
    """A learning rate as it appears in paths: the shortest repr that round-trips."""
    return repr(float(lr))


def _arguments(values):
    """Command-line words: floats as their shortest round-tripping repr."""
    return [repr(value) if isinstance(value, float) else str(value) for value in values]


# --------------------------------------------------------------------------- toy net


def toy_runs(toy):
    """Every toy run as (lr, start), start 'sheet' or a seed, in the canonical order of
    history.csv: learning rates ascending, the sheet start first, then seeds ascending."""
    starts = ["sheet", *sorted(toy["seeds"])]
    return [(lr, start) for lr in sorted(toy["learning_rates"]) for start in starts]


def _toy_run_name(lr, start):
    return f"lr~{lr_label(lr)}/start~{start if start == 'sheet' else f'seed{start}'}"


def toy_parts(toy):
    """The jobs' directories below results/toy/runs, in canonical order: one per run, or, with
    toy.runs_per_job > 1, one per chunk of that many consecutive runs."""
    runs, size = toy_runs(toy), toy["runs_per_job"]
    if size == 1:
        return [_toy_run_name(lr, start) for lr, start in runs]
    return [f"chunk~{index:05d}" for index in range(-(-len(runs) // size))]


def toy_run_dirs(toy):
    return [f"{RESULTS}/toy/runs/{part}" for part in toy_parts(toy)]


def toy_args(toy, part):
    """Arguments of `jitprop toy` for the job of `part` (one of toy_parts)."""
    args = ["--steps", toy["steps"], "--weights", *toy["weights"], "--inputs", *toy["inputs"]]
    args += ["--targets", *toy["targets"], "--init-range", *toy["init_range"]]
    runs = toy_runs(toy)
    if part.startswith("chunk~"):
        size = toy["runs_per_job"]
        first = int(part.removeprefix("chunk~")) * size
        runs = runs[first : first + size]
    else:
        runs = [run for run in runs if _toy_run_name(*run) == part]
        if len(runs) != 1:
            raise ValueError(f"toy run {part!r} is not one of the config's")
    for lr, start in runs:
        args += ["--run", lr, start]
    return _arguments(args)


# --------------------------------------------------------------------------- MNIST families
# The MLP and the CNN: one run per (learning rate, seed), a job each.
FAMILIES = ("mlp", "cnn")
# Keys of a family's section that are not options of its `jitprop FAMILY` command: the run's
# learning rate and seed are, under their own names; mirrors only serve the download.
NOT_OPTIONS = {"learning_rates", "seeds", "mirrors"}


def options(family):
    """The keys of a family's section that its `jitprop FAMILY` command takes as --key-name."""
    return [key for key in config.defaults(family) if key not in NOT_OPTIONS]


def run_dirs(section, family):
    """results/FAMILY/runs/lr~LR/seed~SEED for every learning rate and seed, in config order."""
    return [
        f"{RESULTS}/{family}/runs/lr~{lr_label(lr)}/seed~{seed}"
        for lr in section["learning_rates"]
        for seed in section["seeds"]
    ]


def run_args(section, family, lr, seed):
    """Arguments of `jitprop FAMILY` for one run, every value from the config: lists of numbers
    as several words, structured values (the CNN's layers, augment) as one JSON word."""
    args = ["--lr", float(lr), "--seed", int(seed)]
    for key in options(family):
        value = section[key]
        if value is None:
            continue
        args.append(f"--{key.replace('_', '-')}")
        if isinstance(value, dict) or (isinstance(value, list) and not _numbers(value)):
            args.append(json.dumps(value, sort_keys=True, separators=(",", ":")))
        else:
            args += value if isinstance(value, list) else [value]
    return _arguments(args)


def _numbers(values):
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def mnist_files(data_dir):
    """The four MNIST files a run reads from data_dir (see jitprop.data.mnist_paths)."""
    return [str(path) for path in data.mnist_paths(data_dir)]
