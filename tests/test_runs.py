"""The runs a config asks for (jitprop.runs), the files they read, and the command line that
carries them: paths, order, chunks and arguments, all from the config and its schema."""

import subprocess
import sys

import pytest

from jitprop import cli, config, data, families, runs, sweep, tables, toy


def filled(**sections):
    return config.validate_config(sections)


def test_toy_runs_are_in_canonical_order_with_self_describing_paths():
    config = filled(toy={"learning_rates": [2.0, 0.5], "seeds": [3, 1]})
    assert runs.toy_parts(config) == [
        "lr~0.5/start~sheet",
        "lr~0.5/start~seed1",
        "lr~0.5/start~seed3",
        "lr~2.0/start~sheet",
        "lr~2.0/start~seed1",
        "lr~2.0/start~seed3",
    ]
    assert runs.toy_run_dirs(config)[0] == "results/toy/runs/lr~0.5/start~sheet"


def test_toy_chunks_hold_consecutive_runs():
    config = filled(toy={"learning_rates": [0.5, 2.0], "seeds": [1], "runs_per_job": 3})
    assert runs.toy_parts(config) == ["chunk~00000", "chunk~00001"]
    first, second = (runs.toy_args(config, part) for part in runs.toy_parts(config))
    assert first[-9:] == ["--run", "0.5", "sheet", "--run", "0.5", "1", "--run", "2.0", "sheet"]
    assert second[-3:] == ["--run", "2.0", "1"]
    assert second.count("--run") == 1


def test_toy_args_carry_every_setting():
    """Every setting differs from its default, so a dropped option shows; negative numbers in
    exponent form, and a swept value that starts with '-', reach the command line as values,
    not options."""
    weights = [-1e-05, 0.2, -0.3, 4e20, 0.5, -6e-20, 0.7, 0.8]
    config = filled(
        toy={
            "steps": 7,
            "weights": weights,
            "inputs": [0.25, -0.5],
            "targets": [0.1, 0.9],
            "sweep": {"init_range": [[-1.5e-3, 1.0], [0.0, 0.5]]},
        }
    )
    part = "init_range~-0.0015-1.0/lr~0.5/start~seed2"
    args = runs.toy_args(config, part)
    parsed = cli.build_parser().parse_args(["toy", *args, "--out", "x"])
    assert parsed.steps == 7
    assert parsed.weights == weights
    assert parsed.inputs == [0.25, -0.5]
    assert parsed.targets == [0.1, 0.9]
    assert parsed.init_range == [-1.5e-3, 1.0]
    assert parsed.run == [["0.5", "2"]]
    assert parsed.column == [("init_range", "-0.0015-1.0")]
    unswept = filled(toy={})
    parsed = cli.build_parser().parse_args(
        ["toy", *runs.toy_args(unswept, "lr~0.5/start~sheet"), "--out", "x"]
    )
    assert parsed.column is None
    with pytest.raises(ValueError, match=r"toy run 'lr~9.0/start~sheet' is not one of"):
        runs.toy_args(config, "lr~9.0/start~sheet")


def test_a_toy_sweep_chunks_within_each_combination():
    config = filled(
        toy={
            "sweep": {"steps": [10, 20]},
            "runs_per_job": 3,
            "learning_rates": [0.5],
            "seeds": [1, 2, 3],
        }
    )
    assert runs.toy_parts(config) == [
        "steps~10/chunk~00000",
        "steps~10/chunk~00001",
        "steps~20/chunk~00000",
        "steps~20/chunk~00001",
    ]
    parsed = cli.build_parser().parse_args(
        ["toy", *runs.toy_args(config, "steps~20/chunk~00001"), "--out", "x"]
    )
    assert parsed.steps == 20
    assert parsed.run == [["0.5", "3"]]
    assert parsed.column == [("steps", "20")]


