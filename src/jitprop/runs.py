"""The runs a validated config asks for: the combinations of its swept settings, each run's
self-describing directory, in the canonical order of the sweep's tables, and the `jitprop`
command line of each job.  The workflow's fan-out and its aggregation both read these, so they
can never disagree."""

import functools
import json

import numpy as np

from jitprop import config as configuration
from jitprop import data
from jitprop.sweep import canonical_json, combinations

RESULTS = "results"


def results_dir(config):
    """Where a config's results go: results/, or results/EXPERIMENT/ for a named experiment."""
    experiment = config.get("experiment")
    return RESULTS if experiment is None else f"{RESULTS}/{experiment}"


def lr_label(lr):
    """A learning rate as it appears in paths: the shortest repr that round-trips."""
    return repr(float(lr))


def lr_text(lr):
    """A learning rate as figures and workbooks print it: %g, unless %g would round it (two
    rates must never read alike), then its shortest round-tripping repr."""
    short = f"{lr:g}"
    return short if float(short) == lr else lr_label(lr)


def _arguments(values):
    """Command-line words: floats as their shortest round-tripping digits, without an exponent
    (argparse takes '-1e-05' for an option, '-0.00001' for a number)."""
    return [
        np.format_float_positional(value, trim="0") if isinstance(value, float) else str(value)
        for value in values
    ]


def section_json(config, section):
    """A config section as canonical JSON (sorted keys): equal sections, equal text.  The
    run lists are cached by it, and the provenance rule takes it."""
    return canonical_json(config[section])


def _swept_path(swept):
    return "".join(f"{key}~{label}/" for key, label in swept)


def _columns(swept):
    """--column=NAME=VALUE for each swept setting: the leading columns of the run's tables.
    NAME=VALUE is one word, so that a value starting with '-' (a list of negative numbers) is
    never a word of its own, which argparse would take for an option."""
    return [f"--column={key}={label}" for key, label in swept]


# --------------------------------------------------------------------------- toy net


def _toy_run_name(lr, start):
    return f"lr~{lr_label(lr)}/start~{start if start == 'sheet' else f'seed{start}'}"


@functools.cache
def _toy_jobs(toy_json):
    """{part: (swept, settings, [(lr, start)])} of a toy section (as JSON, to be cached): one
    job per run, or, with runs_per_job > 1, per chunk of that many consecutive runs of one
    combination; start is 'sheet' or a seed.  Runs go learning rates ascending, the sheet start
    first, then seeds ascending, as history.csv does."""
    toy = json.loads(toy_json)
    jobs = {}
    for swept, settings in combinations(toy):
        starts = ["sheet", *sorted(settings["seeds"])]
        runs = [(lr, start) for lr in sorted(settings["learning_rates"]) for start in starts]
        size, prefix = settings["runs_per_job"], _swept_path(swept)
        if size == 1:
            for run in runs:
                jobs[prefix + _toy_run_name(*run)] = (swept, settings, [run])
        else:
            for index, first in enumerate(range(0, len(runs), size)):
                jobs[f"{prefix}chunk~{index:05d}"] = (swept, settings, runs[first : first + size])
    return jobs


def toy_parts(config):
    """The toy jobs' directories below RESULTS/toy/runs, in canonical order."""
    return list(_toy_jobs(section_json(config, "toy")))


def toy_run_dirs(config):
    return [f"{results_dir(config)}/toy/runs/{part}" for part in toy_parts(config)]


def toy_args(config, part):
    """Arguments of `jitprop toy` for the job of `part` (one of toy_parts)."""
    jobs = _toy_jobs(section_json(config, "toy"))
    if part not in jobs:
        raise ValueError(f"toy run {part!r} is not one of the config's")
    swept, toy, runs = jobs[part]
    args = ["--steps", toy["steps"], "--weights", *toy["weights"], "--inputs", *toy["inputs"]]
    args += ["--targets", *toy["targets"], "--init-range", *toy["init_range"]]
    for lr, start in runs:
        args += ["--run", lr, start]
    return _arguments([*args, *_columns(swept)])


# --------------------------------------------------------------------------- MNIST families
# The MLP and the CNN: one run per (combination, learning rate, seed), a job each.


def options(family):
    """The keys of a family's section that its `jitprop FAMILY` command takes as --key-name
    (the run's learning rate and seed are options too, under their own names)."""
    return configuration.sweepable(family)


@functools.cache
def _family_runs(family_json):
    """{run: (swept, settings, lr, seed)} of a family's section (as JSON, to be cached): run is
    the directory below RESULTS/FAMILY/runs, [KEY~VALUE/...]lr~LR/seed~SEED, in canonical
    order."""
    section, runs = json.loads(family_json), {}
    for swept, settings in combinations(section):
        for lr in sorted(settings["learning_rates"]):
            for seed in sorted(settings["seeds"]):
                path = f"{_swept_path(swept)}lr~{lr_label(lr)}/seed~{seed}"
                runs[path] = (swept, settings, lr, seed)
    return runs


def run_dirs(config, family):
    """RESULTS/FAMILY/runs/RUN for every run of a family, in canonical order."""
    return [
        f"{results_dir(config)}/{family}/runs/{run}"
        for run in _family_runs(section_json(config, family))
    ]


def run_args(config, family, run):
    """Arguments of `jitprop FAMILY` for one run (a directory below RESULTS/FAMILY/runs),
    every value from the config: lists of numbers as several words after their option, other
    values as one word with it, --KEY=VALUE (a value may start with '-': a path, say),
    structured ones (the CNN's layers, augment) as JSON."""
    runs = _family_runs(section_json(config, family))
    if run not in runs:
        raise ValueError(f"{family} run {run!r} is not one of the config's")
    swept, section, lr, seed = runs[run]
    args = ["--lr", float(lr), "--seed", int(seed)]
    for key in options(family):
        value = section[key]
        if value is None:
            continue
        option = f"--{key.replace('_', '-')}"
        if isinstance(value, list) and _numbers(value):
            args += [option, *value]
        elif isinstance(value, dict | list):
            args.append(f"{option}={canonical_json(value)}")
        else:
            args.append(f"{option}={_arguments([value])[0]}")
    return _arguments([*args, *_columns(swept)])


def _numbers(values):
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def run_inputs(config, family, run):
    """The MNIST files one run reads (its data_dir may be swept)."""
    runs = _family_runs(section_json(config, family))
    if run not in runs:
        raise ValueError(f"{family} run {run!r} is not one of the config's")
    return mnist_files(runs[run][1]["data_dir"])


def first_run_inputs(config, family):
    """The MNIST files of a family's first run, whose data_dir may be swept: where a figure
    takes MNIST's images from (every data_dir holds the same, MD5-checked files)."""
    runs = _family_runs(section_json(config, family))
    return mnist_files(next(iter(runs.values()))[1]["data_dir"])


def mnist_files(data_dir):
    """The four MNIST files a run reads from data_dir (see jitprop.data.mnist_paths)."""
    return [str(path) for path in data.mnist_paths(data_dir)]
