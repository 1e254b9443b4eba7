"""Helpers the tests share: running Snakemake on a work directory, writing a test config there,
hashing what a run wrote, reading the workbook's step tables, the CNN kernels' layout, and the
check that two threads are there to compare with one."""

import hashlib
import json
import math
import os
import re
import shutil
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
    "results/toy/exercise.xlsx",
    "results/cnn/history.csv",
    "results/cnn/steps.csv",
    "results/cnn/summary.csv",
    "results/cnn/summary_by_lr.csv",
    "results/cnn/misclassified.csv",
    "results/figures/cnn_loss_curves.png",
    "results/figures/cnn_accuracy_curves.png",
    "results/figures/cnn_accuracy_vs_lr.png",
    "results/figures/cnn_misclassified.png",
]


EXAMPLE = [  # the CNN issue's example network, every kind of layer and a padded conv
    {"conv": {"out": 8, "kernel": 3}},
    "relu",
    "batchnorm",
    {"dropout": 0.05},
    {"maxpool": 2},
    {"conv": {"out": 16, "kernel": 3, "padding": 1, "bias": True}},
    "relu",
    "gap",
    {"linear": 10},
]


def snakemake_command(root, workdir, *args):
    """The command line of Snakemake on the project's Snakefile in `workdir`."""
    return [*SNAKEMAKE, "-s", str(root / "Snakefile"), "--directory", str(workdir), *args]


def snakemake(root, workdir, *args, check=True, env=None, timeout=None):
    """Run Snakemake on the project's Snakefile in `workdir`; fail the test if it fails."""
    result = subprocess.run(
        snakemake_command(root, workdir, *args),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0", **(env or {})},
        timeout=timeout,
    )
    if check and result.returncode != 0:
        pytest.fail(f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def write_config(root, mnist_dir, directory, name="tiny", **changes):
    """tests/config/<name>.yaml with MNIST from mnist_dir, written to directory/config.yaml;
    `changes` set section__key to a value, or a whole section (section={} for its defaults)."""
    config = yaml.safe_load((root / f"tests/config/{name}.yaml").read_text())
    for section in ("mlp", "cnn"):
        if section in config:
            config[section]["data_dir"] = str(mnist_dir)
    for dotted, value in changes.items():
        if "__" not in dotted:
            config[dotted] = value
            continue
        section, key = dotted.split("__")
        config.setdefault(section, {})[key] = value
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def report_script(html, name):
    """The JSON a Snakemake report's <script id=NAME> assigns to its variable."""
    found = re.search(rf'<script id="{name}">\s*var \w+ = (.*?);\s*</script>', html, re.S)
    assert found, f"no {name} in the report"
    return json.loads(found.group(1))


def digests_of(directory, names):
    return {name: hashlib.sha256((directory / name).read_bytes()).hexdigest() for name in names}


def package_copy(root, directory):
    """A copy of jitprop's source, without its caches, as directory/jitprop: put directory
    first on PYTHONPATH to run it instead of the installed package."""
    package = directory / "jitprop"
    shutil.copytree(root / "src/jitprop", package, ignore=shutil.ignore_patterns("__pycache__"))
    return package


# --------------------------------------------------------------------------- the workbook


def step_tables(xlsx, data_only=False):
    """{worksheet: (header, rows)} for each worksheet of `xlsx` holding a step table (a row
    whose first cell is 'step'); rows are openpyxl's cells below that header, as wide as it.
    data_only: the values the file caches instead of the formulas."""
    import openpyxl

    tables = {}
    for sheet in openpyxl.load_workbook(xlsx, data_only=data_only).worksheets:
        rows = list(sheet.iter_rows())
        starts = [k for k, row in enumerate(rows) if row[0].value == "step"]
        if starts:
            header = [cell.value for cell in rows[starts[0]] if cell.value is not None]
            tables[sheet.title] = (header, [row[: len(header)] for row in rows[starts[0] + 1 :]])
    return tables


def constant_cells(xlsx):
    """Addresses of the cells below a step table's header that do not hold a formula."""
    return [
        f"{name}!{cell.coordinate}"
        for name, (_, rows) in step_tables(xlsx).items()
        for row in rows
        for cell in row
        if cell.data_type != "f"
    ]


def _close(found, expected):
    """Equal to 1e-9 relative; an exact zero must come back as zero, or as a number too small
    to be a normal double (where EXP's underflow may differ)."""
    if not isinstance(found, int | float) or isinstance(found, bool):
        return False
    return math.isclose(found, expected, rel_tol=1e-9, abs_tol=sys.float_info.min)


def table_mismatches(xlsx, history):
    """(cell, found, expected) for every step-table cell of `xlsx`, as its file caches it, that
    differs from the row of history.csv (a DataFrame) of its learning rate's sheet run and step.
    The workbook must hold one worksheet per learning rate, eta=LR, with one row per step."""
    sheet_runs = history[history["init"] == "sheet"]
    tables = step_tables(xlsx, data_only=True)
    names = {f"eta={float(lr)!r}": run for lr, run in sheet_runs.groupby("lr")}
    assert sorted(tables) == sorted(names), f"{xlsx}: worksheets {sorted(tables)}"
    mismatches = []
    for name, run in names.items():
        header, rows = tables[name]
        assert len(rows) == len(run), f"{name}: {len(rows)} rows for {len(run)} steps"
        for cells, expected in zip(rows, run.to_dict("records"), strict=True):
            for column, cell in zip(header, cells, strict=True):
                if not _close(cell.value, expected[column]):
                    mismatches.append((f"{name}!{cell.coordinate}", cell.value, expected[column]))
    return mismatches


def cnhw(x):
    """A batch-major (N, C, H, W) array as the CNN kernels' channel-major (C, N, H, W); and back,
    since swapping the first two axes undoes itself."""
    import numpy as np

    return np.ascontiguousarray(x.transpose(1, 0, 2, 3))


def need_two_threads():
    """Tests that compare one thread with two need both a second CPU and a second Numba
    thread: without them they skip, and under CI=true they fail, for CI must run them."""
    import numba

    have = min(len(os.sched_getaffinity(0)), numba.config.NUMBA_NUM_THREADS)
    if have < 2:
        why = f"one thread here ({have}), and the test compares one thread with two"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must compare one thread with two, but: {why}")
        pytest.skip(why)
