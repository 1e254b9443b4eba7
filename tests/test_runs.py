"""The runs a config asks for (jitprop.runs), the files they read, and the command line that
carries them: paths, order, chunks and arguments, all from the config and its schema."""

import pytest

from jitprop import cli, config, data, runs


def filled(**sections):
    return config.validate_config(sections)


def test_toy_runs_are_in_canonical_order_with_self_describing_paths():
    toy = filled(toy={"learning_rates": [2.0, 0.5], "seeds": [3, 1]})["toy"]
    assert runs.toy_runs(toy) == [
        (0.5, "sheet"),
        (0.5, 1),
        (0.5, 3),
        (2.0, "sheet"),
        (2.0, 1),
        (2.0, 3),
    ]
    assert runs.toy_run_dirs(toy)[:2] == [
        "results/toy/runs/lr~0.5/start~sheet",
        "results/toy/runs/lr~0.5/start~seed1",
    ]


def test_toy_chunks_hold_consecutive_runs():
    toy = filled(toy={"learning_rates": [0.5, 2.0], "seeds": [1], "runs_per_job": 3})["toy"]
    assert runs.toy_parts(toy) == ["chunk~00000", "chunk~00001"]
    first, second = (runs.toy_args(toy, part) for part in runs.toy_parts(toy))
    assert first[-9:] == ["--run", "0.5", "sheet", "--run", "0.5", "1", "--run", "2.0", "sheet"]
    assert second[-3:] == ["--run", "2.0", "1"]
    assert second.count("--run") == 1


def test_toy_args_carry_every_setting():
    toy = filled(toy={"steps": 7, "inputs": [0.25, 0.5]})["toy"]
    args = runs.toy_args(toy, "lr~0.5/start~seed2")
    parsed = cli.build_parser().parse_args(["toy", *args, "--out", "x"])
    assert parsed.steps == 7
    assert parsed.inputs == [0.25, 0.5]
    assert parsed.weights == toy["weights"]
    assert parsed.run == [["0.5", "2"]]
    with pytest.raises(ValueError, match=r"toy run 'lr~9.0/start~sheet' is not one of"):
        runs.toy_args(toy, "lr~9.0/start~sheet")


@pytest.mark.parametrize(
    ("family", "changes"),
    [
        ("mlp", {"layers": [784, 32, 10], "test_size": 100}),
        ("cnn", {"layers": [{"conv": {"out": 4, "kernel": 3}}, "gap", {"linear": 10}],
                 "augment": {"rotation": 3.0, "shift": 1.5}, "train_size": 500}),
    ],
)  # fmt: skip
def test_run_args_give_the_cli_the_config_and_the_cli_defaults_are_the_schemas(family, changes):
    section = filled(**{family: changes})[family]
    args = runs.run_args(section, family, "0.05", "2")
    parsed = cli.build_parser().parse_args([family, *args, "--out", "x"])
    assert (parsed.lr, parsed.seed) == (0.05, 2)
    for key in runs.options(family):
        assert getattr(parsed, key) == section[key], key
    # With no option given, the command line runs what the schema's defaults say.
    bare = cli.build_parser().parse_args([family, "--lr", "0.1", "--seed", "0", "--out", "x"])
    defaults = config.defaults(family)
    for key in runs.options(family):
        assert getattr(bare, key) == defaults[key], key
    first = section["learning_rates"][0]
    assert runs.run_dirs(section, family)[0] == f"results/{family}/runs/lr~{first!r}/seed~0"


def test_every_subcommand_runs_the_handler_named_after_it():
    parser = cli.build_parser()
    subcommands = parser._subparsers._group_actions[0].choices
    assert set(subcommands) >= {
        "toy",
        "toy-aggregate",
        "toy-plot",
        "mlp",
        "mlp-aggregate",
        "mlp-plot",
        "download-mnist",
    }
    for name, subparser in subcommands.items():
        assert subparser.get_default("func").__name__ == f"cmd_{name.replace('-', '_')}"


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


def test_the_workflow_tracks_the_files_the_run_reads(mnist_dir):
    assert runs.mnist_files(mnist_dir) == [
        str(data.find_file(mnist_dir, stem)) for stem in data.FILES.values()
    ]
