"""Config validation: defaults filled from the schema, and every bad value stopped with a message
that names the key, what was found and what was expected."""

import copy

import numpy as np
import pytest
import yaml

from jitprop import config, families
from jitprop.config import ConfigError, load_schema, validate_config


@pytest.fixture(scope="module")
def schema(root):
    return load_schema(root / "workflow/schemas/config.schema.yaml")


@pytest.fixture(scope="module")
def default_config(root):
    return yaml.safe_load((root / "config.yaml").read_text())


def test_defaults_fill_an_empty_config(schema, default_config):
    filled = validate_config({}, schema)
    assert filled["toy"]["learning_rates"] == [0.1, 0.2, 0.5, 0.8, 1.0, 2.0]
    assert filled["toy"]["weights"] == [0.15, 0.2, 0.25, 0.3, 0.4, 0.45, 0.5, 0.55]
    assert filled["mlp"]["layers"] == [784, 128, 10]
    assert filled["mlp"]["log_every"] == 50
    # config.yaml says nothing the schema's defaults do not.
    assert validate_config(default_config, schema) == filled


def test_every_key_has_a_description_and_a_default(schema):
    for section in families.NAMES:
        for key, sub in schema["properties"][section]["properties"].items():
            assert sub.get("description"), f"{section}.{key} has no description"
            assert "default" in sub, f"{section}.{key} has no default"


def with_value(config, dotted, value):
    config = copy.deepcopy(config)
    section, key = dotted.split(".")
    config.setdefault(section, {})[key] = value
    return config


BAD = [
    ("toy.steps", [20], r"toy.steps: found \[20\]: \[20\] is not of type 'integer'"),
    ("mlp.sweep", {"batch_size": 64}, r"mlp.sweep.batch_size: found 64: .*\(expected: A list of"),
    ("toy.learning_rates", [-0.1], r"toy.learning_rates\[0\]: found -0.1"),
    ("toy.learning_rates", [0], r"toy.learning_rates\[0\]: found 0"),
    ("toy.learning_rates", ["fast"], r"toy.learning_rates\[0\]: found 'fast'.*not of type"),
    (
        "toy.learning_rates",
        [float("nan")],
        r"toy.learning_rates\[0\]: found nan, expected a finite number",
    ),
    ("toy.learning_rates", [], r"toy.learning_rates: found \[\]: .*should be non-empty"),
    ("mlp.learning_rates", [0.1, -1], r"mlp.learning_rates\[1\]: found -1"),
    ("mlp.seeds", [], r"mlp.seeds: found \[\]"),
    ("mlp.seeds", [1.5], r"mlp.seeds\[0\]: found 1.5.*not of type 'integer'"),
    ("toy.seeds", [1, 1], r"toy.seeds: found \[1, 1\]: .*non-unique"),
    ("toy.steps", 0, r"toy.steps: found 0: 0 is less than the minimum of 1"),
    ("mlp.epochs", 0, r"mlp.epochs: found 0"),
    ("mlp.batch_size", 0, r"mlp.batch_size: found 0"),
    (
        "mlp.batch_size",
        70000,
        r"mlp.batch_size: found 70000, expected at most the training set "
        r"size 60000",
    ),
    ("toy.weights", [0.1] * 7, r"toy.weights: found \[.*\]: .* is too short"),
    ("toy.inputs", [0.1, 0.2, 0.3], r"toy.inputs: found .* is too long"),
    ("toy.targets", [0.5], r"toy.targets: found \[0.5\]"),
    ("mlp.layers", [100, 10], r"mlp.layers\[0\]: found 100, expected 784"),
    ("mlp.layers", [784, 32, 9], r"mlp.layers\[2\]: found 9, expected 10"),
    (
        "mlp.activation",
        "gelu",
        r"mlp.activation: found 'gelu': .*is not one of \['relu', "
        r"'sigmoid', 'tanh'\]",
    ),
    ("mlp.loss", "hinge", r"mlp.loss: found 'hinge'"),
    ("mlp.dtype", "float16", r"mlp.dtype: found 'float16'"),
    (
        "mlp.data_dir",
        "/nonexistent/mnist",
        r"mlp.data_dir: directory '/nonexistent/mnist' does "
        r"not exist",
    ),
    ("mlp.mirrors", ["http://insecure.example/"], r"mlp.mirrors\[0\]: found 'http://"),
    ("toy.init_range", [1.0, -1.0], r"toy.init_range: found \[1.0, -1.0\], expected low < high"),
    (
        "mlp.train_size",
        50,
        r"mlp.batch_size: found 64, expected at most the training set size "
        r"50",
    ),
    (
        "cnn.layers",
        [{"conv": {"out": 4, "kernel": 3}}, {"maxpool": 5}, "gap", {"linear": 10}],
        r"config key cnn.layers\[1\] \(maxpool\): a 5x5 pool does not divide its 26x26 input",
    ),
    (
        "cnn.layers",
        [{"conv": {"out": 4, "kernel": 3}}, "gap", {"linear": 7}],
        r"config key cnn.layers\[2\] \(linear\): the network ends with \(7,\); expected 10",
    ),
    ("cnn.layers", ["relu", 3], r"config key cnn.layers\[1\]: found 3"),
    ("toy.steps", 1_000_001, r"toy.steps: found 1000001: .* at most 1,000,000, as the workbook"),
    ("cnn.train_size", 100, r"cnn.batch_size: found 128, expected at most the training set"),
    ("cnn.augment", {"rotation": 200}, r"cnn.augment.rotation: found 200"),
    ("cnn.lr_schedule", "step", r"cnn.lr_schedule: found 'step'"),
    ("cnn.data_dir", "/nonexistent/mnist", r"cnn.data_dir: directory '/nonexistent/mnist'"),
    (
        "toy.learning_rate",
        [0.1],
        r"config key toy: Additional properties are not allowed "
        r"\('learning_rate' was unexpected\); expected one of: "
        r"init_range, inputs",
    ),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD, ids=[f"{k}={v}" for k, v, _ in BAD])
