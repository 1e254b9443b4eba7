"""Figures that must show what their captions say, checked on the drawn axes."""

import pandas as pd

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
    drawn = {}

    def keep(figure, path):
        drawn[path.rsplit("/", 1)[1]] = figure.axes[0]

    monkeypatch.setattr(plots, "save_figure", keep)
    plots.sweep_figures(history, summary, by_lr, str(tmp_path), "mlp")
    ax = drawn["mlp_accuracy_vs_lr.png"]
    bottom, top = ax.get_ylim()
    assert 90 < bottom < 97.5 < 98.1 < top, (bottom, top)  # the 97.5-98.1% lines stay apart
    assert "30.0%" in [text.get_text() for text in ax.texts]  # the collapse, written
    assert "below 93%" in ax.get_title()
