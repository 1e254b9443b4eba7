"""Sweeps of any setting (a directory level and a column each; only new runs when a value is
added; reruns when an unswept setting changes), named experiments kept apart, and one run at a
time per results directory."""

import os
import re
import signal
import subprocess
import time

import pandas as pd
import pytest

from helpers import SNAKEMAKE, digests_of, report_script, snakemake, write_config

pytestmark = pytest.mark.workflow

OUT = "results/tiny-sweep"  # the sweep config's experiment
TABLES = [f"{OUT}/{family}/{name}.csv" for family in ("mlp", "cnn")
          for name in ("history", "steps", "summary", "summary_by_lr", "misclassified")
          if not (family == "mlp" and name == "misclassified")]  # fmt: skip
TOY_TABLES = [f"{OUT}/toy/history.csv", f"{OUT}/toy/summary.csv"]
TABLES += TOY_TABLES


@pytest.fixture(scope="module")
def swept(root, mnist_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sweep")
    config = write_config(root, mnist_dir, workdir, "sweep")
    snakemake(root, workdir, "--cores", "2", "--configfile", str(config))
    return workdir


def planned(root, workdir, config):
    """{rule: jobs} a dry run of the config plans in workdir."""
    result = snakemake(root, workdir, "--cores", "2", "--configfile", str(config), "--dry-run",
                       "--quiet", "rules")  # fmt: skip
    counts = {}
    for line in (result.stdout + result.stderr).splitlines():
        words = line.split()
        if len(words) == 2 and words[1].isdigit() and words[0] != "total":
            counts[words[0]] = int(words[1])
    return counts


def test_sweep_tables_directories_and_experiment(swept):
    assert not (swept / "results/mlp").exists(), "a named experiment wrote outside its directory"
    runs = swept / OUT / "mlp/runs"
    assert (runs / "batch_size~64/layers~784-8-10/lr~0.1/seed~1/summary.csv").is_file()
    assert len(list(runs.rglob("summary.csv"))) == 2 * 2 * 2 * 2
    summary = pd.read_csv(swept / OUT / "mlp/summary.csv")
    assert list(summary.columns[:4]) == ["batch_size", "layers", "lr", "seed"]
    # Keys in alphabetical order, values in the order given, then learning rate and seed.
    assert summary[["batch_size", "layers"]].drop_duplicates().values.tolist() == [
        [32, "784-16-10"], [32, "784-8-10"], [64, "784-16-10"], [64, "784-8-10"],
    ]  # fmt: skip
    by_lr = pd.read_csv(swept / OUT / "mlp/summary_by_lr.csv")
    assert list(by_lr.columns[:3]) == ["batch_size", "layers", "lr"]
    assert len(by_lr) == 2 * 2 * 2
    assert (by_lr["n_runs"] == 2).all()
    for name in ("history", "steps", "timing"):
        table = pd.read_csv(swept / OUT / f"mlp/{name}.csv")
        assert list(table.columns[:3]) == ["batch_size", "layers", "lr"], name
    cnn = pd.read_csv(swept / OUT / "cnn/summary.csv")
    assert cnn["augment"].tolist() == ["rotation0.0_shift0.0", "rotation10.0_shift1.0"]
    wrong = pd.read_csv(swept / OUT / "cnn/misclassified.csv")
    assert wrong.columns[0] == "augment"
    toy = pd.read_csv(swept / OUT / "toy/summary.csv")
    assert toy["inputs"].drop_duplicates().tolist() == ["0.05-0.1", "0.5-0.2"]
    history = pd.read_csv(swept / OUT / "toy/history.csv")
    assert (history.loc[history["inputs"] == "0.5-0.2", "i1"] == 0.5).all()
    for figure in ("toy_loss_grid", "toy_loss_overlay", "mlp_loss_curves", "mlp_accuracy_curves",
                   "mlp_accuracy_vs_lr", "cnn_accuracy_vs_lr", "cnn_misclassified"):  # fmt: skip
        assert (swept / OUT / f"figures/{figure}.png").stat().st_size > 0, figure
    for family in ("toy", "mlp", "cnn"):
        assert (swept / OUT / f"{family}/provenance.json").is_file(), family
    assert (swept / OUT / "logs/mlp/batch_size~32/layers~784-16-10/lr~0.05/seed~0.log").is_file()


def test_report_captions_name_the_experiment_s_files(root, swept):
    report = f"{OUT}/report.html"
    snakemake(root, swept, "--configfile", str(swept / "config.yaml"), "--report", report)
    results = report_script((swept / report).read_text(encoding="utf-8"), "results")
    sources = re.compile(r"from\s+<(?:code|tt)[^>]*>(?:<span[^>]*>)?([^<]+)")
    named = {name: sources.findall(result["caption"]) for name, result in results.items()}
    assert all(name.startswith(f"{OUT}/") for name in named)
    # Every figure, summary_by_lr and the workbook name the table they come from, in OUT.
    assert len([name for name, files in named.items() if files]) >= 12
    # Every caption describes the sweep that was run: its swept settings, by name, and no
    # single value of theirs (the toy's inputs, the MLP's batch, the CNN's turns).
    swept = {"toy": "inputs", "mlp": "batch_size, layers", "cnn": "augment"}
    for name, result in results.items():
        family = name.split("/")[2] if "figures" not in name else name.split("/")[-1][:3]
        files = named[name]
        assert all(f.startswith(f"{OUT}/{family}/") for f in files), (name, files)
        caption = " ".join(re.sub(r"<[^>]+>", "", result["caption"]).split())
        assert re.search(rf"swept settings?,? \(?{swept[family]}\b", caption), (name, caption)
        for single in ("batch 32", "turned by up to", "inputs (0.05, 0.1)"):
            assert single not in caption, (name, caption)


def test_adding_a_value_runs_only_the_new_runs(root, mnist_dir, swept, tmp_path):
    config = write_config(root, mnist_dir, tmp_path, "sweep",
                          mlp__sweep={"batch_size": [32, 64, 128],
                                      "layers": [[784, 16, 10], [784, 8, 10]]})  # fmt: skip
    jobs = planned(root, swept, config)
    assert jobs["mlp_run"] == 2 * 2 * 2  # batch 128: 2 layers x 2 rates x 2 seeds
    assert "toy_run" not in jobs
    assert "cnn_run" not in jobs


def test_changing_an_unswept_setting_reruns_what_it_affects(root, mnist_dir, swept, tmp_path):
    config = write_config(root, mnist_dir, tmp_path, "sweep", mlp__momentum=0.5)
    jobs = planned(root, swept, config)
    assert jobs["mlp_run"] == 16
    assert "toy_run" not in jobs
    assert "cnn_run" not in jobs


def toy_command(root, mnist_dir, workdir):
    """The sweep's toy target in workdir, on one core: its eight jobs take seconds."""
    config = write_config(root, mnist_dir, workdir, "sweep")
    return [*SNAKEMAKE, "toy", "-s", str(root / "Snakefile"), "--directory", str(workdir),
            "--profile", str(root / "workflow/profiles/default"), "--cores", "1",
            "--configfile", str(config)]  # fmt: skip


def test_a_second_run_in_the_same_directory_is_refused(root, mnist_dir, swept, tmp_path):
    """Run one, start another in the same directory: the second stops at once, naming the
    first, which finishes with the bytes of a run alone."""
    command = toy_command(root, mnist_dir, tmp_path)
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)  # fmt: skip
    try:
        lock = tmp_path / OUT / ".jitprop.lock"
        deadline = time.monotonic() + 120
        while not (lock.is_file() and lock.read_text()):
            assert first.poll() is None, "the first run ended before the second could start"
            assert time.monotonic() < deadline, "the first run took no lock within 120 s"
            time.sleep(0.1)
        second = subprocess.run(command, capture_output=True, text=True)
        assert second.returncode != 0
        assert first.poll() is None, "the second run waited for the first to end"
        assert f"is in use by another run (pid {first.pid} on " in second.stderr
        assert first.wait(timeout=600) == 0
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert digests_of(tmp_path, TOY_TABLES) == digests_of(swept, TOY_TABLES)


def test_a_killed_run_leaves_no_lock_to_clear(root, mnist_dir, swept, tmp_path):
    """SIGKILL a run (the whole process group): its lock file stays, naming a dead process,
    and the same command just goes on, to the bytes of a run alone."""
    command = toy_command(root, mnist_dir, tmp_path)
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)  # fmt: skip
    logs = tmp_path / OUT / "logs/toy"
    deadline = time.monotonic() + 120
    while not (logs.is_dir() and any(logs.rglob("*.log"))):
        assert first.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no toy job started within 120 s"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    assert f"pid {first.pid} " in (tmp_path / OUT / ".jitprop.lock").read_text()
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert digests_of(tmp_path, TOY_TABLES) == digests_of(swept, TOY_TABLES)
