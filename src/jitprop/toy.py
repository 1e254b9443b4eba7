"""The 2-2-2 sigmoid network of the "backpropagation by hand" exercise, as Numba kernels.

Every intermediate value of every step (the spreadsheet's cells) is written out, so a run is data.

Shapes: S steps, G nets in a grid.  Weight order w1..w8 as in the exercise:
h1 = w1*i1 + w2*i2, h2 = w3*i1 + w4*i2, o1 = w5*out_h1 + w6*out_h2, o2 = w7*out_h1 + w8*out_h2.
"""

import math

import numpy as np
import pandas as pd
from numba import njit

WEIGHTS = [f"w{k}" for k in range(1, 9)]
HIDDEN = ["h1", "out_h1", "h2", "out_h2"]
OUTPUT = ["o1", "out_o1", "o2", "out_o2"]
ERRORS = ["E1", "E2", "E_total"]
GRADS = [f"dE_dw{k}" for k in range(1, 9)]
COLUMNS = ["step", "i1", "i2", "t1", "t2", *WEIGHTS, *HIDDEN, *OUTPUT, *ERRORS, *GRADS]


@njit(cache=True)
def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


@njit(cache=True)
def toy_forward(hidden, output, errors, w, i, t):
    """One forward pass.  hidden (4,) = h1, out_h1, h2, out_h2; output (4,) = o1, out_o1, o2,
    out_o2; errors (3,) = E1, E2, E_total; w (8,); i (2,) inputs; t (2,) targets."""
    h1 = w[0] * i[0] + w[1] * i[1]
    h2 = w[2] * i[0] + w[3] * i[1]
    out_h1 = sigmoid(h1)
    out_h2 = sigmoid(h2)
    o1 = w[4] * out_h1 + w[5] * out_h2
    o2 = w[6] * out_h1 + w[7] * out_h2
    out_o1 = sigmoid(o1)
    out_o2 = sigmoid(o2)
    E1 = 0.5 * (t[0] - out_o1) ** 2
    E2 = 0.5 * (t[1] - out_o2) ** 2
    hidden[0], hidden[1], hidden[2], hidden[3] = h1, out_h1, h2, out_h2
    output[0], output[1], output[2], output[3] = o1, out_o1, o2, out_o2
    errors[0], errors[1], errors[2] = E1, E2, E1 + E2


@njit(cache=True)
def toy_backward(dw, w, i, t, hidden, output):
    """Gradients dE_total/dw1..dw8 into dw (8,), from the saved forward outputs
    (sigmoid'(x) = s(1 - s)).  Mirrors toy_forward in reverse."""
    out_h1, out_h2 = hidden[1], hidden[3]
    out_o1, out_o2 = output[1], output[3]
    # Output layer: delta_o = dE/dout_o * dout_o/do.
    delta_o1 = (out_o1 - t[0]) * out_o1 * (1.0 - out_o1)
    delta_o2 = (out_o2 - t[1]) * out_o2 * (1.0 - out_o2)
    dw[4] = delta_o1 * out_h1
    dw[5] = delta_o1 * out_h2
    dw[6] = delta_o2 * out_h1
    dw[7] = delta_o2 * out_h2
    # Hidden layer: both output errors flow back through the pre-update w5..w8.
    delta_h1 = (delta_o1 * w[4] + delta_o2 * w[6]) * out_h1 * (1.0 - out_h1)
    delta_h2 = (delta_o1 * w[5] + delta_o2 * w[7]) * out_h2 * (1.0 - out_h2)
    dw[0] = delta_h1 * i[0]
    dw[1] = delta_h1 * i[1]
    dw[2] = delta_h2 * i[0]
    dw[3] = delta_h2 * i[1]


@njit(cache=True)
def toy_train_kernel(W, hidden, output, errors, dW, w0, i, t, lr):
    """S steps of gradient descent from w0.  Row s of W (S, 8) holds the weights before step
    s's update; hidden (S, 4), output (S, 4), errors (S, 3) and dW (S, 8) that step's cells."""
    w = w0.copy()
    for s in range(W.shape[0]):
        W[s] = w
        toy_forward(hidden[s], output[s], errors[s], w, i, t)
        toy_backward(dW[s], w, i, t, hidden[s], output[s])
        # All eight weights move together, from the same forward pass.
        for k in range(8):
            w[k] -= lr * dW[s, k]


