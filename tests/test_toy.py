"""The 2-2-2 exercise network: published values, a slow reference, finite differences."""

import io

import numpy as np
import pandas as pd
import pytest

from jitprop import toy

import reference

SHEET_W = [0.15, 0.2, 0.25, 0.3, 0.4, 0.45, 0.5, 0.55]
INPUTS, TARGETS = [0.05, 0.1], [0.5, 0.5]
E0 = 0.014181377937891659

# (lr, k, E_total after k updates) as published with the issue, digits as printed there.
PUBLISHED = [
    (0.1, 1, "0.0141001031"),
    (0.1, 99, "7.895110e-3"),
    (1.0, 1, "0.013377915565327117"),
    (1.0, 67, "1.9683752612304454e-4"),
    (1.0, 99, "2.409400e-5"),
    (2.0, 1, "0.0125952858"),
    (2.0, 87, "1.4462734633766582e-7"),
]
STEP0_GRADS = [
    3.169933959102902e-4,
    6.339867918205804e-4,
    3.5177632159073217e-4,
    7.035526431814643e-4,
    1.288081863162825e-2,
    1.2976084910698517e-2,
    1.540834828177308e-2,
    1.5522308119994766e-2,
]


def tolerance(printed):
    """Relative tolerance a published value supports: 1e-12 when printed to full precision,
    else half a unit of its last printed digit."""
    digits = len(printed.split("e")[0].replace(".", "").lstrip("-0"))
    return 1e-12 if digits >= 15 else 0.5 * 10.0 ** (1 - digits)


@pytest.mark.parametrize(("lr", "k", "published"), PUBLISHED)
@pytest.mark.kernel
def test_published_E_total(lr, k, published):
    history = toy.train(SHEET_W, INPUTS, TARGETS, lr, 100)
    assert history["E_total"].iloc[0] == pytest.approx(E0, rel=1e-12)
    expected = pytest.approx(float(published), rel=tolerance(published))
    assert history["E_total"].iloc[k] == expected, (
        f"E_total after {k} updates at lr={lr} differs from the published value"
    )


@pytest.mark.kernel
def test_published_step0_gradients():
    history = toy.train(SHEET_W, INPUTS, TARGETS, 0.5, 1)
    got = history.loc[0, toy.GRADS].to_numpy(dtype=float)
    np.testing.assert_allclose(got, STEP0_GRADS, rtol=1e-12, err_msg="step-0 dE/dw differ")


def test_columns_are_the_spreadsheet():
    history = toy.train(SHEET_W, INPUTS, TARGETS, 0.5, 3)
    expected = [
        "step",
        "i1",
        "i2",
        "t1",
        "t2",
        *[f"w{k}" for k in range(1, 9)],
        "h1",
        "out_h1",
        "h2",
        "out_h2",
        "o1",
        "out_o1",
        "o2",
        "out_o2",
        "E1",
        "E2",
        "E_total",
        *[f"dE_dw{k}" for k in range(1, 9)],
    ]
    assert list(history.columns) == expected
    assert history["step"].tolist() == [0, 1, 2]


