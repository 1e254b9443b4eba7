"""Figures that must show what their captions say, checked on the drawn axes."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jitprop import plots


def test_a_collapsed_run_does_not_flatten_a_sweeps_accuracy_figure(monkeypatch, tmp_path):
    # Two batch sizes x two rates; one collapses to 30% where the others reach about 98%.
    accuracy = {(32, 0.1): 0.98, (32, 0.4): 0.30, (64, 0.1): 0.981, (64, 0.4): 0.975}
    by_lr = pd.DataFrame(
        [
            [batch, lr, 1, 0, acc, 0.0, acc, acc]
            for (batch, lr), acc in accuracy.items()
        ],
        columns=["batch_size", "lr", "n_runs", "n_diverged", "mean_final_test_accuracy",
                 "std_final_test_accuracy", "min_final_test_accuracy", "max_final_test_accuracy"],
    )  # fmt: skip
    summary = by_lr[["batch_size", "lr"]].assign(seed=0)
    history = summary.assign(epoch=1, train_loss=0.1, train_accuracy=0.9, test_loss=0.1)
    history["test_accuracy"] = by_lr["mean_final_test_accuracy"]
    drawn = capture(monkeypatch)
    plots.sweep_figures(history, summary, by_lr, str(tmp_path), "mlp")
    ax = drawn["mlp_accuracy_vs_lr.png"].axes[0]
    bottom, top = ax.get_ylim()
    assert 90 < bottom < 97.5 < 98.1 < top, (bottom, top)  # the 97.5-98.1% lines stay apart
    assert "30.0%" in [text.get_text() for text in ax.texts]  # the collapse, written
    assert "below 93%" in ax.get_title()


def capture(monkeypatch):
    """{file name: figure} of every figure the plots module saves, instead of saving it."""
    drawn = {}
    monkeypatch.setattr(plots, "save_figure", lambda f, path: drawn.update({Path(path).name: f}))
    return drawn


def test_the_misclassified_figure_shows_the_best_run_s_digits_with_their_labels(
    monkeypatch, tmp_path
):
    summary = pd.DataFrame(
        {"lr": [0.1, 0.2], "seed": [0, 0], "diverged": [False, False],
         "final_test_accuracy": [0.97, 0.99]}
    )  # fmt: skip
    wrong = pd.DataFrame(
        {"lr": [0.1, 0.2, 0.2], "seed": 0, "index": [5, 7, 2], "label": [1, 3, 9],
         "predicted": [2, 5, 4]}
    )  # fmt: skip
    summary.to_csv(tmp_path / "summary.csv", index=False)
    wrong.to_csv(tmp_path / "misclassified.csv", index=False)
    images = np.random.default_rng(0).integers(0, 256, (10, 784), dtype=np.uint8)
    drawn = capture(monkeypatch)
    plots.misclassified(tmp_path, images, "out/cnn_misclassified.png")
    figure = drawn["cnn_misclassified.png"]
    shown = [ax for ax in figure.axes if ax.images]
    assert [ax.get_title() for ax in shown] == ["3 → 5", "9 → 4"]  # the best run's, η = 0.2
    for ax, index in zip(shown, [7, 2], strict=True):
        np.testing.assert_array_equal(ax.images[0].get_array(), images[index].reshape(28, 28))
    assert "the 2 test digits the best run gets wrong" in figure.get_suptitle()


def test_the_toy_overlay_draws_a_run_that_ends_in_nan_as_nan(monkeypatch):
    # A one-combination sweep (batch), two steps per run; η = 4 ends in NaN.
    rows = []
    for lr, ends in [(0.5, 0.01), (4.0, np.nan)]:
        for step, value in enumerate([0.2, ends]):
            rows.append({"batch": "a", "lr": lr, "init": "sheet", "seed": np.nan, "step": step,
                         "E_total": value})  # fmt: skip
    history = pd.DataFrame(rows)
    drawn = capture(monkeypatch)
    plots.toy_sweep_figures(history, "grid.png", "overlay.png")
    ax = drawn["overlay.png"].axes[0]
    (line,) = ax.get_lines()
    np.testing.assert_array_equal(line.get_ydata(), [0.01, np.nan])
    # The x axis names the rates run, as the accuracy figures do, not powers of ten.
    assert [label.get_text() for label in ax.get_xticklabels()] == ["0.5", "4"]


def test_rates_that_g_would_round_alike_keep_distinct_labels(monkeypatch):
    rates = [0.1234567, 0.1234568, 2.0]
    history = pd.DataFrame(
        [{"lr": lr, "init": "sheet", "step": step, "E_total": 0.2} for lr in rates
         for step in range(2)]
    )  # fmt: skip
    drawn = capture(monkeypatch)
    plots.toy_loss_overlay(history, "overlay.png")
    legend = [text.get_text() for text in drawn["overlay.png"].axes[0].get_legend().get_texts()]
    assert legend == ["η = 0.1234567", "η = 0.1234568", "η = 2"]


def test_a_toy_sweep_of_many_combinations_draws_the_best_not_one_that_diverged(monkeypatch):
    # 15 combinations, 12 panels: the three to leave out are the two worst finite ones, m and
    # z, and n, whose every run ends in NaN (first in the table's order).
    finals = {name: 0.01 * (k + 1) for k, name in enumerate("abcdefghijklm")}
    finals = {"n": np.nan, **finals, "z": 1.0}
    rows = [
        {"batch": name, "lr": 0.5, "init": "sheet", "seed": np.nan, "step": step,
         "E_total": value}
        for name, final in finals.items() for step, value in enumerate([0.2, final])
    ]  # fmt: skip
    drawn = capture(monkeypatch)
    plots.toy_sweep_figures(pd.DataFrame(rows), "grid.png", "overlay.png")
    titles = [ax.get_title() for ax in drawn["grid.png"].axes if ax.get_title()]
    assert titles == [f"batch={name}" for name in "abcdefghijkl"], titles


def test_a_table_that_is_not_an_aggregated_one_is_named(tmp_path):
    path = tmp_path / "history.csv"
    pd.DataFrame({"step": [0], "E_total": [0.1]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"history\.csv: expected one of jitprop's tables"):
        plots.read_table(path)
    # pandas' own errors name the file too: a column that is not there, an empty file.
    pd.DataFrame({"lr": [0.5], "step": [0]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"history\.csv: Usecols do not match"):
        plots.read_table(path, ["E_total"])
    path.write_text("")
    with pytest.raises(ValueError, match=r"history\.csv: No columns to parse"):
        plots.read_table(path)
