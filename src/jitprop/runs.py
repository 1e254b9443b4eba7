"""The runs a validated config asks for: their self-describing directories, in the canonical order
of the sweep's tables, and the `jitprop` command-line arguments of each job.  The workflow's
fan-out and its aggregation both read these, so they can never disagree."""

from jitprop import data

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


# --------------------------------------------------------------------------- MLP

# The keys of the mlp section `jitprop mlp` takes as options of the same name.
MLP_OPTIONS = [
    "data_dir",
    "layers",
    "activation",
    "loss",
    "epochs",
    "batch_size",
    "momentum",
    "weight_decay",
    "lr_schedule",
    "divergence_threshold",
    "dtype",
    "log_every",
    "train_size",
    "test_size",
]


def mlp_run_dirs(mlp):
    """results/mlp/runs/lr~LR/seed~SEED for every learning rate and seed, in config order."""
    return [
        f"{RESULTS}/mlp/runs/lr~{lr_label(lr)}/seed~{seed}"
        for lr in mlp["learning_rates"]
        for seed in mlp["seeds"]
    ]


def mlp_args(mlp, lr, seed):
    """Arguments of `jitprop mlp` for one run, every value from the config."""
    args = ["--lr", float(lr), "--seed", int(seed)]
    for key in MLP_OPTIONS:
        value = mlp[key]
        if value is not None:
            args += [f"--{key.replace('_', '-')}", *(value if isinstance(value, list) else [value])]
    return _arguments(args)


def mnist_files(data_dir):
    """The four MNIST files a run reads from data_dir (see jitprop.data.mnist_paths)."""
    return [str(path) for path in data.mnist_paths(data_dir)]