def random_problem(seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(-2, 2, 8), rng.uniform(-1, 1, 2), rng.uniform(0.05, 0.95, 2)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.kernel
def test_kernel_matches_reference(seed):
    w, i, t = random_problem(seed)
    history = toy.train(w, i, t, 0.7, 25)
    for step, (weights, cells, grads) in enumerate(reference.toy_train(w, i, t, 0.7, 25)):
        row = history.iloc[step]
        np.testing.assert_allclose(
            row[toy.WEIGHTS].to_numpy(float),
            weights,
            rtol=1e-12,
            err_msg=f"w1..w8 differ at step {step}",
        )
        for name, value in cells.items():
            assert row[name] == pytest.approx(value, rel=1e-12, abs=1e-300), (
                f"{name} differs at step {step}"
            )
        np.testing.assert_allclose(
            row[toy.GRADS].to_numpy(float),
            grads,
            rtol=1e-10,
            atol=1e-300,
            err_msg=f"dE_dw differ at step {step}",
        )


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.kernel
def test_gradients_match_central_differences(seed):
    w, i, t = random_problem(100 + seed)
    grads = toy.train(w, i, t, 0.1, 1).loc[0, toy.GRADS].to_numpy(float)
    eps = 1e-6
    for k in range(8):
        plus, minus = w.copy(), w.copy()
        plus[k] += eps
        minus[k] -= eps
        numeric = (reference.toy_error(plus, i, t) - reference.toy_error(minus, i, t)) / (2 * eps)
        assert grads[k] == pytest.approx(numeric, rel=1e-6, abs=1e-10), f"dE_dw{k + 1} differs"


@pytest.mark.kernel
def test_all_weights_update_together_from_one_forward_pass():
    history = toy.train(SHEET_W, INPUTS, TARGETS, 0.5, 2)
    w0 = history.loc[0, toy.WEIGHTS].to_numpy(float)
    g0 = history.loc[0, toy.GRADS].to_numpy(float)
    np.testing.assert_array_equal(history.loc[1, toy.WEIGHTS].to_numpy(float), w0 - 0.5 * g0)


def test_random_start_is_seeded_uniform():
    w = toy.random_weights(3, (-1.0, 1.0))
    np.testing.assert_array_equal(w, np.random.default_rng(3).uniform(-1.0, 1.0, 8))
    run = toy.run(SHEET_W, INPUTS, TARGETS, 0.5, 2, seed=3, init_range=(-1.0, 1.0))
    np.testing.assert_array_equal(run.loc[0, toy.WEIGHTS].to_numpy(float), w)
    assert run["init"].iloc[0] == "random"
    assert run["seed"].iloc[0] == 3


def test_huge_learning_rate_overflows_honestly():
    history = toy.train(SHEET_W, INPUTS, TARGETS, 1e4, 100)
    assert np.isfinite(history["E_total"]).all()
    # Saturated sigmoids: outputs pinned at 0 or 1, the error stuck near its maximum 0.25.
    assert history["E_total"].iloc[-1] == pytest.approx(0.25, abs=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weights": [0.1] * 7}, "weights: expected 8 numbers"),
        ({"inputs": [0.1]}, "inputs: expected 2 numbers"),
        ({"targets": [0.1, 0.2, 0.3]}, "targets: expected 2 numbers"),
        ({"lr": -0.1}, "lr: expected a finite number > 0"),
        ({"lr": float("nan")}, "lr: expected a finite number > 0"),
        ({"steps": 0}, "steps: expected a whole number >= 1, found 0"),
        ({"steps": 2.5}, "steps: expected a whole number >= 1, found 2.5"),
        ({"steps": None}, "steps: expected a whole number >= 1, found None"),
        ({"lr": "0.5"}, "lr: expected a finite number > 0, found '0.5'"),
        ({"weights": [float("inf")] + [0.1] * 7}, "weights: expected finite numbers"),
        ({"weights": ["a"] * 8}, "weights: expected 8 numbers, found"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    args = {"weights": SHEET_W, "inputs": INPUTS, "targets": TARGETS, "lr": 0.5, "steps": 3}
    with pytest.raises(ValueError, match=message):
        toy.train(**{**args, **kwargs})


@pytest.mark.parametrize(
    ("init_range", "message"),
    [
        ((1.0, -1.0), r"init_range: expected low < high, found \[1\.0, -1\.0\]"),
        ((float("nan"), 1.0), r"init_range: expected finite numbers"),
        ((0.0, 1.0, 2.0), r"init_range: expected 2 numbers"),
    ],
)
def test_bad_init_range_is_named(init_range, message):
    with pytest.raises(ValueError, match=message):
        toy.random_weights(3, init_range)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "3"])
def test_bad_seed_is_named(seed):
    with pytest.raises(ValueError, match=f"seed: expected a whole number >= 0, found {seed!r}"):
        toy.run(SHEET_W, INPUTS, TARGETS, 0.5, 3, seed, (-1.0, 1.0))


def test_sweep_part_writes_what_pandas_writes():
    runs = [(0.5, None), (0.5, 3), (2.0, 1), (1e4, None)]
    history, summary = toy.sweep_part(runs, SHEET_W, INPUTS, TARGETS, 40, (-1.0, 1.0))
    frames = [toy.run(SHEET_W, INPUTS, TARGETS, lr, 40, seed, (-1.0, 1.0)) for lr, seed in runs]
    expected = "".join(f.to_csv(index=False, header=False, lineterminator="\n") for f in frames)
    assert history == expected
    assert toy.HISTORY_HEADER == ",".join(frames[0].columns)
    table = pd.read_csv(io.StringIO(toy.SUMMARY_HEADER + "\n" + summary))
    assert table["seed"].isna().tolist() == [True, False, False, True]
    for row, frame in zip(table.itertuples(), frames, strict=True):
        E = frame["E_total"].to_numpy()
        assert row.E_total_first == E[0]
        assert row.E_total_last == E[-1]
        below = np.flatnonzero(E < 0.01 * E[0])
        if below.size:
            assert row.steps_to_1pct == below[0]
        else:
            assert pd.isna(row.steps_to_1pct)
    assert table.loc[2, "steps_to_1pct"] == 34  # as in the default sweep's summary.csv
