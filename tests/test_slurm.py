"""The sweep on a real single-node SLURM (tests/slurm_cluster.py), submitted through the
project's SLURM profile and Snakemake's executor plugin; its results must equal a local run's
byte for byte."""

import os
import shutil

import pytest

import slurm_cluster
from helpers import REPRODUCIBLE, digests_of, snakemake, write_config

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = slurm_cluster.unavailable()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the SLURM test, but: {why}")
        pytest.skip(why)
    if shutil.which("sbatch") and not _plugin_installed():
        pytest.fail("snakemake-executor-plugin-slurm is missing: pip install -e '.[slurm]'")
    cluster = slurm_cluster.Cluster(tmp_path_factory.mktemp("slurm"))
    cluster.start()
    yield cluster
    cluster.stop()


def _plugin_installed():
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return False
    return True


def run(root, workdir, *args, env=None):
    # A bound, so that a cluster that never runs the jobs fails the test instead of hanging it.
    config = str(workdir / "config.yaml")
    snakemake(root, workdir, "--configfile", config, *args, env=env, timeout=600)


def test_sweep_through_the_slurm_profile_equals_a_local_run(
    root, mnist_dir, cluster, tiny_run, raced_cache, tmp_path
):
    slurm, scratch = tmp_path / "slurm", tmp_path / "scratch"
    write_config(root, mnist_dir, slurm)
    # The jobs' node-local scratch (TMPDIR, which they inherit) holds a copy of a cache that
    # jobs of the same kernels filled (the race's): the jobs load their kernels rather than
    # compile them again, as on a node that ran jitprop before.
    user = os.environ.get("USER") or str(os.getuid())
    shutil.copytree(raced_cache[1], scratch / f"jitprop-numba-cache-{user}")
    # squeue, not sacct: the test cluster keeps no accounting.  Short polls keep it quick.
    run(
        root,
        slurm,
        "--profile",
        str(root / "workflow/profiles/slurm"),
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--slurm-no-account",
        "--slurm-keep-successful-logs",
        env={**cluster.env, "TMPDIR": str(scratch)},
    )
    assert digests_of(slurm, REPRODUCIBLE) == digests_of(tiny_run, REPRODUCIBLE)
    # The jobs really went through SLURM: one log per submission.  Nine toy runs shared one
    # group job; the six MLP runs and four CNN runs got one each; aggregation stayed on the
    # submitting side.
    logs = slurm / ".snakemake/slurm_logs"
    submissions = sorted(path.relative_to(logs) for path in logs.rglob("*.log"))
    assert len(submissions) == 1 + 6 + 4, f"{len(submissions)} SLURM jobs: {submissions}"
    kinds = sorted({path.parts[0] for path in submissions})
    assert kinds == ["group_toy_runs_toy_run", "rule_cnn_run", "rule_mlp_run"], kinds
    # Jobs on a node keep Numba's cache on its local scratch.
    log = (slurm / "results/logs/mlp/lr~0.05/seed~0.log").read_text().splitlines()[0]
    assert f"cache {scratch}/jitprop-numba-cache-{user}" in log, log
    # A CNN job runs on the two CPUs it asks for: the profile's `cores: 1` caps threads on the
    # submitting side only (a dry run shows 1), the job step inside the allocation runs with all.
    log = (slurm / "results/logs/cnn/lr~0.1/seed~0.log").read_text().splitlines()[0]
    assert "numba threads 2;" in log, log