@pytest.mark.parametrize(
    ("family", "changes"),
    [
        ("mlp", {"layers": [784, 32, 10], "test_size": 100}),
        (
            "cnn",
            {
                "layers": [{"conv": {"out": 4, "kernel": 3}}, "gap", {"linear": 10}],
                "augment": {"rotation": 3.0, "shift": 1.5},
                "train_size": 500,
            },
        ),
    ],
)
def test_run_args_give_the_cli_the_config_and_the_cli_defaults_are_the_schemas(family, changes):
    filled_config = filled(**{family: {**changes, "learning_rates": [0.05, 0.01], "seeds": [2, 0]}})
    section = filled_config[family]
    args = runs.run_args(filled_config, family, "lr~0.05/seed~2")
    parsed = cli.build_parser().parse_args([family, *args, "--out", "x"])
    assert (parsed.lr, parsed.seed) == (0.05, 2)
    for key in runs.options(family):
        assert getattr(parsed, key) == section[key], key
        # Each option is on the command line, not left to the command's default.
        given = section[key] is not None
        assert any(word.split("=")[0] == f"--{key.replace('_', '-')}" for word in args) == given
    # With no option given, the command line runs what the schema's defaults say.
    bare = cli.build_parser().parse_args([family, "--lr", "0.1", "--seed", "0", "--out", "x"])
    for key in runs.options(family):
        assert getattr(bare, key) == config.defaults(family)[key], key
    # Learning rates ascending, then seeds ascending, whatever the config's order.
    assert [d.split("runs/")[1] for d in runs.run_dirs(filled_config, family)] == [
        "lr~0.01/seed~0",
        "lr~0.01/seed~2",
        "lr~0.05/seed~0",
        "lr~0.05/seed~2",
    ]
    with pytest.raises(ValueError, match=rf"{family} run 'lr~9.0/seed~0' is not one of"):
        runs.run_args(filled_config, family, "lr~9.0/seed~0")


@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_a_data_dir_that_starts_with_a_dash_reaches_the_cli_as_a_value(
    family, mnist_dir, tmp_path, monkeypatch
):
    (tmp_path / "-mnist").symlink_to(mnist_dir)
    monkeypatch.chdir(tmp_path)
    filled_config = filled(**{family: {"data_dir": "-mnist", "learning_rates": [0.1]}})
    run = runs.run_dirs(filled_config, family)[0].split("runs/")[1]
    args = runs.run_args(filled_config, family, run)
    assert cli.build_parser().parse_args([family, *args, "--out", "x"]).data_dir == "-mnist"


def test_a_sweep_is_the_product_of_its_keys_with_a_directory_level_and_a_column_each():
    config = filled(
        experiment="batch",
        mlp={
            "learning_rates": [0.1],
            "seeds": [0, 1],
            "sweep": {"layers": [[784, 128, 10], [784, 800, 10]], "batch_size": [64, 32]},
        },
    )
    dirs = runs.run_dirs(config, "mlp")
    assert len(dirs) == 2 * 2 * 2
    # Keys in alphabetical order, values in the order given, then learning rate and seed.
    assert dirs[:3] == [
        "results/batch/mlp/runs/batch_size~64/layers~784-128-10/lr~0.1/seed~0",
        "results/batch/mlp/runs/batch_size~64/layers~784-128-10/lr~0.1/seed~1",
        "results/batch/mlp/runs/batch_size~64/layers~784-800-10/lr~0.1/seed~0",
    ]
    parsed = cli.build_parser().parse_args(
        [
            "mlp",
            *runs.run_args(config, "mlp", "batch_size~32/layers~784-800-10/lr~0.1/seed~1"),
            "--out",
            "x",
        ]
    )
    assert parsed.batch_size == 32
    assert parsed.layers == [784, 800, 10]
    assert parsed.column == [("batch_size", "32"), ("layers", "784-800-10")]


def test_swept_values_get_safe_distinct_labels():
    layers = config.defaults("cnn")["layers"]
    assert sweep.value_labels([0.05, 1e-4, True, None, "float32"]) == [
        "0.05",
        "0.0001",
        "true",
        "none",
        "float32",
    ]
    label = sweep.value_labels([layers])[0]
    assert label.startswith("conv8k3-relu-bn-drop0.05-conv16k3")
    assert {"rotation7.0_shift1.0"} == set(sweep.value_labels([{"rotation": 7.0, "shift": 1.0}]))
    # Unsafe characters go, and values they would make alike stay apart.
    a, b = sweep.value_labels(["a/b", "a b"])
    assert "/" not in a + b
    assert " " not in a + b
    assert a != b
    long = sweep.value_labels([list(range(200))])[0]
    assert len(long) <= sweep.LABEL_LENGTH


