"""The `jitprop` command: one subcommand per pipeline step, each a thin call into the package.
Snakemake rules call these; they are as usable by hand."""

import argparse
import sys


def _threads(value):
    """Numba's thread count follows the job's: Snakemake caps BLAS/OpenMP threads, not Numba's."""
    import numba

    numba.set_num_threads(max(1, min(value, numba.config.NUMBA_NUM_THREADS)))


def cmd_toy(args):
    from jitprop import io, toy

    history = toy.run(args.weights, args.inputs, args.targets, args.lr, args.steps,
                      seed=args.seed, init_range=args.init_range)
    io.write_csv(history, args.out)


def cmd_aggregate_toy(args):
    import pandas as pd

    from jitprop import io, toy

    history, summary = toy.aggregate([pd.read_csv(path) for path in args.runs])
    io.write_csv(history, args.history)
    io.write_csv(summary, args.summary)


def cmd_plot_toy(args):
    import pandas as pd

    from jitprop import plots

    history = pd.read_csv(args.history)
    plots.toy_loss_grid(history, args.grid)
    plots.toy_loss_overlay(history, args.overlay)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="jitprop",
        description="Numba-accelerated backpropagation experiments. Each subcommand is one "
        "step of the Snakemake pipeline and can be run by hand.",
    )
    parser.add_argument("--threads", type=int, default=1,
                        help="threads Numba may use (default 1; Snakemake passes the rule's)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    toy = sub.add_parser("toy", help="train the 2-2-2 exercise network once; write its history",
                         description="One run of the 2-2-2 sigmoid network: every cell of every "
                         "step (the spreadsheet) as one CSV row per step.")
    toy.add_argument("--lr", type=float, required=True, help="learning rate η")
    toy.add_argument("--steps", type=int, default=100, help="gradient steps (default 100)")
    toy.add_argument("--seed", type=int, default=None,
                     help="start from U(init-range) weights drawn with this seed "
                     "(default: the sheet's --weights)")
    toy.add_argument("--weights", type=float, nargs=8,
                     default=[0.15, 0.2, 0.25, 0.3, 0.4, 0.45, 0.5, 0.55], metavar="W",
                     help="w1..w8 of the sheet start (default: the exercise's)")
    toy.add_argument("--inputs", type=float, nargs=2, default=[0.05, 0.1], metavar="I",
                     help="i1 i2 (default 0.05 0.1)")
    toy.add_argument("--targets", type=float, nargs=2, default=[0.5, 0.5], metavar="T",
                     help="t1 t2 (default 0.5 0.5)")
    toy.add_argument("--init-range", type=float, nargs=2, default=[-1.0, 1.0],
                     metavar=("LOW", "HIGH"), help="bounds of seeded starts (default -1 1)")
    toy.add_argument("--out", required=True, help="CSV file to write")
    toy.set_defaults(func=cmd_toy)

    agg = sub.add_parser("toy-aggregate", help="merge toy runs into history.csv and summary.csv")
    agg.add_argument("runs", nargs="+", help="run CSVs written by `jitprop toy`")
    agg.add_argument("--history", required=True, help="history CSV to write")
    agg.add_argument("--summary", required=True, help="summary CSV to write")
    agg.set_defaults(func=cmd_aggregate_toy)

    plot = sub.add_parser("toy-plot", help="draw the toy loss figures from history.csv")
    plot.add_argument("history", help="aggregated toy history CSV")
    plot.add_argument("--grid", required=True, help="PNG: one panel per learning rate")
    plot.add_argument("--overlay", required=True, help="PNG: all sheet runs, log scale")
    plot.set_defaults(func=cmd_plot_toy)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
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
