"""The 2-2-2 sigmoid network of the "backpropagation by hand" exercise, as Numba kernels.

Every intermediate value of every step (the spreadsheet's cells) is written out, so a run is data.

Shapes: S steps.  Weight order w1..w8 as in the exercise:
h1 = w1*i1 + w2*i2, h2 = w3*i1 + w4*i2, o1 = w5*out_h1 + w6*out_h2, o2 = w7*out_h1 + w8*out_h2.
"""

import numpy as np

from jitprop import checks
from jitprop.jit import njit
from jitprop.kernels.elementary import exp

__all__ = ["COLUMNS", "random_weights", "train"]

WEIGHTS = [f"w{k}" for k in range(1, 9)]
HIDDEN = ["h1", "out_h1", "h2", "out_h2"]
OUTPUT = ["o1", "out_o1", "o2", "out_o2"]
ERRORS = ["E1", "E2", "E_total"]
GRADS = [f"dE_dw{k}" for k in range(1, 9)]
COLUMNS = ["step", "i1", "i2", "t1", "t2", *WEIGHTS, *HIDDEN, *OUTPUT, *ERRORS, *GRADS]
# _toy_forward's cells, in its return order.
CELLS = [*HIDDEN, *OUTPUT, *ERRORS]


@njit(cache=True, inline="always")
def _sigmoid(x):
    return 1.0 / (1.0 + exp(-x))


@njit(cache=True, inline="always")
def _toy_forward(w, i1, i2, t1, t2):
    """One forward pass of weights w = (w1, ..., w8) on inputs i1, i2 with targets t1, t2.
    Returns (h1, out_h1, h2, out_h2, o1, out_o1, o2, out_o2, E1, E2, E_total)."""
    w1, w2, w3, w4, w5, w6, w7, w8 = w
    h1 = w1 * i1 + w2 * i2
    h2 = w3 * i1 + w4 * i2
    out_h1 = _sigmoid(h1)
    out_h2 = _sigmoid(h2)
    o1 = w5 * out_h1 + w6 * out_h2
    o2 = w7 * out_h1 + w8 * out_h2
    out_o1 = _sigmoid(o1)
    out_o2 = _sigmoid(o2)
    E1 = 0.5 * (t1 - out_o1) ** 2
    E2 = 0.5 * (t2 - out_o2) ** 2
    return h1, out_h1, h2, out_h2, o1, out_o1, o2, out_o2, E1, E2, E1 + E2


@njit(cache=True, inline="always")
def _toy_backward(w, i1, i2, t1, t2, out_h1, out_h2, out_o1, out_o2):
    """Gradients (dE_total/dw1, ..., dE_total/dw8) from the saved forward outputs
    (sigmoid'(x) = s(1 - s)).  Mirrors _toy_forward in reverse."""
    _w1, _w2, _w3, _w4, w5, w6, w7, w8 = w
    # Output layer: delta_o = dE/dout_o * dout_o/do.
    delta_o1 = (out_o1 - t1) * out_o1 * (1.0 - out_o1)
    delta_o2 = (out_o2 - t2) * out_o2 * (1.0 - out_o2)
    dE_dw5 = delta_o1 * out_h1
    dE_dw6 = delta_o1 * out_h2
    dE_dw7 = delta_o2 * out_h1
    dE_dw8 = delta_o2 * out_h2
    # Hidden layer: both output errors flow back through the pre-update w5..w8.
    delta_h1 = (delta_o1 * w5 + delta_o2 * w7) * out_h1 * (1.0 - out_h1)
    delta_h2 = (delta_o1 * w6 + delta_o2 * w8) * out_h2 * (1.0 - out_h2)
    dE_dw1 = delta_h1 * i1
    dE_dw2 = delta_h1 * i2
    dE_dw3 = delta_h2 * i1
    dE_dw4 = delta_h2 * i2
    return dE_dw1, dE_dw2, dE_dw3, dE_dw4, dE_dw5, dE_dw6, dE_dw7, dE_dw8


@njit(cache=True, inline="always")
def _toy_step(w, i1, i2, t1, t2, lr):
    """Forward, backward and the update of all eight weights together, from the same forward
    pass.  Returns (cells of _toy_forward, gradients, updated weights)."""
    cells = _toy_forward(w, i1, i2, t1, t2)
    _, out_h1, _, out_h2, _, out_o1, _, out_o2, _, _, _ = cells
    g = _toy_backward(w, i1, i2, t1, t2, out_h1, out_h2, out_o1, out_o2)
    updated = (
        w[0] - lr * g[0],
        w[1] - lr * g[1],
        w[2] - lr * g[2],
        w[3] - lr * g[3],
        w[4] - lr * g[4],
        w[5] - lr * g[5],
        w[6] - lr * g[6],
        w[7] - lr * g[7],
    )
    return cells, g, updated


# error_model="numpy": IEEE division, without Python's check for a zero divisor (sigmoid's
# 1 + e**-x is never zero).
@njit(cache=True, error_model="numpy")
def _toy_train_kernel(rows, w0, i, t, lr):
    """S steps of gradient descent from w0 (8,), inputs i (2,), targets t (2,).
    rows (S, 27): per step the weights before its update (8), the forward cells (11) and the
    gradients (8), in the order of COLUMNS[5:]."""
    w = (w0[0], w0[1], w0[2], w0[3], w0[4], w0[5], w0[6], w0[7])
    for s in range(rows.shape[0]):
        cells, g, updated = _toy_step(w, i[0], i[1], t[0], t[1], lr)
        for k in range(8):
            rows[s, k] = w[k]
            rows[s, 19 + k] = g[k]
        for k in range(11):
            rows[s, 8 + k] = cells[k]
        w = updated


