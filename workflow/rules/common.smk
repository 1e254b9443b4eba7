# Helpers shared by the rule files: the one place that turns config lists into run paths, so
# the fan-out and the aggregation can never disagree. No rules here.
import shlex
import sys

# Jobs run the package with the interpreter that runs Snakemake, so no activated venv or PATH
# entry is needed, locally or on a cluster node.
JITPROP = f"{shlex.quote(sys.executable)} -m jitprop"


wildcard_constraints:
    lr=r"[0-9][0-9.e+-]*",
    start=r"sheet|seed[0-9]+",


def lr_label(lr):
    """A learning rate as it appears in paths: the shortest repr that round-trips."""
    return repr(float(lr))


def toy_starts():
    return ["sheet"] + [f"seed{seed}" for seed in config["toy"]["seeds"]]


def toy_run_files():
    return [
        f"results/toy/runs/lr~{lr_label(lr)}/start~{start}.csv"
        for lr in config["toy"]["learning_rates"]
        for start in toy_starts()
    ]


def toy_run_args(wildcards):
    """Arguments of `jitprop toy` for one run, every value from the config (or the path)."""
    toy = config["toy"]
    args = ["--steps", toy["steps"], "--weights", *toy["weights"], "--inputs", *toy["inputs"]]
    args += ["--targets", *toy["targets"], "--init-range", *toy["init_range"]]
    if wildcards.start != "sheet":
        args += ["--seed", wildcards.start.removeprefix("seed")]
    return [repr(a) if isinstance(a, float) else str(a) for a in args]