SUBCOMMANDS = ["toy", "toy-aggregate", "toy-plot", "toy-sheet", "mlp", "mlp-aggregate"]
SUBCOMMANDS += ["mlp-plot", "cnn", "cnn-aggregate", "cnn-plot", "download-mnist", "provenance"]


def test_the_subcommands_are_the_pipeline_s_steps():
    # Every one, and only these: test_every_help_prints below covers each.
    subcommands = cli.build_parser()._subparsers._group_actions[0].choices
    assert sorted(subcommands) == sorted(SUBCOMMANDS)


@pytest.mark.parametrize(
    ("present", "chosen"),
    [(["x.gz", "x"], "x.gz"), (["x"], "x"), (["x.gz"], "x.gz"), ([], "x.gz")],
)
def test_one_function_chooses_the_file_a_run_reads(tmp_path, present, chosen):
    for name in present:
        (tmp_path / name).write_bytes(b"")
    assert data.choose_file(tmp_path, "x") == tmp_path / chosen
    if present:
        assert data.find_file(tmp_path, "x") == tmp_path / chosen
    else:
        with pytest.raises(data.DataError, match=r"file not found"):
            data.find_file(tmp_path, "x")


def test_the_workflow_tracks_the_files_the_run_reads(mnist_dir, monkeypatch):
    read = []
    real = data._read_bytes
    monkeypatch.setattr(data, "_read_bytes", lambda path: read.append(str(path)) or real(path))
    data.load_mnist(mnist_dir, train_size=10, test_size=10)
    assert sorted(runs.mnist_files(mnist_dir)) == sorted(read)
    assert len(read) == 4