def _as_vector(name, values, size):
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected {size} numbers, found {values!r:.80}") from None
    if array.shape != (size,):
        raise ValueError(f"{name}: expected {size} numbers, found shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: expected finite numbers, found {array.tolist()}")
    return np.ascontiguousarray(array)


def _check_steps(steps):
    if not checks.whole_number(steps) or steps < 1:
        raise ValueError(f"steps: expected a whole number >= 1, found {steps!r}")
    return int(steps)


def random_weights(seed, init_range):
    """Eight weights drawn from U(init_range) by numpy.random.default_rng(seed)."""
    if not checks.whole_number(seed) or seed < 0:
        raise ValueError(f"seed: expected a whole number >= 0, found {seed!r}")
    low, high = _as_vector("init_range", init_range, 2).tolist()
    if not low < high:
        raise ValueError(f"init_range: expected low < high, found {[low, high]}")
    return np.random.default_rng(seed).uniform(low, high, size=8)


def _start_weights(weights, seed, init_range):
    """A run's first weights: the sheet's `weights` when seed is None, else random_weights."""
    return weights if seed is None else random_weights(seed, init_range)


def train(weights, inputs, targets, lr, steps):
    """Train the 2-2-2 net for `steps` steps of plain gradient descent at learning rate `lr`.

    weights: 8 numbers w1..w8; inputs: (i1, i2); targets: (t1, t2).  Float64 throughout.
    Returns a DataFrame with one row per step and the columns of `COLUMNS`: the weights
    before the step's update, every forward cell, the errors and the eight gradients.
    """
    w0 = _as_vector("weights", weights, 8)
    i = _as_vector("inputs", inputs, 2)
    t = _as_vector("targets", targets, 2)
    lr, steps = checks.checked_lr(lr), _check_steps(steps)
    rows = np.empty((steps, len(COLUMNS) - 5))
    _toy_train_kernel(rows, w0, i, t, lr)
    import pandas as pd  # here, not at the top: a sweep job's start-up never needs pandas

    frame = pd.DataFrame(rows, columns=COLUMNS[5:])
    frame.insert(0, "step", np.arange(steps))
    for k, name in enumerate(["i1", "i2"]):
        frame.insert(1 + k, name, i[k])
    for k, name in enumerate(["t1", "t2"]):
        frame.insert(3 + k, name, t[k])
    return frame


RUN_KEYS = ["lr", "init", "seed"]
SUMMARY_COLUMNS = [*RUN_KEYS, "E_total_first", "E_total_last", "steps_to_1pct"]
HISTORY_HEADER = ",".join([*RUN_KEYS, *COLUMNS])
SUMMARY_HEADER = ",".join(SUMMARY_COLUMNS)


def headers(columns=()):
    """(history, summary) CSV headers, led by the names of `columns` (see sweep_part)."""
    lead = "".join(f"{name}," for name, _ in columns)
    return lead + HISTORY_HEADER, lead + SUMMARY_HEADER


def summarize(E_total):
    """One run's summary from its E_total per step: the first and last value, and the first
    step at which it fell below 1% of its start (None if never)."""
    below = np.flatnonzero(E_total < 0.01 * E_total[0])
    return {
        "E_total_first": float(E_total[0]),
        "E_total_last": float(E_total[-1]),
        "steps_to_1pct": int(below[0]) if below.size else None,
    }


def run(weights, inputs, targets, lr, steps, seed, init_range):
    """One run of the sweep: from the sheet's `weights`, or, when `seed` is given, from weights
    drawn by `random_weights(seed, init_range)`.  The history gains the columns lr, init, seed."""
    import pandas as pd

    history = train(_start_weights(weights, seed, init_range), inputs, targets, lr, steps)
    history.insert(0, "seed", pd.array([seed] * len(history), dtype="Int64"))
    history.insert(0, "init", "sheet" if seed is None else "random")
    history.insert(0, "lr", float(lr))
    return history


def _number(value):
    # repr is the shortest string that reads back to the same float; NaN is left blank, as
    # pandas writes it.
    return "" if value != value else repr(value)


def sweep_part(runs, weights, inputs, targets, steps, init_range, columns=()):
    """The rows of history.csv and summary.csv (text, no header) for `runs`, a list of
    (lr, seed) with seed None for the sheet start, in that order; `columns` (name, text) lead
    every row (a sweep's settings, see headers).

    Formats what `run(...).to_csv()` would, byte for byte, without pandas' per-cell cost:
    a sweep of 10,000 runs writes a million rows."""
    i = _as_vector("inputs", inputs, 2)
    t = _as_vector("targets", targets, 2)
    fixed = ",".join(_number(v) for v in [*i.tolist(), *t.tolist()])
    lead = "".join(f"{text}," for _, text in columns)
    rows = np.empty((_check_steps(steps), len(COLUMNS) - 5))
    history, summary = [], []
    for lr, seed in runs:
        lr = checks.checked_lr(lr)
        start = _as_vector("weights", _start_weights(weights, seed, init_range), 8)
        _toy_train_kernel(rows, start, i, t, lr)
        init = "sheet" if seed is None else "random"
        keys = f"{lead}{lr!r},{init},{'' if seed is None else int(seed)}"
        for step, values in enumerate(rows.tolist()):
            history.append(f"{keys},{step},{fixed}," + ",".join(map(_number, values)))
        result = summarize(rows[:, 8 + CELLS.index("E_total")])
        last = "" if result["steps_to_1pct"] is None else str(result["steps_to_1pct"])
        summary.append(
            f"{keys},{_number(result['E_total_first'])},{_number(result['E_total_last'])},{last}"
        )
    return "".join(line + "\n" for line in history), "".join(line + "\n" for line in summary)
