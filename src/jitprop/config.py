"""The config's schema, the one source of every default, and validation: fill defaults, check
the schema and what a schema cannot say (NaN, layer widths, batch size vs data), with messages
that name the key."""

import copy
import functools
import math
from pathlib import Path

import yaml

from jitprop import checks, cnn_spec, data, families, sweep

# The schema ships with the package (workflow/schemas/ links to it), so Python callers, the CLI
# and the workflow read the same defaults.
SCHEMA = Path(__file__).with_name("config.schema.yaml")
# Keys of a section that say which runs there are, and where their data comes from, rather
# than how one run trains.
RUN_LIST_KEYS = {"learning_rates", "seeds", "sweep", "runs_per_job"}
DATA_KEYS = {"data_dir", "mirrors", "train_size", "test_size"}
NOT_RUN_KEYS = RUN_LIST_KEYS | DATA_KEYS


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
    return f"config key {key}: found {error.instance!r}: {error.message}{expected}{_as_text(error)}"


def _as_text(error):
    """A hint when a value that should not be text is text that reads as one: most likely
    Snakemake's --config, which hands values nested in a section over as strings."""
    if error.validator != "type" or not isinstance(error.instance, str):
        return ""
    try:
        value = yaml.safe_load(error.instance)
    except yaml.YAMLError:
        return ""
    from_config = (
        "; if it came from --config, note that Snakemake passes the values inside a section "
        "as text: give numbers and lists in a --configfile"
    )
    if isinstance(value, str) and _is_float(value) and math.isfinite(float(value)):
        number = float(value)
        if "integer" in _types(error.validator_value):  # 1e1 for epochs: 10
            if not number.is_integer():
                return ""
            return f"; YAML reads {value} as text: write {int(number)}{from_config}"
        spelled = f"{_yaml_float(value)} or {number!r}"
        return f"; YAML reads {value} as text: write {spelled}{from_config}"
    if isinstance(value, str) or value is None:
        return ""
    return from_config


def _types(validator_value):
    return [validator_value] if isinstance(validator_value, str) else list(validator_value)


def _yaml_float(text):
    """text (a float Python reads) as YAML 1.1 reads a float: a point in the mantissa and a
    sign in the exponent, 1e3 -> 1.0e+3."""
    mantissa, _, exponent = text.lower().partition("e")
    mantissa += "" if "." in mantissa else ".0"
    if not exponent:
        return mantissa
    return f"{mantissa}e{'' if exponent[0] in '+-' else '+'}{exponent}"


def _is_float(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _schema_problems(instance, schema):
    """Every place where `instance` breaks `schema`, or holds NaN or infinity, in words."""
    import jsonschema  # here: a toy job reads defaults, and never validates

    problems = [
        f"config key {key_name(p)}: found {v!r}, expected a finite number"
        for p, v in _non_finite(instance)
    ]
    validator = _validator_class(jsonschema)(schema)
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path))):
        problems.append(_schema_error(error, schema))
    return problems


@functools.cache
def _validator_class(jsonschema):
    """JSON Schema 2020-12, but an integer is a whole-number type (checks.whole_number): JSON Schema
    counts 3.0 as an integer."""

    def is_integer(_checker, instance):
        return checks.whole_number(instance)

    base = jsonschema.Draft202012Validator
    types = base.TYPE_CHECKER.redefine("integer", is_integer)
    return jsonschema.validators.extend(base, type_checker=types)


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
    filled = copy.deepcopy(dict(settings))
    _fill_defaults(filled, _schema()["properties"][section])  # nested keys too: augment.shift
    problems = _schema_problems({section: filled}, _schema())
    if problems:
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems))
    if families.FAMILIES[section].on_data:
        raise_problems(section, _layer_problems(section, filled))
    return {key: filled[key] for key in keys}


def raise_problems(section, problems):
    """Raise a ConfigError listing (key, message) problems of a run's settings, if any."""
    if problems:
        lines = [f"config key {section}.{key}: {message}" for key, message in problems]
        raise ConfigError("invalid settings:\n  " + "\n  ".join(lines))


