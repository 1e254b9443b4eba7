"""The `jitprop` command: one subcommand per pipeline step, each a thin call into the package.
Snakemake rules call these; they are as usable by hand."""

import argparse
import functools
import json
import os
import re
import sys

from jitprop.families import FAMILIES, ON_DATA


def _node_local_cache():
    """Under SLURM, unless NUMBA_CACHE_DIR is set, keep Numba's cache on the node's own scratch
    disk: jobs on many nodes then never race on one cache over a network filesystem, and each
    node compiles each kernel once.  Must run before numba is imported."""
    if "SLURM_JOB_ID" in os.environ and "NUMBA_CACHE_DIR" not in os.environ:
        scratch = os.environ.get("SLURM_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
        user = os.environ.get("USER") or str(os.getuid())
        os.environ["NUMBA_CACHE_DIR"] = os.path.join(scratch, f"jitprop-numba-cache-{user}")


def _at_least_one(text):
    """argparse's type of a count: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, found {text!r}")
    return value


def _threads(value):
    """Numba's thread count follows the job's: Snakemake caps BLAS/OpenMP threads, not Numba's.
    Set through the environment before Numba is imported, so that a job which runs no parallel
    kernel (a toy job) never starts Numba's thread pool, half a second of its start-up."""
    # The CPUs this process may run on (sched_getaffinity is Linux's; cpu_count elsewhere).
    limit = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if "NUMBA_NUM_THREADS" in os.environ:
        limit = min(limit, int(os.environ["NUMBA_NUM_THREADS"]))
    os.environ["NUMBA_NUM_THREADS"] = str(max(1, min(value, limit)))
    import numba

    # The first line of every job's log: what the job was allowed, for audits and tests.
    cache = os.environ.get("NUMBA_CACHE_DIR", "beside the package")
    print(
        f"jitprop: numba threads {numba.config.NUMBA_NUM_THREADS}; cache {cache}", file=sys.stderr
    )


def _start(text):
    """'sheet' or a seed, as given to --run."""
    if text == "sheet":
        return None
    try:
        return int(text)
    except ValueError:
        message = f"--run START: expected 'sheet' or an integer seed, found {text!r}"
        raise ValueError(message) from None


def _run_lr(text):
    """A learning rate, as given to --run."""
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--run LR: expected a number, found {text!r}") from None


def cmd_toy(args):
    from jitprop import io, toy

    if (args.lr is None) == (not args.run):
        raise ValueError("give either --lr (one run) or one or more --run LR START")
    if args.run and args.seed is not None:
        raise ValueError("--seed goes with --lr; a --run names its start itself (LR START)")
    if args.lr is not None:
        runs = [(args.lr, args.seed)]
    else:
        runs = [(_run_lr(lr), _start(start)) for lr, start in args.run]
    columns = _checked_columns(args, {*toy.RUN_KEYS, *toy.COLUMNS, *toy.SUMMARY_COLUMNS})
    history, summary = toy.sweep_part(
        runs, args.weights, args.inputs, args.targets, args.steps, args.init_range, columns
    )
    history_header, summary_header = toy.headers(columns)
    io.write_text(history_header + "\n" + history, f"{args.out}/history.csv")
    io.write_text(summary_header + "\n" + summary, f"{args.out}/summary.csv")


def cmd_toy_aggregate(args):
    from jitprop import tables, toy

    tables.concatenate(
        args.runs, args.out, {"history": toy.HISTORY_HEADER, "summary": toy.SUMMARY_HEADER}
    )


def cmd_toy_plot(args):
    from jitprop import plots

    history = plots.read_table(f"{args.results}/history.csv", plots.TOY_COLUMNS)
    keys = plots.swept_columns(history)
    grid, overlay = f"{args.figures}/toy_loss_grid.png", f"{args.figures}/toy_loss_overlay.png"
    if keys:
        plots.toy_sweep_figures(history, grid, overlay)
    else:
        plots.toy_loss_grid(history, grid)
        plots.toy_loss_overlay(history, overlay)


def cmd_toy_sheet(args):
    from jitprop import workbook

    workbook.write(workbook.read_sheet_runs(f"{args.results}/history.csv"), args.out)


def _progress_bar(epochs):
    """A per-epoch progress bar on stderr, only when stderr is a terminal (never in logs)."""
    if not sys.stderr.isatty():
        return None

    def show(epoch, done, total):
        filled = 30 * done // total
        end = "\n" if done == total else ""
        print(
            f"\repoch {epoch}/{epochs} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}",
            end=end,
            file=sys.stderr,
            flush=True,
        )

    return show


def _as_options(message, family):
    """A config error named as the command line takes the settings: config key
    mlp.batch_size becomes --batch-size."""
    message = message.replace("invalid config:", "invalid options:", 1)
    option = r"config key " + family + r"\.(\w+)"
    return re.sub(option, lambda key: "--" + key.group(1).replace("_", "-"), message)


def _train(args, family):
    """One run of an MNIST family (`jitprop mlp`, `jitprop cnn`): its tables into --out."""
    import importlib

    from jitprop import config, data, runs, tables, training

    # The options are the family's config section: the config's checks (the schema, the sizes
    # against MNIST's and the batch, the data directory, the layers) before the data is read.
    section = {key: getattr(args, key) for key in runs.options(family)}
    try:
        config.validate_config({family: section})
        training.check_run(args.lr, args.seed)
    except config.ConfigError as error:
        raise ValueError(_as_options(str(error), family)) from None
    except ValueError as error:
        raise ValueError(f"--{error}") from None  # "lr: ..." is the option --lr
    columns = _checked_columns(args, tables.TAKEN_COLUMNS)
    if family == "cnn":
        _print_summary(args.layers)
    settings = {key: value for key, value in section.items() if key not in config.DATA_KEYS}
    train_set = data.load_split(args.data_dir, "train", args.train_size)
    test_set = data.load_split(args.data_dir, "test", args.test_size)
    model = importlib.import_module(f"jitprop.{family}")
    # In the job's log: the data is read and training begins (the progress bar is not logged).
    print(
        f"jitprop {family}: {len(train_set[1])} training and {len(test_set[1])} test images; "
        "training",
        file=sys.stderr,
        flush=True,
    )
    result = model.train(
        train_set,
        test_set,
        lr=args.lr,
        seed=args.seed,
        progress=_progress_bar(args.epochs),
        **settings,
    )
    tables.write_run(result, args.lr, args.seed, args.out, columns)
    if result["diverged"]:
        print(
            f"jitprop {family}: lr {args.lr} seed {args.seed} diverged at step "
            f"{result['diverged_step']} (batch loss NaN/inf or above --divergence-threshold "
            "times the first); marked diverged",
            file=sys.stderr,
        )


def _print_summary(layers):
    """The network, as torchsummary prints it: each layer's output shape and parameters."""
    from jitprop import cnn

    lines = [f"{'#':>3}  {'layer':<20} {'output':<14} {'params':>7}"]
    for row in cnn.summary(layers):
        index = "" if row["index"] is None else row["index"]
        output = "" if row["output"] is None else str(row["output"])
        lines.append(f"{index:>3}  {row['layer']:<20} {output:<14} {row['params']:>7}")
    print("\n".join(lines), file=sys.stderr)


def _aggregate(args, family):
    from jitprop import tables

    tables.aggregate(args.runs, args.out, family)


def _plot(args, family):
    from jitprop import data, plots

    if family == "cnn":
        # The whole test set: a run on its first N images (test_size) numbers them alike.  Read
        # first: a bad --data-dir stops the command before it draws any figure.
        images, _ = data.load_split(args.data_dir, "test")
    plots.family_figures(args.results, args.figures, family)
    if family == "cnn":
        plots.misclassified(args.results, images, f"{args.figures}/cnn_misclassified.png")


def cmd_download_mnist(args):
    from jitprop import data

    data.download_mnist(args.dest, args.mirrors)


def cmd_provenance(args):
    from jitprop import provenance

    provenance.write({args.family: args.config}, args.source_dir, args.source, args.out)


def _json(text):
    """argparse's type of a structured setting: JSON text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        where = f"{error.msg} at character {error.pos + 1}"
        raise argparse.ArgumentTypeError(f"expected JSON ({where}), found {text!r}") from None


# JSON-schema types as argparse reads them.
_TYPES = {"integer": int, "number": float, "string": str}


def _add_schema_options(parser, section, keys):
    """One option per config key of `section`, --key-name, with the schema's type, choices,
    default and description: the command line and the config cannot disagree."""
    from jitprop import config

    properties = config.load_schema()["properties"][section]["properties"]
    for key in keys:
        spec = properties[key]
        kind = spec.get("type")
        # argparse formats help with %: a description's "30%" must reach it as "30%%".
        described = " ".join(spec["description"].split()).replace("%", "%%")
        options = {"default": spec["default"], "help": described}
        if "enum" in spec:
            options["choices"] = spec["enum"]
        elif kind == "object" or (kind == "array" and "type" not in spec["items"]):
            options["type"] = _json
            options["help"] += " As JSON."
        elif kind == "array":
            fixed = spec.get("minItems") == spec.get("maxItems") is not None
            options.update(
                type=_TYPES[spec["items"]["type"]], nargs=spec["maxItems"] if fixed else "+"
            )
        else:
            options["type"] = _TYPES[kind[0] if isinstance(kind, list) else kind]
        options["help"] += f" (default: {json.dumps(spec['default'])})"
        parser.add_argument(f"--{key.replace('_', '-')}", **options)


def _checked_columns(args, taken):
    """--column's (name, value) pairs, refused before any work when a name is repeated or is
    already one of the tables' columns `taken` (the tables could not be written after
    training), or when a name or value holds a comma, a quote or a line break (the toy's
    tables are written as plain text, unquoted)."""
    columns = args.column or []
    names = [name for name, _ in columns]
    for name, value in columns:
        if name in taken or names.count(name) > 1:
            why = "repeated" if name not in taken else "already a column of the run's tables"
            raise ValueError(f"--column {name}: {why}; expected a new name for each setting")
        if any(character in text for text in (name, value) for character in ',"\n\r'):
            word = f"{name}={value}"
            raise ValueError(f"--column {word!r}: expected no comma, quote or line break")
    return columns


def _column(word):
    """--column's NAME=VALUE as (name, value)."""
    name, equals, value = word.partition("=")
    if not (name and equals):
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, found {word!r}")
    return name, value


