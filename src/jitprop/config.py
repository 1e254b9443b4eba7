"""The config's schema, the one source of every default, and validation: fill defaults, check
the schema and what a schema cannot say (NaN, layer widths, batch size vs data), with messages
that name the key."""

import copy
import functools
import math
from pathlib import Path

import yaml

MNIST_PIXELS, MNIST_CLASSES = 784, 10
MNIST_TRAIN_SIZE = 60_000
# The schema ships with the package (workflow/schemas/ links to it), so Python callers, the CLI
# and the workflow read the same defaults.
SCHEMA = Path(__file__).with_name("config.schema.yaml")
# Keys of a section that say which runs there are and where their data comes from, rather than
# how one run trains.
NOT_RUN_KEYS = {
    "learning_rates",
    "seeds",
    "data_dir",
    "mirrors",
    "train_size",
    "test_size",
    "runs_per_job",
}


class ConfigError(ValueError):
    """A config value is wrong; the message names the key, what was found and what was expected."""


def key_name(path):
    """'mlp.learning_rates[0]' from a path of keys and indices."""
    name = ""
    for part in path:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "(top level)"


def _fill_defaults(instance, schema):
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if isinstance(instance.get(key), dict):
            _fill_defaults(instance[key], sub)


def _non_finite(value, path=()):
    """Paths of NaN or infinite numbers anywhere in the config (the schema's bounds pass NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _non_finite(item, (*path, index))


def _schema_error(error, schema):
    key = key_name(error.absolute_path)
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    if error.validator == "additionalProperties":
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        return f"config key {key}: {error.message}; expected one of: {allowed}"
    # The parent key's description explains list items better than the item schema can.
    if description is None and error.absolute_path:
        parent = schema
        for part in list(error.absolute_path)[:-1]:
            parent = parent.get("properties", {}).get(part, parent.get("items", {}))
        if isinstance(error.absolute_path[-1], int):
            description = parent.get("description")
    expected = f" (expected: {' '.join(description.split())})" if description else ""
    return f"config key {key}: found {error.instance!r}: {error.message}{expected}"


def _schema_problems(instance, schema):
    """Every place where `instance` breaks `schema`, or holds NaN or infinity, in words."""
    import jsonschema  # here: a toy job reads defaults, and never validates

    problems = [
        f"config key {key_name(p)}: found {v!r}, expected a finite number"
        for p, v in _non_finite(instance)
    ]
    validator = jsonschema.Draft202012Validator(schema)
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path))):
        problems.append(_schema_error(error, schema))
    return problems


def load_schema(path=SCHEMA):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@functools.cache
def _schema():
    return load_schema()


def defaults(section):
    """{key: default} of one section of the config, from the schema."""
    properties = _schema()["properties"][section]["properties"]
    return {key: copy.deepcopy(sub["default"]) for key, sub in properties.items()}


def run_settings(section, settings):
    """The settings of one run of `section` (`settings` filled with the schema's defaults),
    checked against the schema; raises ConfigError naming any unknown or invalid one."""
    keys = [key for key in defaults(section) if key not in NOT_RUN_KEYS]
    unknown = sorted(set(settings) - set(keys))
    if unknown:
        raise ConfigError(
            f"{section} setting {unknown[0]!r} unknown; expected one of: " + ", ".join(keys)
        )
    filled = {key: settings.get(key, value) for key, value in defaults(section).items()}
    problems = _schema_problems({section: filled}, _schema())
    if problems:
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems))
    return {key: filled[key] for key in keys}


def validate_config(config, schema=None):
    """Return a copy of `config` with defaults filled, or raise ConfigError listing every problem.

    `schema`: the parsed JSON schema, by default the package's (config.schema.yaml)."""
    schema = _schema() if schema is None else schema
    config = copy.deepcopy(dict(config))
    _fill_defaults(config, schema)
    problems = _schema_problems(config, schema)
    if not problems:
        problems = _semantic_problems(config)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    for section in ("toy", "mlp"):
        config[section]["seeds"] = [int(seed) for seed in config[section]["seeds"]]
    return config


def _semantic_problems(config):
    problems = []
    toy, mlp = config["toy"], config["mlp"]
    low, high = toy["init_range"]
    if not low < high:
        problems.append(
            f"config key toy.init_range: found {toy['init_range']}, expected low < high"
        )
    layers = mlp["layers"]
    if layers[0] != MNIST_PIXELS:
        problems.append(
            f"config key mlp.layers[0]: found {layers[0]}, expected {MNIST_PIXELS} "
            "(the number of pixels of an MNIST image)"
        )
    if layers[-1] != MNIST_CLASSES:
        problems.append(
            f"config key mlp.layers[{len(layers) - 1}]: found {layers[-1]}, "
            f"expected {MNIST_CLASSES} (the number of classes)"
        )
    train_size = mlp["train_size"] or MNIST_TRAIN_SIZE
    if mlp["train_size"] is not None and mlp["train_size"] > MNIST_TRAIN_SIZE:
        problems.append(
            f"config key mlp.train_size: found {mlp['train_size']}, "
            f"expected at most {MNIST_TRAIN_SIZE}"
        )
    elif mlp["batch_size"] > train_size:
        problems.append(
            f"config key mlp.batch_size: found {mlp['batch_size']}, expected at most "
            f"the training set size {train_size}"
        )
    if mlp["test_size"] is not None and mlp["test_size"] > 10_000:
        problems.append(
            f"config key mlp.test_size: found {mlp['test_size']}, expected at most 10000"
        )
    data_dir, download_dir = Path(mlp["data_dir"]), defaults("mlp")["data_dir"]
    if data_dir.as_posix() != download_dir and not data_dir.is_dir():
        problems.append(
            f"config key mlp.data_dir: directory {str(data_dir)!r} does not exist; "
            f"expected a directory holding the MNIST IDX files, or {download_dir!r} "
            "to download them"
        )
    return problems
