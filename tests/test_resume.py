"""Interrupted runs: kill the workflow in the middle of an MLP or a CNN epoch (SIGINT as Ctrl-C
does, and SIGKILL as a lost machine does), type the same command again, get the uninterrupted
bytes."""

import os
import signal
import subprocess
import time

import pytest

from helpers import digests_of, snakemake, snakemake_command, write_config

pytestmark = pytest.mark.workflow

TABLES = [
    "results/toy/history.csv",
    "results/toy/summary.csv",
    "results/mlp/history.csv",
    "results/mlp/steps.csv",
    "results/mlp/summary.csv",
    "results/mlp/summary_by_lr.csv",
    "results/cnn/history.csv",
    "results/cnn/steps.csv",
    "results/cnn/summary.csv",
    "results/cnn/summary_by_lr.csv",
    "results/cnn/misclassified.csv",
]


def arguments(root, workdir):
    """The README's first command, on two cores, in workdir."""
    profile, config = root / "workflow/profiles/default", workdir / "config.yaml"
    return ["--profile", str(profile), "--cores", "2", "--configfile", str(config)]


def setup(root, mnist_dir, workdir):
    write_config(root, mnist_dir, workdir, "resume")


def run(root, workdir):
    snakemake(root, workdir, *arguments(root, workdir))


@pytest.fixture(scope="module")
def uninterrupted(root, mnist_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    setup(root, mnist_dir, workdir)
    run(root, workdir)
    return digests_of(workdir, TABLES)


def live_members(pgid, wait=10.0):
    """Processes of the group that are not zombies (killed children reparented to an init that
    reaps slowly still show up as zombies, which write nothing)."""
    deadline = time.monotonic() + wait
    while True:
        live = []
        for stat in (p for p in os.listdir("/proc") if p.isdigit()):
            try:
                with open(f"/proc/{stat}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                live.append(int(stat))
        if not live or time.monotonic() > deadline:
            return live
        time.sleep(0.1)


def training(workdir, family):
    """The runs of the family that have read their data and begun training (their logs say so
    then), as [(lr, seed) directory parts]."""
    logs = (workdir / "results/logs" / family).glob("lr~*/seed~*.log")
    marker = f"jitprop {family}: "
    return [
        log.relative_to(workdir / "results/logs" / family).with_suffix("")
        for log in logs
        if any(
            line.startswith(marker) and line.endswith("; training")
            for line in log.read_text().splitlines()
        )
    ]


# Each family once and each signal once: what a signal does to Snakemake (SIGINT: it stops
# its jobs; SIGKILL of the process group: nothing more runs) does not depend on the family.
@pytest.mark.parametrize(
    ("family", "sig"),
    [("mlp", signal.SIGKILL), ("cnn", signal.SIGINT)],
    ids=["mlp-SIGKILL", "cnn-SIGINT"],
)
def test_killed_mid_epoch_then_same_command_finishes(
    root, mnist_dir, tmp_path, uninterrupted, family, sig
):
    setup(root, mnist_dir, tmp_path)
    process = subprocess.Popen(
        snakemake_command(root, tmp_path, *arguments(root, tmp_path)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        # A test run started in the background of a script inherits SIGINT ignored (POSIX),
        # and so would the workflow, which would then finish instead of stopping.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not (started := training(tmp_path, family)):
        assert process.poll() is None, "the workflow ended before it could be interrupted"
        assert time.monotonic() < deadline, f"no {family} job began training within 120 s"
        time.sleep(0.05)
    time.sleep(0.3)  # past the first batches, well before the end of the first epoch
    # The whole process group, as a terminal's Ctrl-C or a lost machine would.
    os.killpg(process.pid, sig)
    process.wait(timeout=60)
    assert live_members(process.pid) == [], "part of the killed run is still running"
    for name in started:  # killed inside training: the run had written none of its tables
        assert not (tmp_path / f"results/{family}/runs/{name}/history.csv").exists(), name
    run(root, tmp_path)
    assert digests_of(tmp_path, TABLES) == uninterrupted
    leftovers = [p for p in (tmp_path / "results").rglob(".*.tmp")]
    assert leftovers == [], f"temporary files survived the resumed run: {leftovers}"