def validate_config(config, schema=None):
    """Return a copy of `config` with defaults filled, or raise ConfigError listing every problem.

    `schema`: the parsed JSON schema, by default the package's (config.schema.yaml)."""
    schema = _schema() if schema is None else schema
    config = copy.deepcopy(dict(config))
    _fill_defaults(config, schema)
    problems = _schema_problems(config, schema)

    def clean(key, found):  # the later checks of a key need its earlier ones passed
        return not any(problem.startswith(f"config key {key}") for problem in found)

    if clean("experiment", problems):
        problems += _experiment_problems(config["experiment"])
    for section in families.NAMES:
        if clean(section, problems):
            found = _sweep_problems(section, config[section], schema)
            problems += found or _combination_problems(section, config[section])
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    return config


# Result directories the families and their figures use: no experiment may take their names.
RESERVED = {*families.NAMES, "figures", "logs"}


def _experiment_problems(experiment):
    if experiment in RESERVED:
        return [
            f"config key experiment: found {experiment!r}, a directory of results/ itself; "
            f"expected another name (not one of {sorted(RESERVED)})"
        ]
    return []


def sweepable(section):
    """The keys of a section that a single run uses, data included: `sweep:` may name them,
    and `jitprop mlp` and `jitprop cnn` take them as options.  Not the mirrors, which only
    serve the download."""
    return [key for key in defaults(section) if key not in RUN_LIST_KEYS | {"mirrors"}]


def _sweep_problems(section, settings, schema):
    """A sweep's keys and values on their own: known keys, non-empty lists of distinct values,
    each value one its key would take, named as SECTION.sweep.KEY[INDEX]."""
    problems = []
    for key, values in settings["sweep"].items():
        where = f"config key {section}.sweep.{key}"
        if key not in sweepable(section):
            problems.append(
                f"{where}: not a key a run of {section} uses; expected one of: "
                + ", ".join(sweepable(section))
            )
            continue
        if not values:
            problems.append(f"{where}: found [], expected a non-empty list of values")
        seen = []
        for index, value in enumerate(values):
            runs_as = _as_run_takes_it(section, key, value)
            if runs_as in seen:
                first = seen.index(runs_as)
                what = "again" if values[first] == value else f"(the same run as [{first}])"
                problems.append(
                    f"{where}[{index}]: found {value!r} {what}; expected distinct values"
                )
            seen.append(runs_as)
            item = {section: {**settings, key: value, "sweep": {}}}
            for problem in _schema_problems(item, schema):
                if problem.startswith(f"config key {section}.{key}"):
                    problems.append(
                        problem.replace(f"config key {section}.{key}", f"{where}[{index}]", 1)
                    )
    return problems


def _as_run_takes_it(section, key, value):
    """A swept value with what a run fills in: {rotation: 5} is {rotation: 5, shift: 0.0}, a
    conv without padding one with padding 0, a train_size of null all of MNIST's 60,000; so
    that two spellings of one run are not two runs."""
    if value is None and key in ("train_size", "test_size"):
        return data.TRAIN_SIZE if key == "train_size" else data.TEST_SIZE
    default = defaults(section)[key]
    if isinstance(default, dict) and isinstance(value, dict):
        return {**default, **value}
    if (section, key) == ("cnn", "layers"):
        try:
            return _cnn_layers(value)[0]
        except cnn_spec.LayerError:
            return value  # named by the layer checks
    return value


def _combination_problems(section, settings):
    """What a schema cannot say, for every combination of the section's sweep: a problem with
    a swept key is named by its value in the sweep, SECTION.sweep.KEY[INDEX]; one with another
    key says in which combination it arises."""
    swept_keys, problems = settings["sweep"], []
    for swept, combination in sweep.combinations(settings):
        for key, message in _section_problems(section, combination):
            name = key.split("[")[0]
            if name in swept_keys:
                index = next(i for i, v in enumerate(swept_keys[name]) if v == combination[name])
                where = f"{section}.sweep.{name}[{index}]{key[len(name) :]}"
            else:
                where = f"{section}.{key}"
                if swept:
                    message += " (with " + ", ".join(f"{k}={v}" for k, v in swept) + ")"
            problem = f"config key {where}: {message}"
            if problem not in problems:
                problems.append(problem)
    return problems