@njit(cache=True)
def toy_train_grid_kernel(E_total, w0, i, t, lr):
    """A grid of G independent nets in one call, recording only E_total (G, S).
    w0 (G, 8) starts, i (G, 2), t (G, 2), lr (G,).  Same arithmetic as toy_train_kernel."""
    G, S = E_total.shape
    hidden = np.empty(4)
    output = np.empty(4)
    errors = np.empty(3)
    dw = np.empty(8)
    for g in range(G):
        w = w0[g].copy()
        for s in range(S):
            toy_forward(hidden, output, errors, w, i[g], t[g])
            toy_backward(dw, w, i[g], t[g], hidden, output)
            E_total[g, s] = errors[2]
            for k in range(8):
                w[k] -= lr[g] * dw[k]


def _as_vector(name, values, size):
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (size,):
        raise ValueError(f"{name}: expected {size} numbers, found shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: expected finite numbers, found {array.tolist()}")
    return np.ascontiguousarray(array)


def random_weights(seed, init_range):
    """Eight weights drawn from U(init_range) by numpy.random.default_rng(seed)."""
    low, high = init_range
    return np.random.default_rng(seed).uniform(low, high, size=8)


def train(weights, inputs, targets, lr, steps):
    """Train the 2-2-2 net for `steps` steps of plain gradient descent at learning rate `lr`.

    weights: 8 numbers w1..w8; inputs: (i1, i2); targets: (t1, t2).  Float64 throughout.
    Returns a DataFrame with one row per step and the columns of `COLUMNS`: the weights
    before the step's update, every forward cell, the errors and the eight gradients.
    """
    w0 = _as_vector("weights", weights, 8)
    i = _as_vector("inputs", inputs, 2)
    t = _as_vector("targets", targets, 2)
    lr = float(lr)
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr: expected a finite number > 0, found {lr}")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps: expected an integer >= 1, found {steps}")
    steps = int(steps)
    W, dW = np.empty((steps, 8)), np.empty((steps, 8))
    hidden, output = np.empty((steps, 4)), np.empty((steps, 4))
    errors = np.empty((steps, 3))
    toy_train_kernel(W, hidden, output, errors, dW, w0, i, t, lr)
    frame = pd.DataFrame(np.hstack([W, hidden, output, errors, dW]), columns=COLUMNS[5:])
    frame.insert(0, "step", np.arange(steps))
    for k, name in enumerate(["i1", "i2"]):
        frame.insert(1 + k, name, i[k])
    for k, name in enumerate(["t1", "t2"]):
        frame.insert(3 + k, name, t[k])
    return frame


def summarize(history):
    """One run's summary from its history: E_total at the first and last step, and the first
    step at which E_total fell below 1% of its start (<NA> if never)."""
    E = history["E_total"].to_numpy()
    below = np.flatnonzero(E < 0.01 * E[0])
    return {
        "E_total_first": E[0],
        "E_total_last": E[-1],
        "steps_to_1pct": int(history["step"].iloc[below[0]]) if below.size else pd.NA,
    }


RUN_KEYS = ["lr", "init", "seed"]


def run(weights, inputs, targets, lr, steps, seed=None, init_range=(-1.0, 1.0)):
    """One run of the sweep: from the sheet's `weights`, or, when `seed` is given, from weights
    drawn by `random_weights(seed, init_range)`.  The history gains the columns lr, init, seed."""
    start = weights if seed is None else random_weights(seed, init_range)
    history = train(start, inputs, targets, lr, steps)
    history.insert(0, "seed", pd.array([seed] * len(history), dtype="Int64"))
    history.insert(0, "init", "sheet" if seed is None else "random")
    history.insert(0, "lr", float(lr))
    return history


def aggregate(histories):
    """Concatenate run histories in a canonical order (lr, sheet before random, seed, step) and
    summarize each run.  Returns (history, summary)."""
    history = pd.concat(histories, ignore_index=True)
    order = history["init"].map({"sheet": 0, "random": 1})
    history = (history.assign(_order=order)
               .sort_values(["lr", "_order", "seed", "step"], na_position="first", kind="stable")
               .drop(columns="_order").reset_index(drop=True))
    rows = [{"lr": lr, "init": init, "seed": seed, **summarize(group)}
            for (lr, init, seed), group in history.groupby(RUN_KEYS, sort=False, dropna=False)]
    summary = pd.DataFrame(rows)
    summary["seed"] = summary["seed"].astype("Int64")
    summary["steps_to_1pct"] = summary["steps_to_1pct"].astype("Int64")
    return history, summary