@pytest.mark.parametrize("command", [[], *[[name] for name in SUBCOMMANDS]])
def test_every_help_prints(command, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main([*command, "--help"])
    assert exit.value.code == 0
    assert "usage: jitprop" in capsys.readouterr().out


def failed_cli(*args):
    """stderr of `python -m jitprop ARGS`, which must refuse its input (exit status 2); in a
    process of its own, as the CLI sets NUMBA_NUM_THREADS in its environment."""
    command = [sys.executable, "-m", "jitprop", *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    return result.stderr


OPTIONS = "invalid options:\n  "


@pytest.mark.parametrize(
    ("family", "option", "message"),
    [
        ("mlp", ["--train-size", "-1"], OPTIONS + "--train-size: found -1: -1 is less than the "),
        ("mlp", ["--test-size", "10001"], OPTIONS + "--test-size: found 10001, expected at most"),
        ("mlp", ["--batch-size", "0"], OPTIONS + "--batch-size: found 0: 0 is less than the "),
        ("mlp", ["--train-size", "10"], OPTIONS + "--batch-size: found 64, expected at most the"),
        ("mlp", ["--data-dir", "/nonexistent"], OPTIONS + "--data-dir: directory '/nonexistent' "),
        ("mlp", ["--lr", "-1"], "--lr: expected a finite number > 0, found -1.0"),
        ("mlp", ["--seed", "-3"], "--seed: expected an integer >= 0, found -3"),
        ("cnn", ["--lr", "inf"], "--lr: expected a finite number > 0, found inf"),
        ("cnn", ["--train-size", "100"], OPTIONS + "--batch-size: found 128, expected at most"),
        (
            "cnn",
            ["--layers", '[{"conv": {"out": 4, "kernel": 3}}, {"maxpool": 4}, "gap"]'],
            OPTIONS + "--layers[1] (maxpool): a 4x4 pool does not divide its 26x26 input",
        ),
    ],
)
def test_cli_options_are_checked_before_the_data_is_read(
    family, option, message, mnist_dir, tmp_path
):
    args = ["--lr", "0.1", "--seed", "0", "--data-dir", mnist_dir, *option]  # the last one wins
    stderr = failed_cli(family, *args, "--out", tmp_path / "out")
    assert f"jitprop {family}: error: {message}" in stderr
    assert "test images; training" not in stderr  # the log line that begins training
    assert "params" not in stderr  # the CNN's table of layers, printed once the options hold
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("run", "message"),
    [
        (["--run", "abc", "sheet"], "--run LR: expected a number, found 'abc'"),
        (["--run", "0.5", "x"], "--run START: expected 'sheet' or an integer seed, found 'x'"),
        (["--lr", "0.5", "--seed", "-3"], "seed: expected a whole number >= 0, found -3"),
        (["--run", "0.5", "sheet", "--seed", "4"], "--seed goes with --lr; a --run names its"),
    ],
)
def test_cli_bad_toy_runs_are_named(run, message, tmp_path):
    stderr = failed_cli("toy", *run, "--out", tmp_path / "out")
    assert f"jitprop toy: error: {message}" in stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("family", "columns", "message"),
    [
        ("toy", ["E_total=1"], "--column E_total: already a column of the run's tables"),
        ("mlp", ["lr=0.1"], "--column lr: already a column of the run's tables"),
        ("cnn", ["n_params=5"], "--column n_params: already a column of the run's tables"),
        ("mlp", ["epochs=1", "--column", "epochs=2"], "--column epochs: repeated"),
        ("toy", ["note=a,b"], "--column 'note=a,b': expected no comma, quote or line"),
        ("mlp", ["epochs"], "argument --column: expected NAME=VALUE, found 'epochs'"),
    ],
)
def test_cli_bad_column_names_are_named_before_training(
    family, columns, message, mnist_dir, tmp_path
):
    run = (
        ["--lr", "0.5"]
        if family == "toy"
        else ["--lr", "0.1", "--seed", "0", "--data-dir", mnist_dir]
    )
    stderr = failed_cli(family, *run, "--column", *columns, "--out", tmp_path / "out")
    assert f"jitprop {family}: error: {message}" in stderr
    assert "test images; training" not in stderr  # the log line that begins training
    assert not (tmp_path / "out").exists()


def test_cli_json_settings_that_do_not_parse_are_named(capsys):
    args = ["cnn", "--lr", "0.1", "--seed", "0", "--augment", "{rotation: 3}", "--out", "o"]
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(args)
    expected = "argument --augment: expected JSON (Expecting property name enclosed in double "
    assert expected + "quotes at character 2), found '{rotation: 3}'" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-3", "x"])