def test_bad_value_is_named(schema, key, value, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(with_value({}, key, value), schema)


def test_unknown_top_level_section(schema):
    with pytest.raises(
        ConfigError,
        match=r"config key \(top level\): Additional properties.*"
        r"'mpl' was unexpected",
    ):
        validate_config({"mpl": {}}, schema)


def test_all_problems_are_listed_at_once(schema):
    config = with_value(with_value({}, "toy.steps", 0), "mlp.epochs", 0)
    with pytest.raises(ConfigError, match=r"(?s)mlp.epochs.*toy.steps"):
        validate_config(config, schema)


def test_a_section_s_shape_problems_are_listed_beside_another_s_type_problems(schema):
    """The later checks (sweeps, layer shapes) wait only for their own section's schema."""
    config = with_value({}, "toy.learning_rates", [0.5, -1.0])
    config = with_value(config, "cnn.layers", [{"conv": {"out": 2, "kernel": 29}}, "gap"])
    with pytest.raises(ConfigError, match=r"(?s)toy.learning_rates\[1\].*cnn.layers\[0\]"):
        validate_config(config, schema)


def test_numbers_given_as_text_get_a_hint_about_snakemake_s_config_option(schema):
    # snakemake --config 'toy={steps: 5}' hands the 5 over as the text '5'.
    with pytest.raises(ConfigError, match=r"found '5': .* give numbers and lists in a --configf"):
        validate_config({"toy": {"steps": "5"}}, schema)
    with pytest.raises(ConfigError) as error:
        validate_config({"toy": {"init_range": "abc"}}, schema)
    assert "--configfile" not in str(error.value)  # text that is no number gets no hint


def test_floats_that_yaml_reads_as_text_get_a_hint(schema):
    # YAML 1.1, PyYAML's, wants a point and a signed exponent: 1e-3 is text to it.
    config = yaml.safe_load("mlp: {learning_rates: [1e-3, 0.1]}")
    with pytest.raises(ConfigError, match=r"YAML reads 1e-3 as text: write 1.0e-3 or 0.001"):
        validate_config(config, schema)
    assert yaml.safe_load("[1.0e-3, 2.0e+5]") == [0.001, 200000.0]  # what the hint suggests
    # A whole number for a key that takes integers; nothing to say of 1.5e0 there, or of nan.
    with pytest.raises(ConfigError, match=r"YAML reads 1e1 as text: write 10;"):
        validate_config(yaml.safe_load("mlp: {epochs: 1e1}"), schema)
    for text in ("mlp: {epochs: 1.5e0}", "mlp: {momentum: nan}"):
        with pytest.raises(ConfigError) as error:
            validate_config(yaml.safe_load(text), schema)
        assert "YAML reads" not in str(error.value), text


def test_batch_norm_of_1x1_maps_needs_batches_of_two(schema):
    layers = [{"conv": {"out": 4, "kernel": 3}}, {"maxpool": 26}, "batchnorm", {"linear": 10}]
    section = {"layers": layers, "data_dir": "resources/mnist"}
    validate_config({"cnn": {**section, "batch_size": 128, "train_size": 130}}, schema)
    for sizes in ({"batch_size": 128, "train_size": 129}, {"batch_size": 1}):
        with pytest.raises(ConfigError, match=r"cnn.layers\[2\] \(batchnorm\): normalizes 1x1"):
            validate_config({"cnn": {**section, **sizes}}, schema)


def test_training_directly_checks_the_batches_of_the_images_it_is_given():
    """cnn.train takes its images as given, not train_size's: a last batch of one is found in
    them, before any training."""
    from jitprop import cnn

    layers = [{"conv": {"out": 4, "kernel": 3}}, {"maxpool": 26}, "batchnorm", {"linear": 10}]
    images, labels = np.zeros((130, 784), np.uint8), np.zeros(130, np.int64)
    test_set, settings = (images[:10], labels[:10]), {"layers": layers, "batch_size": 128}
    with pytest.raises(ConfigError, match=r"cnn.layers\[2\] \(batchnorm\): .*train_size 129"):
        cnn.train((images[:129], labels[:129]), test_set, lr=0.1, seed=0, **settings)
    run = cnn.train((images, labels), test_set, lr=0.1, seed=0, epochs=1, **settings)
    assert len(run["history"]) == 1


def test_integers_are_whole_number_types(schema):
    """JSON Schema counts 1.0 as an integer; range() and array shapes do not, nor do seeds in
    directory names: a float (or a bool) where an integer belongs is named, before any job."""
    with pytest.raises(ConfigError, match=r"config key mlp.seeds\[0\]: found 1.0: .* 'integer'"):
        validate_config(with_value({}, "mlp.seeds", [1.0, 2]), schema)
    with pytest.raises(ConfigError, match=r"config key cnn.epochs: found True: .* 'integer'"):
        validate_config(with_value({}, "cnn.epochs", True), schema)
    assert validate_config(with_value({}, "mlp.seeds", [1, 2]), schema)["mlp"]["seeds"] == [1, 2]


def test_the_workflow_reads_the_packaged_schema(root, schema):
    assert (root / "workflow/schemas/config.schema.yaml").resolve() == config.SCHEMA.resolve()
    assert load_schema() == schema


def test_defaults_are_the_schemas():
    assert config.defaults("mlp")["lr_schedule"] == "cosine"
    assert config.defaults("cnn")["batch_size"] == 128
    assert config.defaults("toy")["weights"] == [0.15, 0.2, 0.25, 0.3, 0.4, 0.45, 0.5, 0.55]


def test_run_settings_fill_defaults_and_name_bad_ones():
    settings = config.run_settings("mlp", {"epochs": 3})
    assert settings["epochs"] == 3
    assert settings["lr_schedule"] == config.defaults("mlp")["lr_schedule"]
    assert "data_dir" not in settings
    assert "learning_rates" not in settings
    with pytest.raises(ConfigError, match=r"mlp setting 'schedule' unknown; expected one of: "):
        config.run_settings("mlp", {"schedule": "cosine"})
    with pytest.raises(ConfigError, match=r"config key mlp.epochs: found 0"):
        config.run_settings("mlp", {"epochs": 0})
    # The network must fit MNIST, as in a config file (a wrong size once crashed the kernels).
    with pytest.raises(ConfigError, match=r"config key mlp.layers\[0\]: found 100, expected 784"):
        config.run_settings("mlp", {"layers": [100, 10]})
    with pytest.raises(ConfigError, match=r"config key mlp.layers\[2\]: found 5, expected 10"):
        config.run_settings("mlp", {"layers": [784, 16, 5]})
    with pytest.raises(ConfigError, match=r"config key cnn.layers\[1\] \(linear\): "):
        config.run_settings("cnn", {"layers": [{"conv": {"out": 2, "kernel": 3}}, {"linear": 5}]})
    # A nested setting given in part gets the rest of its defaults, as in a config file.
    assert config.run_settings("cnn", {"augment": {"rotation": 3.0}})["augment"] == {
        "rotation": 3.0,
        "shift": 0.0,
    }
    with pytest.raises(ConfigError, match=r"config key cnn.augment: .*'rotate' was unexpected"):
        config.run_settings("cnn", {"augment": {"rotate": 3.0}})
    # Keys that list runs or name their data are not a run's settings.
    for key, value in (("sweep", {"epochs": [1, 2]}), ("seeds", [1]), ("data_dir", "x")):
        with pytest.raises(ConfigError, match=rf"mlp setting '{key}' unknown; expected one of"):
            config.run_settings("mlp", {key: value})


SWEEP_BAD = [
    ({"mlp": {"sweep": {"learning_rates": [[0.1]]}}},
     r"config key mlp.sweep.learning_rates: not a key"),
    ({"mlp": {"sweep": {"batch_size": []}}},
     r"config key mlp.sweep.batch_size: found \[\], expected a non-empty list"),
    ({"mlp": {"sweep": {"batch_size": [32, 64, 32]}}},
     r"config key mlp.sweep.batch_size\[2\]: found 32 again"),
    # Two spellings of one run: defaults filled in, they are the same value.
    ({"cnn": {"sweep": {"augment": [{"rotation": 5.0}, {"rotation": 5.0, "shift": 0.0}]}}},
     r"config key cnn.sweep.augment\[1\]: found .* \(the same run as \[0\]\); expected dis"),
    ({"cnn": {"sweep": {"layers": [[{"conv": {"out": 10, "kernel": 28}}],
                                   [{"conv": {"out": 10, "kernel": 28, "padding": 0}}]]}}},
     r"config key cnn.sweep.layers\[1\]: found .* \(the same run as \[0\]\)"),
    ({"mlp": {"sweep": {"test_size": [None, 10000]}}},
     r"config key mlp.sweep.test_size\[1\]: found 10000 \(the same run as \[0\]\)"),
    ({"mlp": {"sweep": {"batch_size": [32, 0]}}},
     r"config key mlp.sweep.batch_size\[1\]: found 0: 0 is less than the minimum of 1"),
    ({"mlp": {"sweep": {"layers": [[784, 10], [100, 10]]}}},
     r"config key mlp.sweep.layers\[1\]\[0\]: found 100, expected 784"),
    ({"mlp": {"sweep": {"train_size": [50]}}},
     r"config key mlp.batch_size: found 64, expected at most the training set size 50 "
     r"\(with train_size=50\)"),
    ({"cnn": {"sweep": {"layers": [[{"linear": 10}], ["gap"]]}}},
     r"config key cnn.sweep.layers\[1\]\[0\] \(gap\): the network ends with \(1,\)"),
    ({"cnn": {"sweep": {"layers": [[{"conv": {"out": 4}}, "gap", {"linear": 10}]]}}},
     r"config key cnn.sweep.layers\[0\]\[0\] \(conv\): found \{'out': 4\}; expected \{out, "),
    ({"cnn": {"sweep": {"layers": [[{"conv": 8}, "gap", {"linear": 10}]]}}},
     r"config key cnn.sweep.layers\[0\]\[0\] \(conv\): found 8; expected \{out, kernel"),
    ({"toy": {"sweep": {"runs_per_job": [1, 2]}}},
     r"config key toy.sweep.runs_per_job: not a key a run of toy uses"),
    ({"toy": {"sweep": {"init_range": [[1.0, -1.0]]}}},
     r"config key toy.sweep.init_range\[0\]: found \[1.0, -1.0\], expected low < high"),
    ({"experiment": "figures"},
     r"config key experiment: found 'figures', a directory of results/ itself"),
    ({"experiment": "a/b"}, r"config key experiment: found 'a/b': 'a/b' does not match"),
]  # fmt: skip


@pytest.mark.parametrize(("given", "message"), SWEEP_BAD, ids=[m[:40] for _, m in SWEEP_BAD])
def test_bad_sweep_or_experiment_is_named(schema, given, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(given, schema)


def test_a_good_sweep_passes():
    filled = validate_config({"experiment": "study-1", "mlp": {"sweep": {"batch_size": [32, 64]}}})
    assert filled["mlp"]["sweep"] == {"batch_size": [32, 64]}
    assert filled["experiment"] == "study-1"


def merged(base, extra):
    """`extra` laid over `base` key by key, as Snakemake merges a second --configfile."""
    result = dict(base)
    for key, value in extra.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        result[key] = merged(base[key], value) if both else value
    return result


@pytest.mark.parametrize(
    "name", ["cnn_lr_sweep.yaml", "cnn_small.yaml", "mlp_800.yaml", "mlp_batch_size.yaml"]
)
def test_the_documented_configs_are_valid(root, schema, default_config, name):
    extra = yaml.safe_load((root / "workflow/configs" / name).read_text())
    validate_config(merged(default_config, extra), schema)


def test_the_cnn_configs_keep_their_parameter_budgets(root, default_config):
    from jitprop import cnn

    small = yaml.safe_load((root / "workflow/configs/cnn_small.yaml").read_text())
    assert cnn.summary(default_config["cnn"]["layers"])[-1]["params"] < 20_000
    assert cnn.summary(small["cnn"]["layers"])[-1]["params"] <= 8_000
