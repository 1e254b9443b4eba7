"""The `jitprop` command: one subcommand per pipeline step, each a thin call into the package.
Snakemake rules call these; they are as usable by hand."""

import argparse
import os
import sys


def _node_local_cache():
    """Under SLURM, unless NUMBA_CACHE_DIR is set, keep Numba's cache on the node's own scratch
    disk: jobs on many nodes then never race on one cache over a network filesystem, and each
    node compiles each kernel once.  Must run before numba is imported."""
    if "SLURM_JOB_ID" in os.environ and "NUMBA_CACHE_DIR" not in os.environ:
        scratch = os.environ.get("SLURM_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
        user = os.environ.get("USER") or str(os.getuid())
        os.environ["NUMBA_CACHE_DIR"] = os.path.join(scratch, f"jitprop-numba-cache-{user}")


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


def cmd_toy(args):
    from jitprop import io, toy

    if (args.lr is None) == (not args.run):
        raise ValueError("give either --lr (one run) or one or more --run LR START")
    runs = (
        [(args.lr, args.seed)]
        if args.lr is not None
        else [(float(lr), _start(start)) for lr, start in args.run]
    )
    history, summary = toy.sweep_part(
        runs, args.weights, args.inputs, args.targets, args.steps, args.init_range
    )
    io.write_text(toy.HISTORY_HEADER + "\n" + history, args.out)
    if args.summary:
        io.write_text(toy.SUMMARY_HEADER + "\n" + summary, args.summary)


def _concatenate(parts, header, path):
    """One CSV from parts that share its header, in the order given."""
    from jitprop import io

    chunks = [header + "\n"]
    for part in parts:
        with open(part, encoding="utf-8") as handle:
            found = handle.readline().rstrip("\n")
            if found != header:
                raise ValueError(f"{part}: header {found!r}, expected {header!r}")
            chunks.append(handle.read())
    io.write_text("".join(chunks), path)


def cmd_aggregate_toy(args):
    from jitprop import toy

    _concatenate(args.parts, toy.HISTORY_HEADER, args.history)
    _concatenate(args.summary_parts, toy.SUMMARY_HEADER, args.summary)


def cmd_plot_toy(args):
    import pandas as pd

    from jitprop import plots

    history = pd.read_csv(args.history, usecols=plots.TOY_COLUMNS)
    plots.toy_loss_grid(history, args.grid)
    plots.toy_loss_overlay(history, args.overlay)


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


def cmd_mlp(args):
    from jitprop import data, io, mlp, sweep

    train_set = data.load_split(args.data_dir, "train", args.train_size)
    test_set = data.load_split(args.data_dir, "test", args.test_size)
    result = mlp.train(
        train_set,
        test_set,
        layers=args.layers,
        activation=args.activation,
        loss=args.loss,
        lr=args.lr,
        seed=args.seed,
        epochs=args.epochs,
        batch_size=args.batch_size,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        dtype=args.dtype,
        log_every=args.log_every,
        progress=_progress_bar(args.epochs),
        schedule=args.lr_schedule,
        divergence_threshold=args.divergence_threshold,
    )
    for name, frame in sweep.run_frames(result, args.lr, args.seed).items():
        io.write_csv(frame, f"{args.out}/{name}.csv")
    if result["diverged"]:
        print(
            f"jitprop mlp: lr {args.lr} seed {args.seed} diverged at step "
            f"{result['diverged_step']} (batch loss NaN/inf or above --divergence-threshold "
            "times the first); marked diverged",
            file=sys.stderr,
        )


def cmd_mlp_aggregate(args):
    import pandas as pd

    from jitprop import io, sweep

    def read(name, **kwargs):
        return sweep.concat_sorted(
            [pd.read_csv(f"{d}/{name}.csv", **kwargs) for d in args.runs], ["lr", "seed"]
        )

    summary = read("summary", dtype={"diverged_step": "Int64"})
    io.write_csv(read("history"), f"{args.out}/history.csv")
    io.write_csv(read("steps"), f"{args.out}/steps.csv")
    io.write_csv(summary, f"{args.out}/summary.csv")
    io.write_csv(sweep.summary_by_lr(summary), f"{args.out}/summary_by_lr.csv")
    io.write_csv(read("timing"), f"{args.out}/timing.csv")


def cmd_mlp_plot(args):
    import pandas as pd

    from jitprop import plots

    history = pd.read_csv(f"{args.results}/history.csv")
    summary = pd.read_csv(f"{args.results}/summary.csv")
    by_lr = pd.read_csv(f"{args.results}/summary_by_lr.csv")
    plots.mlp_loss_curves(history, summary, f"{args.figures}/mlp_loss_curves.png")
    plots.mlp_accuracy_curves(history, summary, f"{args.figures}/mlp_accuracy_curves.png")
    plots.mlp_accuracy_vs_lr(by_lr, f"{args.figures}/mlp_accuracy_vs_lr.png")


def cmd_download_mnist(args):
    from jitprop import data

    data.download_mnist(args.dest, args.mirrors)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="jitprop",
        description="Numba-accelerated backpropagation experiments. Each subcommand is one "
        "step of the Snakemake pipeline and can be run by hand.",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads Numba may use (default 1; Snakemake passes the rule's)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    toy = sub.add_parser(
        "toy",
        help="train the 2-2-2 exercise network once; write its history",
        description="One run of the 2-2-2 sigmoid network: every cell of every "
        "step (the spreadsheet) as one CSV row per step.",
    )
    toy.add_argument("--lr", type=float, help="learning rate η of a single run")
    toy.add_argument("--steps", type=int, default=100, help="gradient steps (default 100)")
    toy.add_argument(
        "--seed",
        type=int,
        default=None,
        help="start from U(init-range) weights drawn with this seed "
        "(default: the sheet's --weights)",
    )
    toy.add_argument(
        "--weights",
        type=float,
        nargs=8,
        default=[0.15, 0.2, 0.25, 0.3, 0.4, 0.45, 0.5, 0.55],
        metavar="W",
        help="w1..w8 of the sheet start (default: the exercise's)",
    )
    toy.add_argument(
        "--inputs",
        type=float,
        nargs=2,
        default=[0.05, 0.1],
        metavar="I",
        help="i1 i2 (default 0.05 0.1)",
    )
    toy.add_argument(
        "--targets",
        type=float,
        nargs=2,
        default=[0.5, 0.5],
        metavar="T",
        help="t1 t2 (default 0.5 0.5)",
    )
    toy.add_argument(
        "--init-range",
        type=float,
        nargs=2,
        default=[-1.0, 1.0],
        metavar=("LOW", "HIGH"),
        help="bounds of seeded starts (default -1 1)",
    )
    toy.add_argument(
        "--run",
        nargs=2,
        action="append",
        metavar=("LR", "START"),
        help="instead of --lr/--seed: one run of several in one file; START is "
        "'sheet' or a seed (repeat the option; the file keeps this order)",
    )
    toy.add_argument("--out", required=True, help="history CSV to write (one row per step)")
    toy.add_argument("--summary", help="summary CSV to write too (one row per run)")
    toy.set_defaults(func=cmd_toy)

    agg = sub.add_parser("toy-aggregate", help="merge toy runs into history.csv and summary.csv")
    agg.add_argument("parts", nargs="+", help="history CSVs written by `jitprop toy`, in order")
    agg.add_argument(
        "--summary-parts", nargs="+", required=True, help="their summary CSVs, in the same order"
    )
    agg.add_argument("--history", required=True, help="history CSV to write")
    agg.add_argument("--summary", required=True, help="summary CSV to write")
    agg.set_defaults(func=cmd_aggregate_toy)

    plot = sub.add_parser("toy-plot", help="draw the toy loss figures from history.csv")
    plot.add_argument("history", help="aggregated toy history CSV")
    plot.add_argument("--grid", required=True, help="PNG: one panel per learning rate")
    plot.add_argument("--overlay", required=True, help="PNG: all sheet runs, log scale")
    plot.set_defaults(func=cmd_plot_toy)

    mlp = sub.add_parser(
        "mlp",
        help="train one MLP on MNIST; write its tables into --out",
        description="One training run of the MLP: history.csv (per epoch), "
        "steps.csv (logged batch losses), summary.csv and timing.csv in --out.",
    )
    mlp.add_argument("--lr", type=float, required=True, help="learning rate η")
    mlp.add_argument("--seed", type=int, required=True, help="seed of init and shuffling")
    mlp.add_argument("--data-dir", default="resources/mnist", help="directory of the IDX files")
    mlp.add_argument("--layers", type=int, nargs="+", default=[784, 128, 10])
    mlp.add_argument("--activation", choices=["relu", "sigmoid", "tanh"], default="relu")
    mlp.add_argument("--loss", choices=["cross_entropy", "squared_error"], default="cross_entropy")
    mlp.add_argument("--epochs", type=int, default=10)
    mlp.add_argument("--batch-size", type=int, default=64)
    mlp.add_argument("--momentum", type=float, default=0.9)
    mlp.add_argument("--weight-decay", type=float, default=0.0)
    mlp.add_argument(
        "--lr-schedule",
        choices=["cosine", "constant"],
        default="cosine",
        help="cosine: anneal from --lr to 0 over the run (default); constant",
    )
    mlp.add_argument(
        "--divergence-threshold",
        type=float,
        default=10.0,
        help="stop as diverged when a batch loss exceeds this multiple of the "
        "first (default 10); NaN/inf always stops",
    )
    mlp.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    mlp.add_argument("--log-every", type=int, default=50, help="log the batch loss every N steps")
    mlp.add_argument("--train-size", type=int, default=None, help="use the first N train images")
    mlp.add_argument("--test-size", type=int, default=None, help="use the first N test images")
    mlp.add_argument("--out", required=True, help="directory for the run's CSVs")
    mlp.set_defaults(func=cmd_mlp)

    agg = sub.add_parser("mlp-aggregate", help="merge MLP runs into the sweep's CSVs")
    agg.add_argument("runs", nargs="+", help="run directories written by `jitprop mlp`")
    agg.add_argument(
        "--out",
        required=True,
        help="directory for history, steps, summary, summary_by_lr and timing CSVs",
    )
    agg.set_defaults(func=cmd_mlp_aggregate)

    plot = sub.add_parser("mlp-plot", help="draw the MLP figures from the aggregated CSVs")
    plot.add_argument("results", help="directory written by mlp-aggregate")
    plot.add_argument("--figures", required=True, help="directory for the PNGs")
    plot.set_defaults(func=cmd_mlp_plot)

    down = sub.add_parser("download-mnist", help="fetch MNIST with MD5 verification")
    down.add_argument("--dest", required=True, help="directory to fill")
    down.add_argument("--mirrors", nargs="+", required=True, help="https base URLs, in order")
    down.set_defaults(func=cmd_download_mnist)
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
