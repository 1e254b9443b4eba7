"""Figures drawn from the aggregated CSVs (never from raw runs), so a figure can be rebuilt from
results/ alone."""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from jitprop.families import FAMILIES
from jitprop.io import save_figure
from jitprop.runs import lr_text
from jitprop.tables import read_table, swept_columns

# The same look on every machine, whatever its matplotlibrc: resolution and text size.  (PNG
# bytes are deterministic by themselves once save_figure drops the metadata.)
plt.rcParams.update({"figure.dpi": 120, "font.size": 9})


def _grid(n_panels):
    cols = min(3, n_panels)
    rows = math.ceil(n_panels / cols)
    figure, axes = plt.subplots(
        rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False, sharex=True, layout="constrained"
    )
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return figure, axes.flat


MAX_PANELS = 12
MAX_LINES = 20
# A sweep's accuracy axis spans at most this many points below the best mean (see sweep_figures).
FLOOR = 5
TOY_COLUMNS = ["lr", "init", "seed", "step", "E_total"]


def toy_loss_grid(history, path):
    """One panel per learning rate: E_total vs step of the sheet run, seeded runs faint behind
    (a min-max band with its median when there are more than MAX_LINES).  A sweep of more
    than MAX_PANELS learning rates shows that many, evenly spread over the sorted rates."""
    rates = sorted(history["lr"].unique())
    shown = [
        rates[k]
        for k in np.linspace(0, len(rates) - 1, min(len(rates), MAX_PANELS)).round().astype(int)
    ]
    figure, axes = _grid(len(shown))
    for ax, lr in zip(axes, shown, strict=False):
        runs = history[history["lr"] == lr]
        seeded = runs[runs["init"] == "random"]
        n_seeds = seeded["seed"].nunique()
        if 0 < n_seeds <= MAX_LINES:
            for _, run in seeded.groupby("seed"):
                ax.plot(run["step"], run["E_total"], color="tab:gray", alpha=0.35, lw=0.8)
            ax.plot([], [], color="tab:gray", alpha=0.5, label=f"random starts ({n_seeds} seeds)")
        elif n_seeds:
            band = seeded.groupby("step")["E_total"].agg(["min", "median", "max"])
            ax.fill_between(
                band.index,
                band["min"],
                band["max"],
                color="tab:gray",
                alpha=0.3,
                label=f"random starts: min-max of {n_seeds} seeds",
            )
            ax.plot(band.index, band["median"], color="tab:gray", lw=1, label="their median")
        sheet = runs[runs["init"] == "sheet"]
        ax.plot(sheet["step"], sheet["E_total"], color="tab:blue", lw=2, label="sheet weights")
        ax.set_title(f"Total loss at η = {lr_text(lr)}")
        ax.set_xlabel("step")
        ax.set_ylabel("E_total")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=7)
    note = "" if len(shown) == len(rates) else f" ({len(shown)} of {len(rates)} learning rates)"
    figure.suptitle(f"2-2-2 network: total error per gradient step{note}")
    save_figure(figure, path)
    plt.close(figure)


def toy_loss_overlay(history, path):
    """All sheet runs on one log-scaled axis, one line per learning rate (a colour scale
    instead of a legend when there are more than MAX_PANELS)."""
    figure, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    sheet = history[history["init"] == "sheet"]
    rates = sorted(sheet["lr"].unique())
    norm = matplotlib.colors.LogNorm(min(rates), max(rates)) if len(rates) > 1 else None
    for lr, run in sheet.groupby("lr"):
        color = plt.cm.viridis(0.9 * norm(lr) if norm else 0.0)
        ax.plot(
            run["step"],
            run["E_total"],
            color=color,
            label=f"η = {lr_text(lr)}",
            lw=1.5 if len(rates) <= MAX_PANELS else 0.8,
        )
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("E_total (log scale)")
    ax.set_title("2-2-2 network from the sheet's weights: total error vs step")
    ax.grid(alpha=0.3, which="both")
    if len(rates) <= MAX_PANELS:
        ax.legend(title="learning rate")
    else:
        mappable = plt.cm.ScalarMappable(norm=norm, cmap=_truncated_viridis())
        figure.colorbar(mappable, ax=ax, label="learning rate η")
    save_figure(figure, path)
    plt.close(figure)


