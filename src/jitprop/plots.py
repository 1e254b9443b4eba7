"""Figures drawn from the aggregated CSVs (never from raw runs), so a figure can be rebuilt from
results/ alone."""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jitprop.io import save_figure  # noqa: E402

# Deterministic PNGs: no hash-salted ids, fixed fonts and sizes.
plt.rcParams.update({"svg.hashsalt": "jitprop", "figure.dpi": 120, "font.size": 9})


def _grid(n_panels):
    cols = min(3, n_panels)
    rows = math.ceil(n_panels / cols)
    figure, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False,
                                sharex=True, layout="constrained")
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return figure, axes.flat


def toy_loss_grid(history, path):
    """One panel per learning rate: E_total vs step of the sheet run, seeded runs faint behind."""
    rates = sorted(history["lr"].unique())
    figure, axes = _grid(len(rates))
    for ax, lr in zip(axes, rates, strict=False):
        runs = history[history["lr"] == lr]
        for _, seeded in runs[runs["init"] == "random"].groupby("seed"):
            ax.plot(seeded["step"], seeded["E_total"], color="tab:gray", alpha=0.35, lw=0.8)
        sheet = runs[runs["init"] == "sheet"]
        ax.plot(sheet["step"], sheet["E_total"], color="tab:blue", lw=2, label="sheet weights")
        if (runs["init"] == "random").any():
            ax.plot([], [], color="tab:gray", alpha=0.5, label="random starts (seeds)")
        ax.set_title(f"Total loss at η = {lr:g}")
        ax.set_xlabel("step")
        ax.set_ylabel("E_total")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=7)
    figure.suptitle("2-2-2 network: total error per gradient step")
    save_figure(figure, path)
    plt.close(figure)


def toy_loss_overlay(history, path):
    """All sheet runs on one log-scaled axis, one line per learning rate."""
    figure, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    sheet = history[history["init"] == "sheet"]
    colors = plt.cm.viridis(np.linspace(0, 0.9, sheet["lr"].nunique()))
    for color, (lr, run) in zip(colors, sheet.groupby("lr"), strict=True):
        ax.plot(run["step"], run["E_total"], color=color, label=f"η = {lr:g}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("E_total (log scale)")
    ax.set_title("2-2-2 network from the sheet's weights: total error vs step")
    ax.grid(alpha=0.3, which="both")
    ax.legend(title="learning rate")
    save_figure(figure, path)
    plt.close(figure)
