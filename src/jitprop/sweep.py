"""MLP sweep results as tidy tables: one run's frames, and their aggregation over the sweep.
Timings are kept in their own table, apart from everything that must reproduce to the bit."""

import numpy as np
import pandas as pd

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


def _frame(rows, columns, lr, seed):
    frame = pd.DataFrame(rows, columns=[c for c in columns if c not in ("lr", "seed")])
    frame.insert(0, "seed", seed)
    frame.insert(0, "lr", float(lr))
    return frame[columns]


def run_frames(result, lr, seed):
    """The four tables of one run from `mlp.train`'s result: history, steps, summary, timing."""
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
    timing = _frame(result["timing"], TIMING_COLUMNS, lr, seed)
    return {"history": history, "steps": steps, "summary": summary, "timing": timing}


def concat_sorted(frames, keys):
    """Concatenate run tables in a canonical order, whatever order the jobs finished in."""
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


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
