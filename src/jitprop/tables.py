"""Tidy tables: one run's, from its training result, and the sweep's, gathered from its runs'
in a canonical order.  Timings are kept in their own table, apart from everything that must
reproduce to the bit."""

import numpy as np
import pandas as pd

from jitprop import io

# The tables of a run of each MNIST family (the CNN's also lists the test digits it gets
# wrong); aggregation writes these and summary_by_lr.
RUN_TABLES = {
    "mlp": ["history", "steps", "summary", "timing"],
    "cnn": ["history", "steps", "summary", "misclassified", "timing"],
}

HISTORY_COLUMNS = [
    "lr",
    "seed",
    "epoch",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
]
STEPS_COLUMNS = ["lr", "seed", "step", "batch_loss"]
SUMMARY_COLUMNS = [
    "lr",
    "seed",
    "epochs_completed",
    "diverged",
    "diverged_step",
    "final_train_loss",
    "final_test_loss",
    "final_test_accuracy",
    "best_test_accuracy",
]
TIMING_COLUMNS = ["lr", "seed", "epoch", "seconds"]
MISCLASSIFIED_COLUMNS = ["lr", "seed", "index", "label", "predicted"]


def _frame(rows, columns, lr, seed):
    frame = pd.DataFrame(rows, columns=[c for c in columns if c not in ("lr", "seed")])
    frame.insert(0, "seed", seed)
    frame.insert(0, "lr", float(lr))
    return frame[columns]


def run_frames(result, lr, seed):
    """The tables of one run from a family's train() result: history, steps, summary (with
    n_params when the result counts them), misclassified (when it lists them) and timing."""
    history = _frame(result["history"], HISTORY_COLUMNS, lr, seed)
    steps = _frame(result["steps"], STEPS_COLUMNS, lr, seed)
    last = result["history"][-1] if result["history"] else {}
    summary = pd.DataFrame(
        [
            {
                "lr": float(lr),
                "seed": seed,
                "epochs_completed": len(result["history"]),
                "diverged": result["diverged"],
                "diverged_step": result["diverged_step"],
                "final_train_loss": last.get("train_loss", np.nan),
                "final_test_loss": last.get("test_loss", np.nan),
                # A diverged run has no final model: its final accuracy is missing, not the
                # last good one.
                "final_test_accuracy": np.nan
                if result["diverged"]
                else last.get("test_accuracy", np.nan),
                "best_test_accuracy": max(
                    (r["test_accuracy"] for r in result["history"]), default=np.nan
                ),
            }
        ],
        columns=SUMMARY_COLUMNS,
    )
    summary["diverged_step"] = summary["diverged_step"].astype("Int64")
    frames = {"history": history, "steps": steps, "summary": summary}
    if "n_params" in result:
        summary.insert(2, "n_params", result["n_params"])
    if "misclassified" in result:
        frames["misclassified"] = _frame(result["misclassified"], MISCLASSIFIED_COLUMNS, lr, seed)
    frames["timing"] = _frame(result["timing"], TIMING_COLUMNS, lr, seed)
    return frames


def write_run(result, lr, seed, out):
    """Write one run's tables (run_frames) into the directory `out`."""
    for name, frame in run_frames(result, lr, seed).items():
        io.write_csv(frame, f"{out}/{name}.csv")


def concat_sorted(frames, keys):
    """Concatenate run tables in a canonical order, whatever order the jobs finished in."""
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def aggregate(runs, out, family):
    """The sweep's tables in `out` from the run directories `runs` of a family (write_run's)."""
    for name in RUN_TABLES[family]:
        kwargs = {"dtype": {"diverged_step": "Int64"}} if name == "summary" else {}
        frames = [pd.read_csv(f"{run}/{name}.csv", **kwargs) for run in runs]
        table = concat_sorted(frames, ["lr", "seed"])
        io.write_csv(table, f"{out}/{name}.csv")
        if name == "summary":
            io.write_csv(summary_by_lr(table), f"{out}/summary_by_lr.csv")


def concatenate(runs, out, headers):
    """The sweep's tables in `out`, one per name in `headers`, each the concatenation of the
    runs' tables of that name (text, in the order given), all of which must have its header."""
    for name, header in headers.items():
        chunks = [header + "\n"]
        for run in runs:
            with open(f"{run}/{name}.csv", encoding="utf-8") as handle:
                found = handle.readline().rstrip("\n")
                if found != header:
                    raise ValueError(f"{run}/{name}.csv: header {found!r}, expected {header!r}")
                chunks.append(handle.read())
        io.write_text("".join(chunks), f"{out}/{name}.csv")


def summary_by_lr(summary):
    """Final test accuracy over seeds per learning rate: mean, std (ddof=1), min, max, over the
    runs that did not diverge; n_runs and n_diverged say how many there were."""
    rows = []
    for lr, group in summary.groupby("lr", sort=True):
        ok = group.loc[~group["diverged"].astype(bool), "final_test_accuracy"]
        rows.append(
            {
                "lr": lr,
                "n_runs": len(group),
                "n_diverged": int(group["diverged"].sum()),
                "mean_final_test_accuracy": ok.mean() if len(ok) else np.nan,
                "std_final_test_accuracy": ok.std(ddof=1) if len(ok) > 1 else np.nan,
                "min_final_test_accuracy": ok.min() if len(ok) else np.nan,
                "max_final_test_accuracy": ok.max() if len(ok) else np.nan,
            }
        )
    return pd.DataFrame(rows)