def test_cli_threads_below_one_are_refused(value, capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--threads", value, "toy", "--lr", "0.5", "--out", "o"])
    assert f"--threads: expected a whole number >= 1, found '{value}'" in capsys.readouterr().err


def fake_run(out, lr, seed, columns=()):
    """A CNN run's tables as `jitprop cnn` writes them, from a made-up two-epoch result: the
    input of aggregation and figures, not a claim about training."""
    result = {
        "history": [
            {
                "epoch": e,
                "train_loss": 1 / e,
                "train_accuracy": 0.5 + e / 10,
                "test_loss": 1.1 / e,
                "test_accuracy": 0.5 + e / 11,
            }
            for e in (1, 2)
        ],
        "steps": [{"step": s, "batch_loss": 2 - s / 4} for s in range(4)],
        "diverged": False,
        "diverged_step": None,
        "n_params": 430,
        "misclassified": [{"index": 7, "label": 3, "predicted": 5}],
        "timing": [{"epoch": e, "seconds": 0.5} for e in (1, 2)],
    }
    tables.write_run(result, lr, seed, out, columns)
    return out


def test_a_diverged_run_has_no_final_values_but_its_best_epoch():
    """Diverged in epoch 3, after two good epochs: no final model, so no final losses or
    accuracy; the best test accuracy is the completed epochs' best."""
    history = [
        {"epoch": e, "train_loss": 1 / e, "train_accuracy": 0.5, "test_loss": 2 / e,
         "test_accuracy": accuracy}
        for e, accuracy in ((1, 0.7), (2, 0.6))
    ]  # fmt: skip
    result = {"history": history, "steps": [], "timing": [], "diverged": True, "diverged_step": 9}
    summary = tables.run_frames(result, 0.5, 0)["summary"].iloc[0]
    assert summary[["final_train_loss", "final_test_loss", "final_test_accuracy"]].isna().all()
    assert (summary["best_test_accuracy"], summary["epochs_completed"]) == (0.7, 2)
    assert (summary["diverged"], summary["diverged_step"]) == (True, 9)
    finished = tables.run_frames({**result, "diverged": False}, 0.5, 0)["summary"].iloc[0]
    assert finished[["final_train_loss", "final_test_loss", "final_test_accuracy"]].tolist() == [
        0.5,
        1.0,
        0.6,
    ]


def test_aggregation_refuses_runs_of_other_columns_and_writes_nothing(tmp_path):
    a = fake_run(tmp_path / "a", 0.1, 0)
    b = fake_run(tmp_path / "b", 0.1, 1, [("batch_size", 32)])
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"b/history.csv: columns \['batch_size', 'lr', "):
        tables.aggregate([a, b], out, "cnn")
    assert not out.exists()
    b = fake_run(tmp_path / "c", 0.1, 1)
    (b / "timing.csv").unlink()  # the last table aggregated
    with pytest.raises(FileNotFoundError, match=r"c/timing\.csv"):
        tables.aggregate([a, b], out, "cnn")
    assert not out.exists()
    tables.aggregate([a, fake_run(tmp_path / "d", 0.1, 1)], out, "cnn")
    assert sorted(p.name for p in out.iterdir()) == [
        *sorted(f"{name}.csv" for name in [*families.FAMILIES["cnn"].tables, "summary_by_lr"])
    ]


def test_aggregated_tables_keep_the_labels_of_swept_values(tmp_path):
    """A swept weight decay of 0 and 0.001: its column reads 0, as its directory does, not the
    0.0 a float column would write."""
    runs = [
        fake_run(tmp_path / name, 0.1, 0, [("weight_decay", label)])
        for name, label in (("a", "0"), ("b", "0.001"))
    ]
    tables.aggregate(runs, tmp_path / "out", "cnn")
    for name in ("history", "summary", "summary_by_lr", "timing"):
        lines = (tmp_path / "out" / f"{name}.csv").read_text().splitlines()[1:]
        assert [line.split(",")[0] for line in lines][:: len(lines) // 2] == ["0", "0.001"], name
    summary = tables.read_table(tmp_path / "out/summary.csv")
    assert summary["weight_decay"].tolist() == ["0", "0.001"]
    assert summary["diverged_step"].dtype == "Int64"
    # A label pandas would take for missing stays text (an empty field is still missing).
    run = fake_run(tmp_path / "c", 0.1, 0, [("note", "NA")])
    summary = tables.read_table(run / "summary.csv")
    assert summary["note"].tolist() == ["NA"]
    assert summary["diverged_step"].isna().all()


def test_toy_aggregation_checks_every_table_before_writing(tmp_path):
    for run, summary in (("a", toy.SUMMARY_HEADER), ("b", "x," + toy.SUMMARY_HEADER)):
        (tmp_path / run).mkdir()
        (tmp_path / run / "history.csv").write_text(toy.HISTORY_HEADER + "\n")
        (tmp_path / run / "summary.csv").write_text(summary + "\n")
    stderr = failed_cli("toy-aggregate", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "o")
    assert "b/summary.csv: header 'x," in stderr
    assert not (tmp_path / "o").exists()


def test_cnn_figures_read_the_images_before_drawing(tmp_path):
    tables.aggregate([fake_run(tmp_path / "a", 0.1, 0)], tmp_path / "results", "cnn")
    figures = tmp_path / "figures"
    args = ["--figures", figures, "--data-dir", tmp_path / "nowhere"]
    stderr = failed_cli("cnn-plot", tmp_path / "results", *args)
    assert "nowhere" in stderr
    assert not figures.exists()
