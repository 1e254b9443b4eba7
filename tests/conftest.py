"""Shared fixtures: where the canonical MNIST files are (../shared/data/mnist beside the clone,
or JITPROP_MNIST_DIR), the repository root, and the tiny config's workflow, run once for every
test that compares against it.

Work started early: a fixture whose module lists it in EARLY ({fixture: start(mnist, folder)})
has its work started in the background as soon as the tests are collected, when a selected test
uses it; the fixture then waits for it.  The cold compiles (the race, other CPU targets) so run
on the core that the tests' own single-threaded compiling leaves idle."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def mnist_path():
    path = Path(os.environ.get("JITPROP_MNIST_DIR", ROOT.parent / "shared" / "data" / "mnist"))
    # Not a skip: CI always has these files, and a missing copy must fail loudly.
    assert (path / "train-images-idx3-ubyte.gz").is_file(), (
        f"MNIST not found in {path}; set JITPROP_MNIST_DIR to a directory holding the IDX files"
    )
    return path.resolve()


def pytest_collection_finish(session):
    if session.config.option.collectonly or not session.items:
        return
    starters = {}
    for item in session.items:
        for module in (sys.modules[__name__], item.module):
            for name, start in getattr(module, "EARLY", {}).items():
                if name in item.fixturenames:
                    starters[name] = start
    # On the config, which every copy of this module sees (tests import it again by name).
    session.config.jitprop_started = {}
    for name, start in starters.items():
        folder = Path(tempfile.mkdtemp(prefix=f"jitprop-{name}-"))
        session.config.jitprop_started[name] = (start(mnist_path(), folder), folder)


def pytest_sessionfinish(session):
    for work, folder in getattr(session.config, "jitprop_started", {}).values():
        for process in work.values() if isinstance(work, dict) else [work]:
            if isinstance(process, subprocess.Popen) and process.poll() is None:
                process.kill()
                process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def started(request, name):
    """(what the early start of fixture `name` returned, its folder)."""
    return request.config.jitprop_started[name]


@pytest.fixture(scope="session")
def mnist_dir():
    return mnist_path()


@pytest.fixture(scope="session")
def root():
    return ROOT


@pytest.fixture(scope="session")
def tiny_run(root, mnist_dir, tmp_path_factory):
    """A work directory where tests/config/tiny.yaml's workflow ran to the end on 2 cores: the
    bytes other runs of the same config (other cores and threads, a cold cache, SLURM) must
    give.  Its jobs use the package's own Numba cache, which the tests before them filled."""
    from helpers import snakemake, write_config

    workdir = tmp_path_factory.mktemp("tiny_run")
    config = write_config(root, mnist_dir, workdir, "tiny")
    snakemake(root, workdir, "--cores", "2", "--configfile", str(config))
    return workdir


def start_race(mnist, folder):
    """The race of raced_cache, started: a Snakemake process."""
    from helpers import SNAKEMAKE, write_config

    config = write_config(
        ROOT, mnist, folder, "tiny", mlp__learning_rates=[0.05], cnn__learning_rates=[0.1]
    )
    env = {**os.environ, "PYTHONHASHSEED": "0", "NUMBA_CACHE_DIR": str(folder / "numba-cache"),
           "NUMBA_DEBUG_CACHE": "1"}  # fmt: skip
    command = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(folder),
               "--cores", "8", "--configfile", str(config)]  # fmt: skip
    # Into files, not pipes: nobody reads a pipe before the fixture waits, and a full one
    # would stall the race.
    with open(folder / "snakemake.out", "w") as out, open(folder / "snakemake.err", "w") as err:
        return subprocess.Popen(command, stdout=out, stderr=err, env=env)


EARLY = {"raced_cache": start_race}


@pytest.fixture(scope="session")
def raced_cache(request):
    """(work directory, Numba cache): the tiny config with one learning rate for the MLP and
    the CNN (two runs each, beside the toy's nine), on an empty cache of its own, with
    --cores 8 on this 2-core machine, so that up to eight jobs compiled the same kernels into
    it at once (started early, see above).  workdir/snakemake.out holds what the jobs printed
    of the cache (NUMBA_DEBUG_CACHE)."""
    process, workdir = started(request, "raced_cache")
    if process.wait(timeout=1800):
        output = (workdir / "snakemake.out").read_text() + (workdir / "snakemake.err").read_text()
        pytest.fail(f"the race's snakemake failed:\n{output[-6000:]}")
    return workdir, workdir / "numba-cache"
