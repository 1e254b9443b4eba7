"""Tidy tables: one run's, from its training result, and the sweep's, gathered from its runs'
in a canonical order.  Timings are kept in their own table, apart from everything that must
reproduce to the bit."""

import numpy as np
import pandas as pd

from jitprop import families, io

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
# Every column a run's tables may hold: a swept setting's column must be none of these.
TAKEN_COLUMNS = {
    *HISTORY_COLUMNS,
    *STEPS_COLUMNS,
    *SUMMARY_COLUMNS,
    *TIMING_COLUMNS,
    *MISCLASSIFIED_COLUMNS,
    "n_params",
}


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
    # A diverged run has no final model: its final losses and accuracy are missing, not the
    # last good epoch's (which history.csv holds, as best_test_accuracy counts it).
    last = result["history"][-1] if result["history"] and not result["diverged"] else {}
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
                "final_test_accuracy": last.get("test_accuracy", np.nan),
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


def write_run(result, lr, seed, out, columns=()):
    """Write one run's tables (run_frames) into the directory `out`, each led by `columns`,
    (name, value) pairs: the run's swept settings."""
    for name, frame in run_frames(result, lr, seed).items():
        for position, (column, value) in enumerate(columns):
            frame.insert(position, column, value)
        io.write_csv(frame, f"{out}/{name}.csv")


def aggregate(runs, out, family):
    """The sweep's tables in `out` from the run directories `runs` of a family (write_run's),
    concatenated in the order given: the canonical one (jitprop.runs), whatever order the jobs
    finished in.  Every run's table must have the first run's columns; all are read and
    checked before any is written."""
    tables = {}
    for name in families.FAMILIES[family].tables:
        frames = []
        for run in runs:
            frame = read_table(f"{run}/{name}.csv")
            if frames and list(frame.columns) != list(frames[0].columns):
                raise ValueError(
                    f"{run}/{name}.csv: columns {list(frame.columns)}, expected those of "
                    f"{runs[0]}/{name}.csv, {list(frames[0].columns)}"
                )
            frames.append(frame)
        tables[name] = pd.concat(frames, ignore_index=True)
    tables["summary_by_lr"] = summary_by_lr(tables["summary"])
    for name, table in tables.items():
        io.write_csv(table, f"{out}/{name}.csv")


def swept_columns(table):
    """The columns of a sweep's settings: those before lr."""
    return list(table.columns[: list(table.columns).index("lr")])


def read_table(path, columns=None):
    """A table of jitprop's (with `columns` only, and the swept ones before lr, when given),
    its swept settings read as the text of their labels, as the run directories spell them (a
    weight decay of 0 stays 0, not 0.0, beside 0.001); a ValueError naming the file when it
    has no lr column."""
    header = list(read_csv(path, nrows=0).columns)
    if "lr" not in header:
        raise ValueError(
            f"{path}: expected one of jitprop's tables, with an lr column; found columns {header}"
        )
    keys = header[: header.index("lr")]
    dtype = {key: str for key in keys}
    if "diverged_step" in header:
        dtype["diverged_step"] = "Int64"
    # Only an empty field is missing, and only outside the labels: a label NA or null is text.
    missing = {column: [""] for column in header if column not in keys}
    return read_csv(
        path,
        usecols=None if columns is None else [*keys, *columns],
        dtype=dtype,
        keep_default_na=False,
        na_values=missing,
    )


def read_csv(path, **options):
    """pandas.read_csv, whose errors (an empty file, a missing column) name the file."""
    try:
        return pd.read_csv(path, **options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None


def concatenate(runs, out, headers):
    """The sweep's tables in `out`, one per name in `headers`, each the concatenation of the
    runs' tables of that name (text, in the order given).  All must have the first one's header,
    which must end with the one given (a sweep's columns may lead it).  All are read and
    checked before any is written."""
    texts = {}
    for name, header in headers.items():
        chunks, first = [], None
        for run in runs:
            with open(f"{run}/{name}.csv", encoding="utf-8") as handle:
                found = handle.readline().rstrip("\n")
                first = first or found
                if found != first or not (found == header or found.endswith("," + header)):
                    raise ValueError(
                        f"{run}/{name}.csv: header {found!r}, expected "
                        f"{first!r}, ending with {header!r}"
                    )
                chunks.append(handle.read())
        texts[name] = first + "\n" + "".join(chunks)
    for name, text in texts.items():
        io.write_text(text, f"{out}/{name}.csv")


def summary_by_lr(summary):
    """Final test accuracy over seeds per combination of swept settings and learning rate, in
    the summary's order: mean, std (ddof=1), min, max, over the runs that did not diverge;
    n_runs and n_diverged say how many there were.  NumPy's, not pandas', so that the bits do
    not depend on whether bottleneck (whose sums pandas takes when it is installed) is."""
    rows, keys = [], [*swept_columns(summary), "lr"]
    for values, group in summary.groupby(keys, sort=False):
        ok = group.loc[~group["diverged"].astype(bool), "final_test_accuracy"].to_numpy(float)
        rows.append(
            {
                **dict(zip(keys, values, strict=True)),
                "n_runs": len(group),
                "n_diverged": int(group["diverged"].sum()),
                "mean_final_test_accuracy": np.mean(ok) if len(ok) else np.nan,
                "std_final_test_accuracy": np.std(ok, ddof=1) if len(ok) > 1 else np.nan,
                "min_final_test_accuracy": np.min(ok) if len(ok) else np.nan,
                "max_final_test_accuracy": np.max(ok) if len(ok) else np.nan,
            }
        )
    return pd.DataFrame(rows)
