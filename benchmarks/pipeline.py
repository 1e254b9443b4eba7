"""The pipeline's fixed costs, each beside a baseline measured in the same run:
a job's start-up (warm and cold Numba cache) against a bare interpreter and against importing
the stack; an MLP and a CNN job's peak memory; a no-op rerun of the default workflow; the
dry-run DAG and the whole run of a 10,000-run toy sweep (100 learning rates x 100 starts,
100 steps, 1,000 runs per job).

    python benchmarks/pipeline.py [--data-dir ../shared/data/mnist] [--cores 2] [--skip-default]

The no-op rerun needs the default workflow finished first: the script runs it in a scratch
directory (about 12 minutes on 2 cores, most of it the CNN) unless --skip-default.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def seconds(command, env=None, cwd=None, repeats=1):
    """Best wall time of `command` over `repeats` runs; fails loudly if it fails."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd)
        if result.returncode:
            sys.exit(f"failed: {' '.join(command)}\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
        best = min(best, time.perf_counter() - start)
    return best


def snakemake(workdir, cores, *args):
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        str(cores),
        *args,
    ]


def row(name, value, target, baseline=""):
    print(f"{name:<52} {value:>9} {target:>10} {baseline:>26}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared/data/mnist"))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--skip-default", action="store_true")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="jitprop-bench-"))
    job = [
        sys.executable,
        "-m",
        "jitprop",
        "toy",
        "--lr",
        "0.5",
        "--steps",
        "100",
        "--out",
        str(scratch / "run.csv"),
    ]
    bare = seconds([sys.executable, "-c", "pass"], repeats=5)
    stack = seconds([sys.executable, "-c", "import numpy, pandas, numba"], repeats=5)
    seconds(job)  # make sure the package's own cache is warm
    warm = seconds(job, repeats=5)
    cold_env = {**os.environ, "NUMBA_CACHE_DIR": str(scratch / "cold-cache")}
    cold = seconds(job, env=cold_env)
    second = seconds(job, env=cold_env)
    print(f"{'measure':<52} {'seconds':>9} {'target':>10} {'baseline, same run':>26}")
    row(
        "toy job, warm Numba cache (start-up + 1 run)",
        f"{warm:.2f}",
        "<= 1.0",
        f"python -c pass: {bare:.2f}",
    )
    row("", "", "", f"import numpy+pandas+numba: {stack:.2f}")
    row("toy job, cold cache (compiles, fills the cache)", f"{cold:.2f}", "once")
    row("toy job, next job on that cache", f"{second:.2f}", "<= 1.0")

    # Peak memory of one MLP job (default network, one epoch), read inside its own process.
    peak = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)"
    stack_rss = int(
        subprocess.run(
            [sys.executable, "-c", f"import numpy, pandas, numba; {peak}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )

    def job_rss(argv):
        code = f"from jitprop.cli import main; main({argv!r}); {peak}"
        run = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        return int(run.stdout)

    data = ["--data-dir", args.data_dir, "--epochs", "1"]
    mlp_rss = job_rss(["mlp", "--lr", "0.05", "--seed", "0", *data, "--out", str(scratch / "mlp")])
    row(
        "MLP job peak RSS, MiB (784-128-10, 1 epoch)",
        f"{mlp_rss}",
        "< 400",
        f"imports alone: {stack_rss} MiB",
    )
    cnn = ["--threads", "2", "cnn", "--lr", "0.1", "--seed", "0", *data]
    cnn_rss = job_rss([*cnn, "--out", str(scratch / "cnn")])
    row("CNN job peak RSS, MiB (default network, 1 epoch, 2 threads)", f"{cnn_rss}", "<= 1000")

    if not args.skip_default:
        default = scratch / "default"
        default.mkdir()
        (default / "config.yaml").write_text((ROOT / "config.yaml").read_text())
        override = ["--config"]
        override += [f"{family}={{data_dir: {args.data_dir}}}" for family in ("mlp", "cnn")]
        full = seconds(snakemake(default, args.cores, *override))
        noop = seconds(snakemake(default, args.cores, *override), repeats=3)
        row(f"default workflow, first run (--cores {args.cores})", f"{full:.1f}", "")
        row("default workflow, no-op rerun", f"{noop:.2f}", "<= 3", f"python -c pass: {bare:.2f}")

    sweep = scratch / "sweep"
    sweep.mkdir()
    rates = [float(f"{x:.4g}") for x in np.geomspace(0.05, 5, 100)]
    config = {
        "toy": {
            "learning_rates": rates,
            "seeds": list(range(1, 100)),
            "steps": 100,
            "runs_per_job": 1000,
        }
    }
    (sweep / "config.yaml").write_text(yaml.safe_dump(config))
    dag = seconds(snakemake(sweep, args.cores, "toy", "--dry-run"))
    run = seconds(snakemake(sweep, args.cores, "toy"))
    history = (sweep / "results/toy/history.csv").stat().st_size
    row("10,000-run toy sweep: dry-run DAG", f"{dag:.2f}", "<= 10")
    row(
        f"10,000-run toy sweep: end to end (--cores {args.cores})",
        f"{run:.1f}",
        "<= 60",
        f"history.csv: {history / 1e6:.0f} MB",
    )
    shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