def _section_problems(section, settings):
    """[(key, what is wrong)] of one section's settings, beyond what the schema checks."""
    if not families.FAMILIES[section].on_data:  # the toy net
        low, high = settings["init_range"]
        if not low < high:
            return [("init_range", f"found {settings['init_range']}, expected low < high")]
        return []
    return _data_problems(section, settings) + _layer_problems(section, settings)


def _layer_problems(section, settings):
    """[(key, what is wrong)] of an MNIST network's layers beyond the schema: 784 pixels in,
    10 classes out, and (the CNN's) shapes that fit."""
    problems = []
    if section == "mlp":
        layers = settings["layers"]
        if layers[0] != data.PIXELS:
            problems.append(
                (
                    "layers[0]",
                    f"found {layers[0]}, expected {data.PIXELS} (the "
                    "number of pixels of an MNIST image)",
                )
            )
        if layers[-1] != data.CLASSES:
            problems.append(
                (
                    f"layers[{len(layers) - 1}]",
                    f"found {layers[-1]}, expected {data.CLASSES} (the number of classes)",
                )
            )
    else:
        try:
            specs, shapes = _cnn_layers(settings["layers"])
        except cnn_spec.LayerError as error:
            where, message = str(error).split(": ", 1)
            return [(where.removeprefix(f"{section}."), message)]
        size = settings["train_size"] or data.TRAIN_SIZE
        problems += batch_of_one_problems(specs, shapes, settings["batch_size"], size)
    return problems


def _cnn_layers(entries):
    """(specs, shapes) of a CNN layer list on MNIST's images (cnn_spec.parse_layers)."""
    return cnn_spec.parse_layers(entries, data.IMAGE, data.CLASSES)


def batch_of_one_problems(specs, shapes, batch, size):
    """(key, message) for each batch norm of 1x1 maps that a batch of one sample would reach,
    training on `size` images in batches of `batch`: one value per channel has no variance, as
    PyTorch says too.  A batch of one is batch_size 1, or a last batch of one sample."""
    return [
        (
            f"layers[{index}] (batchnorm)",
            f"normalizes 1x1 maps, so a batch of one sample (batch_size {batch}, "
            f"train_size {size}) has no variance; expected batches of 2 or more",
        )
        for index, (spec, shape) in enumerate(zip(specs, shapes, strict=False))
        if spec.kind == "batchnorm" and shape[1:] == (1, 1) and 1 in (batch, size % batch)
    ]


def _data_problems(section, settings):
    """The MNIST data a section reads: its directory, the sizes it takes, the batch size."""
    problems = []
    train_size = settings["train_size"] or data.TRAIN_SIZE
    if settings["train_size"] is not None and settings["train_size"] > data.TRAIN_SIZE:
        problems.append(
            ("train_size", f"found {settings['train_size']}, expected at most {data.TRAIN_SIZE}")
        )
    elif settings["batch_size"] > train_size:
        problems.append(
            (
                "batch_size",
                f"found {settings['batch_size']}, expected at most the "
                f"training set size {train_size}",
            )
        )
    if settings["test_size"] is not None and settings["test_size"] > data.TEST_SIZE:
        problems.append(
            ("test_size", f"found {settings['test_size']}, expected at most {data.TEST_SIZE}")
        )
    data_dir, download_dir = Path(settings["data_dir"]), defaults(section)["data_dir"]
    if data_dir.as_posix() != download_dir and not data_dir.is_dir():
        problems.append(
            (
                "data_dir",
                f"directory {str(data_dir)!r} does not exist; expected a "
                f"directory holding the MNIST IDX files, or {download_dir!r} to "
                "download them",
            )
        )
    return problems