def _truncated_viridis():
    return matplotlib.colors.ListedColormap(plt.cm.viridis(np.linspace(0, 0.9, 256)))


def _lr_colors(rates):
    return dict(zip(rates, plt.cm.plasma(np.linspace(0, 0.85, len(rates))), strict=True))


def _diverged_note(summary, lr):
    n = int(summary.loc[summary["lr"] == lr, "diverged"].sum())
    return f" ({n} diverged)" if n else ""


def _curves(history, summary, path, metrics, ylabel, title, log_y):
    """Mean over seeds per epoch with a min-max band, one colour per learning rate, one panel
    per metric.  Diverged runs contribute the epochs they completed."""
    rates = sorted(summary["lr"].unique())
    colors = _lr_colors(rates)
    figure, axes = plt.subplots(
        1, len(metrics), figsize=(5.5 * len(metrics), 4), layout="constrained", squeeze=False
    )
    for ax, (column, label) in zip(axes.flat, metrics, strict=True):
        for lr in rates:
            stats = (
                history[history["lr"] == lr].groupby("epoch")[column].agg(["mean", "min", "max"])
            )
            name = f"η = {lr_text(lr)}{_diverged_note(summary, lr)}"
            if stats.empty:
                ax.plot([], [], color=colors[lr], ls=":", label=name + ": no epoch completed")
                continue
            ax.plot(stats.index, stats["mean"], color=colors[lr], marker="o", ms=3, label=name)
            ax.fill_between(stats.index, stats["min"], stats["max"], color=colors[lr], alpha=0.2)
        if log_y:
            ax.set_yscale("log")
        ax.set_title(label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.xaxis.get_major_locator().set_params(integer=True)
    figure.legend(
        *axes.flat[-1].get_legend_handles_labels(),
        loc="outside right center",
        title="learning rate\n(mean over seeds,\nmin-max band)",
        fontsize=8,
        title_fontsize=8,
    )
    figure.suptitle(title)
    save_figure(figure, path)
    plt.close(figure)


def family_figures(results, figures, family):
    """The three figures of an MNIST family, FAMILY_loss_curves, FAMILY_accuracy_curves and
    FAMILY_accuracy_vs_lr, in `figures`, from its aggregated tables in `results`."""
    history = read_table(f"{results}/history.csv")
    summary = read_table(f"{results}/summary.csv")
    by_lr = read_table(f"{results}/summary_by_lr.csv")
    if swept_columns(summary):
        sweep_figures(history, summary, by_lr, figures, family)
        return
    name = FAMILIES[family].title
    loss_curves(history, summary, f"{figures}/{family}_loss_curves.png", name)
    accuracy_curves(history, summary, f"{figures}/{family}_accuracy_curves.png", name)
    accuracy_vs_lr(by_lr, f"{figures}/{family}_accuracy_vs_lr.png", name)


def loss_curves(history, summary, path, name):
    _curves(
        history,
        summary,
        path,
        [
            ("train_loss", "train loss (mean over the epoch)"),
            ("test_loss", "test loss (test set, end of epoch)"),
        ],
        "loss",
        f"{name} on MNIST: loss per epoch",
        log_y=True,
    )


def accuracy_curves(history, summary, path, name):
    _curves(
        history,
        summary,
        path,
        [
            ("train_accuracy", "train accuracy (over the epoch)"),
            ("test_accuracy", "test accuracy (test set, end of epoch)"),
        ],
        "accuracy",
        f"{name} on MNIST: accuracy per epoch",
        log_y=False,
    )


def accuracy_vs_lr(by_lr, path, name):
    """Final test accuracy vs learning rate: mean over seeds, error bars min to max; learning
    rates whose every run diverged are marked on the x axis."""
    figure, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    ok = by_lr[by_lr["mean_final_test_accuracy"].notna()]
    mean = ok["mean_final_test_accuracy"] * 100
    errors = [
        mean - ok["min_final_test_accuracy"] * 100,
        ok["max_final_test_accuracy"] * 100 - mean,
    ]
    ax.errorbar(
        ok["lr"],
        mean,
        yerr=errors,
        marker="o",
        capsize=4,
        label="final test accuracy: mean, min-max over seeds",
    )
    top = ok["max_final_test_accuracy"] * 100
    for lr, acc, high, n_div in zip(ok["lr"], mean, top, ok["n_diverged"], strict=True):
        ax.annotate(  # above the error bar's cap, not on it
            f"{acc:.2f}%" + (f"\n{n_div} diverged" if n_div else ""),
            (lr, high),
            textcoords="offset points",
            xytext=(0, 4),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.margins(x=0.08, y=0.15)  # room for the outermost labels inside the frame
    lost = by_lr[by_lr["mean_final_test_accuracy"].isna()]
    if len(lost):
        bottom = ax.get_ylim()[0] if len(ok) else 0
        ax.scatter(
            lost["lr"],
            [bottom] * len(lost),
            marker="x",
            color="tab:red",
            zorder=3,
            clip_on=False,
            label="all runs diverged",
        )
    ax.set_xscale("log")
    ax.set_xticks(by_lr["lr"], [lr_text(lr) for lr in by_lr["lr"]])
    ax.minorticks_off()
    ax.set_xlabel("learning rate η (log scale)")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title(f"{name} on MNIST: final test accuracy vs learning rate")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    save_figure(figure, path)
    plt.close(figure)


MAX_DIGITS = 60


def misclassified(results, images, path):
    """The test digits the best run (highest final test accuracy; the first in (lr, seed)
    order on ties) gets wrong, each with its true and predicted label; images (N, 784) are the
    test images the runs were evaluated on."""
    summary = read_table(f"{results}/summary.csv")
    wrong = read_table(f"{results}/misclassified.csv")
    done = summary[~summary["diverged"].astype(bool)]
    figure_title = "CNN on MNIST: no run finished without diverging"
    rows = wrong.iloc[0:0]
    if len(done):
        keys = [*swept_columns(summary), "lr", "seed"]
        best = done.loc[done["final_test_accuracy"].idxmax()]
        rows = _rows(wrong, keys, [best[key] for key in keys])
        shown = "" if len(rows) <= MAX_DIGITS else f"; the first {MAX_DIGITS} shown"
        setting = "".join(f"{key}={best[key]}, " for key in keys[:-2])
        figure_title = (
            f"CNN on MNIST: the {len(rows)} test digits the best run gets wrong{shown}\n"
            f"({setting}η = {lr_text(best['lr'])}, seed {int(best['seed'])}, final test accuracy "
            f"{100 * best['final_test_accuracy']:.2f}%; true → predicted)"
        )
    rows = rows.iloc[:MAX_DIGITS]
    cols = 10
    grid = max(1, -(-len(rows) // cols))
    figure, axes = plt.subplots(
        grid, cols, figsize=(cols * 1.05, grid * 1.25 + 0.7), squeeze=False, layout="constrained"
    )
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, row in zip(axes.flat, rows.itertuples(), strict=False):
        ax.imshow(images[row.index].reshape(28, 28), cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(f"{row.label} → {row.predicted}", fontsize=8)
    figure.suptitle(figure_title, fontsize=9)
    save_figure(figure, path)
    plt.close(figure)


# --------------------------------------------------------------------------- sweeps
# With a sweep, a figure draws one panel or line per combination of the swept settings,
# colour by η; beyond MAX_PANELS combinations it says so and draws the best ones.


def _combination_label(keys, values):
    return ", ".join(f"{key}={value}" for key, value in zip(keys, values, strict=True))


def _best_combinations(scores, best):
    """(combinations to draw, in the table's order; a note when some are left out): all, or
    the MAX_PANELS with the best score; scores {combination: score} in the table's order, best
    'max' or 'min'.  A NaN score (every run diverged) ranks last."""
    combos = list(scores)
    if len(combos) <= MAX_PANELS:
        return combos, ""
    sign = -1 if best == "max" else 1
    ranked = sorted(combos, key=lambda c: (scores[c] != scores[c], sign * scores[c]))
    kept = set(ranked[:MAX_PANELS])
    return [c for c in combos if c in kept], f" — the {MAX_PANELS} best of {len(combos)}"


def _rows(table, keys, combo):
    mask = np.ones(len(table), bool)
    for key, value in zip(keys, combo, strict=True):
        mask &= (table[key] == value).to_numpy()
    return table[mask]


def sweep_figures(history, summary, by_lr, figures, family):
    """The three figures of a family's sweep: FAMILY_loss_curves and FAMILY_accuracy_curves,
    a panel per combination (test solid with its min-max band, train dashed, colour by η), and
    FAMILY_accuracy_vs_lr, a line per combination."""
    keys, name = swept_columns(summary), FAMILIES[family].title
    scores = {}
    for combo, group in by_lr.groupby(keys, sort=False):
        combo = combo if isinstance(combo, tuple) else (combo,)
        scores[combo] = group["mean_final_test_accuracy"].max()
    combos, note = _best_combinations(scores, "max")
    rates = sorted(summary["lr"].unique())
    colors = _lr_colors(rates)
    for metric, ylabel, log_y in (("loss", "loss", True), ("accuracy", "accuracy", False)):
        figure, axes = _grid(len(combos))
        for ax, combo in zip(axes, combos, strict=False):
            rows = _rows(history, keys, combo)
            for lr in rates:
                runs = rows[rows["lr"] == lr]
                if runs.empty:
                    continue
                test = runs.groupby("epoch")[f"test_{metric}"].agg(["mean", "min", "max"])
                train = runs.groupby("epoch")[f"train_{metric}"].mean()
                ax.plot(
                    test.index,
                    test["mean"],
                    color=colors[lr],
                    marker="o",
                    ms=2,
                    label=f"η = {lr_text(lr)}",
                )
                ax.fill_between(test.index, test["min"], test["max"], color=colors[lr], alpha=0.2)
                ax.plot(train.index, train, color=colors[lr], ls="--", lw=0.8)
            ax.set_title(_combination_label(keys, combo), fontsize=8)
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
            if log_y:
                ax.set_yscale("log")
            ax.grid(alpha=0.3, which="both")
            ax.xaxis.get_major_locator().set_params(integer=True)
        handles, labels = [], []
        for lr in rates:
            handles.append(plt.Line2D([], [], color=colors[lr], marker="o", ms=3))
            labels.append(f"η = {lr_text(lr)}")
        handles += [plt.Line2D([], [], color="gray"), plt.Line2D([], [], color="gray", ls="--")]
        labels += ["test (mean, min-max band)", "train (mean)"]
        figure.legend(handles, labels, loc="outside right center", fontsize=8)
        figure.suptitle(f"{name} on MNIST: {metric} per epoch, per combination{note}")
        save_figure(figure, f"{figures}/{family}_{metric}_curves.png")
        plt.close(figure)
    figure, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    palette = plt.cm.tab10.colors if len(combos) <= 10 else plt.cm.tab20.colors
    # A collapsed run (say 30% where the rest reach 98%) would flatten every other line: the
    # axis shows the best FLOOR points, and means below it sit on its edge with their value.
    # Of the drawn combinations only: a left-out one must not move the axis.
    drawn = {combo: _rows(by_lr, keys, combo) for combo in combos}
    shown = by_lr.loc[[index for rows in drawn.values() for index in rows.index]]
    best = shown["mean_final_test_accuracy"].max() * 100  # NaN if every drawn run diverged
    lowest = shown["min_final_test_accuracy"].min() * 100
    floor = math.floor(best - FLOOR) if lowest < best - FLOOR else None
    for k, (combo, rows) in enumerate(drawn.items()):
        ok = rows[rows["mean_final_test_accuracy"].notna()]
        mean = ok["mean_final_test_accuracy"] * 100
        low, high = ok["min_final_test_accuracy"] * 100, ok["max_final_test_accuracy"] * 100
        color = palette[k % len(palette)]
        if floor is not None:
            off = mean < floor
            for lr, value in zip(ok["lr"][off], mean[off], strict=True):
                ax.annotate(
                    f"{value:.1f}%",
                    (lr, floor),
                    textcoords="offset points",
                    xytext=(0, 6),
                    ha="center",
                    fontsize=7,
                    color=color,
                )
            mean, low, high = mean.clip(floor), low.clip(floor), high.clip(floor)
        ax.errorbar(
            ok["lr"],
            mean,
            yerr=[mean - low, high - mean],
            marker="o",
            capsize=3,
            color=color,
            label=_combination_label(keys, combo),
        )
    if floor is not None:
        ax.set_ylim(bottom=floor - 0.1 * (best - floor))
        ax.axhline(floor, color="gray", lw=0.6, ls=":")
        note += f"; below {floor}%: on the dotted line, mean written"
    ax.set_xscale("log")
    ax.set_xticks(rates, [lr_text(lr) for lr in rates])
    ax.minorticks_off()
    ax.set_xlabel("learning rate η (log scale)")
    ax.set_ylabel("final test accuracy (%)\n(mean, min-max over seeds)")
    ax.set_title(f"{name} on MNIST: final test accuracy vs learning rate{note}", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    figure.legend(loc="outside right center", fontsize=7, title="combination", title_fontsize=7)
    save_figure(figure, f"{figures}/{family}_accuracy_vs_lr.png")
    plt.close(figure)


def toy_sweep_figures(history, grid_path, overlay_path):
    """A toy sweep's figures: toy_loss_grid, a panel per combination with the sheet start's
    E_total per step, colour by η; toy_loss_overlay, its E_total at the last step against η,
    a line per combination."""
    keys = swept_columns(history)
    sheet = history[history["init"] == "sheet"]
    # The last step's E_total, NaN included (groupby's last() would skip it), as summary.csv.
    last = sheet.groupby([*keys, "lr"], sort=False).tail(1)[[*keys, "lr", "E_total"]]
    scores = {}
    for combo, group in last.groupby(keys, sort=False):
        scores[combo if isinstance(combo, tuple) else (combo,)] = group["E_total"].min()
    combos, note = _best_combinations(scores, "min")
    rates = sorted(sheet["lr"].unique())
    norm = matplotlib.colors.LogNorm(min(rates), max(rates)) if len(rates) > 1 else None
    figure, axes = _grid(len(combos))
    for ax, combo in zip(axes, combos, strict=False):
        rows = _rows(sheet, keys, combo)
        for lr, run in rows.groupby("lr"):
            color = plt.cm.viridis(0.9 * norm(lr) if norm else 0.0)
            ax.plot(run["step"], run["E_total"], color=color, lw=1.2, label=f"η = {lr_text(lr)}")
        ax.set_yscale("log")
        ax.set_title(_combination_label(keys, combo), fontsize=8)
        ax.set_xlabel("step")
        ax.set_ylabel("E_total (log scale)")
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right center", fontsize=8, title="learning rate")
    figure.suptitle(f"2-2-2 network from the sheet's weights, per combination{note}")
    save_figure(figure, grid_path)
    plt.close(figure)
    figure, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    palette = plt.cm.tab20(np.linspace(0, 1, 20))
    for k, combo in enumerate(combos):
        rows = _rows(last, keys, combo)
        ax.plot(
            rows["lr"],
            rows["E_total"],
            marker="o",
            color=palette[k % 20],
            label=_combination_label(keys, combo),
        )
    ax.set_xscale("log")
    ax.set_xticks(rates, [lr_text(lr) for lr in rates])  # the rates run, not powers of ten
    ax.minorticks_off()
    ax.set_yscale("log")
    ax.set_xlabel("learning rate η (log scale)")
    ax.set_ylabel("E_total at the last step (log scale)")
    ax.set_title(f"2-2-2 network from the sheet's weights: final error vs η{note}", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    figure.legend(loc="outside right center", fontsize=7, title="combination", title_fontsize=7)
    save_figure(figure, overlay_path)
    plt.close(figure)