def _add_column_option(parser):
    parser.add_argument(
        "--column",
        type=_column,
        action="append",
        metavar="NAME=VALUE",
        help="a column NAME holding VALUE to lead every table (a sweep's setting; repeat)",
    )


def _add_family_steps(sub, family, aggregate=None, plot=None):
    """The aggregation and plotting subcommands, alike for every model family; `aggregate` and
    `plot` run them (default: the MNIST families', _aggregate and _plot)."""
    what = FAMILIES[family].title
    parser = sub.add_parser(
        f"{family}-aggregate", help=f"merge {what} runs into the sweep's CSVs in --out"
    )
    parser.add_argument("runs", nargs="+", help=f"run directories written by `jitprop {family}`")
    parser.add_argument("--out", required=True, help="directory for the sweep's CSVs")
    parser.set_defaults(func=aggregate or functools.partial(_aggregate, family=family))
    parser = sub.add_parser(f"{family}-plot", help=f"draw the {what} figures from the sweep's CSVs")
    parser.add_argument("results", help=f"directory written by `jitprop {family}-aggregate`")
    parser.add_argument("--figures", required=True, help="directory for the PNGs")
    parser.set_defaults(func=plot or functools.partial(_plot, family=family))
    return parser


def _add_train_command(sub, family):
    """`jitprop FAMILY`: one training run of an MNIST family, its options the config's keys."""
    from jitprop import config, runs

    what, schema = FAMILIES[family].title, config.load_schema()["properties"][family]
    tables = ", ".join(f"{name}.csv" for name in FAMILIES[family].tables)
    parser = sub.add_parser(
        family,
        help=f"train one {what} on MNIST; write its tables into --out",
        description=f"One training run of the {what}: {tables} in --out.",
    )
    seeds = " ".join(schema["properties"]["seeds"]["description"].split())
    parser.add_argument("--lr", type=float, required=True, help="learning rate η (the peak)")
    parser.add_argument("--seed", type=int, required=True, help=f"seed of the run ({seeds})")
    _add_schema_options(parser, family, runs.options(family))
    _add_column_option(parser)
    parser.add_argument("--out", required=True, help="directory for the run's CSVs")
    parser.set_defaults(func=functools.partial(_train, family=family))


def build_parser():

    parser = argparse.ArgumentParser(
        prog="jitprop",
        description="Numba-accelerated backpropagation experiments. Each subcommand is one "
        "step of the Snakemake pipeline and can be run by hand. Defaults are the config "
        "schema's.",
    )
    parser.add_argument(
        "--threads",
        type=_at_least_one,
        default=1,
        help="threads Numba may use (default 1; Snakemake passes the rule's)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    toy = sub.add_parser(
        "toy",
        help="train the 2-2-2 exercise network; write its history and summary into --out",
        description="Runs of the 2-2-2 sigmoid network: every cell of every step (the "
        "spreadsheet) as one CSV row per step, in --out/history.csv; one row per run in "
        "--out/summary.csv.",
    )
    toy.add_argument("--lr", type=float, help="learning rate η of a single run")
    toy.add_argument(
        "--seed",
        type=int,
        default=None,
        help="start from U(init-range) weights drawn with this seed (default: the sheet's "
        "--weights)",
    )
    toy.add_argument(
        "--run",
        nargs=2,
        action="append",
        metavar=("LR", "START"),
        help="instead of --lr/--seed: one run of several in one file; START is 'sheet' or a "
        "seed (repeat the option; the files keep this order)",
    )
    _add_schema_options(toy, "toy", ["steps", "weights", "inputs", "targets", "init_range"])
    _add_column_option(toy)
    toy.add_argument("--out", required=True, help="directory for history.csv and summary.csv")
    _add_family_steps(sub, "toy", cmd_toy_aggregate, cmd_toy_plot)
    sheet = sub.add_parser(
        "toy-sheet",
        help="write the exercise as a live spreadsheet (.xlsx) from the sweep's history.csv",
        description="One worksheet per learning rate for the run from the sheet's weights: "
        "inputs, targets, η and first weights at the top, then one row per step whose every "
        "cell is a formula (forward pass, errors, gradients, update), and a chart of E_total; "
        "a first worksheet compares the learning rates.",
    )
    sheet.add_argument("results", help="directory written by `jitprop toy-aggregate`")
    sheet.add_argument("--out", required=True, help="the .xlsx file to write")

    for family in ON_DATA:
        _add_train_command(sub, family)
        plot = _add_family_steps(sub, family)
        if family == "cnn":  # the misclassified digits' figure draws the test images
            _add_schema_options(plot, "cnn", ["data_dir"])

    down = sub.add_parser("download-mnist", help="fetch MNIST with MD5 verification")
    down.add_argument("--dest", required=True, help="directory to fill")
    down.add_argument("--mirrors", nargs="+", required=True, help="https base URLs, in order")

    prov = sub.add_parser(
        "provenance",
        help="record what made a family's tables: provenance.json",
        description="The family's config section and its SHA-256, the hash of jitprop's "
        "source the jobs ran (--source), the git commit of --source-dir, package versions "
        "and the machine, as JSON in --out.",
    )
    prov.add_argument("family", choices=FAMILIES)
    prov.add_argument(
        "--config", type=_json, required=True, help="the family's config section, as JSON"
    )
    prov.add_argument(
        "--source", required=True, help="the hash of jitprop's source the workflow's jobs ran"
    )
    prov.add_argument("--source-dir", required=True, help="the workflow's directory (its commit)")
    prov.add_argument("--out", required=True, help="the JSON file to write")

    # A subcommand that set no function runs the one named after it: cmd_ and its name with _
    # for -.
    for name, command in sub.choices.items():
        if command.get_default("func") is None:
            command.set_defaults(func=globals()[f"cmd_{name.replace('-', '_')}"])
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    _node_local_cache()
    _threads(args.threads)
    try:
        args.func(args)
    except (ValueError, OSError) as error:
        # Bad input is reported in one plain line; outputs were written atomically, so nothing
        # half-written is left behind.
        print(f"jitprop {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
