"""Kernels of fully connected layers: the input layer on compressed sparse rows of its pixels
(CSR/CSC), dense layers, activations and losses.  Internal: jitprop.mlp and jitprop.cnn call them.

Shapes: B batch, D fan-in of a layer, H fan-out of a layer, K classes, N samples.
Every kernel keeps the order of its sums: out = b + x[0] W[0] + x[1] W[1] + ..., one rounded
product at a time, skipping only the terms whose input x[k] is exactly zero.  So however the
loops are blocked, vectorized or spread over threads, the result is the same bits, and
tests/reference.py's one-term-at-a-time loops give them exactly.
"""

from collections import namedtuple

import numpy as np
from numba import prange

from jitprop.jit import njit
from jitprop.kernels.elementary import exp, log, tanh

# Activation and loss codes, as the kernels receive them; the names are the config's.
RELU, SIGMOID, TANH = 0, 1, 2
ACTIVATIONS = ("relu", "sigmoid", "tanh")
CROSS_ENTROPY, SQUARED_ERROR = 0, 1
LOSSES = ("cross_entropy", "squared_error")

# The nonzero entries of a matrix (N, D) in compressed sparse rows: row n's column `index` and
# `value` at start[n]:start[n + 1], columns in order.  The CSC of a matrix is the CSR of its
# transpose: `index` then holds rows.
CSR = namedtuple("CSR", ["start", "index", "value"])


# --------------------------------------------------------------------------- layers
# The input layer reads MNIST pixels, about 81% zero: it works on the nonzero entries only, in
# CSR (each sample's pixels, in order) for the forward pass and in CSC (each pixel's samples, in
# order) for dW.  The other layers are dense and vectorize along the batch (forward) or along
# their inputs (dW), skipping zero inputs with a select, not a branch.


@njit(cache=True)
def csr_from_dense(x):
    """The CSR of x (N, D): its nonzero entries, row by row, columns in order."""
    N, D = x.shape
    start = np.zeros(N + 1, np.int64)
    for n in range(N):
        start[n + 1] = start[n] + np.count_nonzero(x[n])
    column, value = np.empty(start[N], np.int32), np.empty(start[N], x.dtype)
    for n in range(N):
        t = start[n]
        for k in range(D):
            if x[n, k] != 0:
                column[t], value[t] = k, x[n, k]
                t += 1
    return CSR(start, column, value)


@njit(cache=True)
def csr_to_csc(csc, csr, B):
    """Fill csc with the entries of csr's first B rows, column by column: count each column's
    entries, turn counts into starts, then deal the entries out row by row (so each column
    lists its rows in order), each column's start moving up as it fills.  At the end start[k]
    holds column k's end, which is column k + 1's start: shift back by one."""
    row_start, row_column, row_value = csr
    start, row, value = csc
    start[:] = 0
    for t in range(row_start[B]):
        start[row_column[t] + 1] += 1
    for k in range(start.size - 1):
        start[k + 1] += start[k]
    for n in range(B):
        for t in range(row_start[n], row_start[n + 1]):
            k = row_column[t]
            row[start[k]], value[start[k]] = n, row_value[t]
            start[k] += 1
    for k in range(start.size - 1, 0, -1):
        start[k] = start[k - 1]
    start[0] = 0


@njit(cache=True)
def add_scaled_rows(out, M, index, value, first, last):
    """out (H,) += value[t] * M[index[t]] for t = first, ..., last - 1, in that order.

    Four rows per pass over `out`: out + a0 r0 + a1 r1 + ... rounds exactly as four passes
    would (Python adds left to right), but loads and stores `out` a quarter as often."""
    t = first
    while t + 4 <= last:
        r0, r1, r2, r3 = M[index[t]], M[index[t + 1]], M[index[t + 2]], M[index[t + 3]]
        a0, a1, a2, a3 = value[t], value[t + 1], value[t + 2], value[t + 3]
        for j in range(out.size):
            out[j] = out[j] + a0 * r0[j] + a1 * r1[j] + a2 * r2[j] + a3 * r3[j]
        t += 4
    for rest in range(t, last):
        r, a = M[index[rest]], value[rest]
        for j in range(out.size):
            out[j] += a * r[j]


# 1.5x the plain loop on one thread, 2.4x it on two threads (benchmarks/mlp_tricks.py, 784-128,
# batch 64; the plain loop is serial).
@njit(cache=True, parallel=True)
def csr_forward(out, csr, W, b):
    """out (B, H) = x @ W (D, H) + b (H,), x (B, D) given by its CSR:
    out[n] = b + the sum of x[n, k] * W[k] over the nonzero x[n, k], k in order."""
    start, column, value = csr
    for n in prange(out.shape[0]):
        out[n] = b
        add_scaled_rows(out[n], W, column, value, start[n], start[n + 1])


# 1.5x the plain loop (serial) on one thread, 2.0x it on two, the CSR-to-CSC transpose included
# (benchmarks/mlp_tricks.py).
@njit(cache=True, parallel=True)
def csc_backward_params(dW, db, dout, csc):
    """dW (D, H) = x^T @ dout (B, H), db (H,) = column sums of dout, x given by its CSC:
    dW[k] = 0 + the sum of x[n, k] * dout[n] over the nonzero x[n, k], n in order."""
    column_sums(db, dout)
    start, sample, value = csc
    for k in prange(dW.shape[0]):
        dW[k] = 0
        add_scaled_rows(dW[k], dout, sample, value, start[k], start[k + 1])


@njit(cache=True)
def column_sums(db, dout):
    """db (H,) = dout (B, H) summed over the batch, n in order."""
    db[:] = 0
    for n in range(dout.shape[0]):
        for j in range(dout.shape[1]):
            db[j] += dout[n, j]


@njit(cache=True)
def add_if_nonzero(s, a, w):
    """s + a * w, or s itself when a is zero: a select, which vectorizes, not a branch."""
    return s + a * w if a != 0 else s


@njit(cache=True)
def add_nonzero_rows(out, X, c):
    """out (L,) += X[k] * c[k] for the rows k of X (R, L) in order, skipping X's zero entries
    with a select; four rows per pass over `out`, rounding as four passes would."""
    R = X.shape[0]
    for k in range(0, R - R % 4, 4):
        c0, c1, c2, c3 = c[k], c[k + 1], c[k + 2], c[k + 3]
        x0, x1, x2, x3 = X[k], X[k + 1], X[k + 2], X[k + 3]
        for i in range(out.size):
            s = add_if_nonzero(out[i], x0[i], c0)
            s = add_if_nonzero(s, x1[i], c1)
            s = add_if_nonzero(s, x2[i], c2)
            out[i] = add_if_nonzero(s, x3[i], c3)
    for k in range(R - R % 4, R):
        for i in range(out.size):
            out[i] = add_if_nonzero(out[i], X[k, i], c[k])


# 3.4x the plain loop on one thread, 2.4x it on two threads (benchmarks/mlp_tricks.py, 128-10,
# batch 64; the plain loop is serial).
@njit(cache=True, parallel=True)
def dense_forward(out, x, W, b):
    """out (B, H) = x (B, D) @ W (D, H) + b (H,), skipping x's zeros.

    Works on x^T so that each output unit's B sums advance together along contiguous memory:
    unit j's row of out^T is b[j] + the sum over k, in order, of x^T[k] * W[k, j]."""
    xT, outT = np.ascontiguousarray(x.T), np.empty((W.shape[1], x.shape[0]), out.dtype)
    for j in prange(W.shape[1]):
        outT[j] = b[j]
        add_nonzero_rows(outT[j], xT, W[:, j])
    out[:] = outT.T


# 5.0x the plain loop on one thread, 4.3x it on two threads (benchmarks/mlp_tricks.py, 128-10,
# batch 64; the plain loop is serial).
@njit(cache=True, parallel=True)
def dense_backward_params(dW, db, dout, x):
    """dW (D, H) = x (B, D)^T @ dout (B, H), skipping x's zeros; db (H,) = column sums of dout.

    Builds dW^T so that each output unit's D sums advance together along contiguous rows of
    x: unit j's row of dW^T is 0 + the sum over n, in order, of x[n] * dout[n, j]."""
    column_sums(db, dout)
    dWT = np.empty((dout.shape[1], x.shape[1]), dW.dtype)
    for j in prange(dout.shape[1]):
        dWT[j] = 0
        add_nonzero_rows(dWT[j], x, dout[:, j])
    dW[:] = dWT.T


@njit(cache=True)
def dense_backward_input(dx, dout, W):
    """dx (B, D) = dout (B, H) @ W (D, H)^T: row n is the sum of dout[n, j] * W^T[j], j in
    order.  The plain loop, on a transposed copy of W so that it runs along contiguous rows:
    blocking it as add_scaled_rows does, and threads, made it slower (0.8x and 0.7x, measured
    during development; the versions were not kept)."""
    WT = np.ascontiguousarray(W.T)
    for n in range(dout.shape[0]):
        dx[n] = 0
        for j in range(WT.shape[0]):
            a = dout[n, j]
            for d in range(WT.shape[1]):
                dx[n, d] += a * WT[j, d]


# --------------------------------------------------------------------------- activations
# Each forward works in place on the dense output; each backward turns dout into dz in place,
# using the saved activation output (relu' = out > 0, sigmoid' = s(1 - s), tanh' = 1 - t^2).


@njit(cache=True)
def relu_forward(h):
    for n in range(h.shape[0]):
        for j in range(h.shape[1]):
            if h[n, j] < 0:
                h[n, j] = 0


@njit(cache=True)
def relu_backward(dh, h):
    for n in range(h.shape[0]):
        for j in range(h.shape[1]):
            if h[n, j] <= 0:
                dh[n, j] = 0


@njit(cache=True)
def sigmoid_forward(h):
    for n in range(h.shape[0]):
        for j in range(h.shape[1]):
            h[n, j] = 1.0 / (1.0 + exp(-float(h[n, j])))


@njit(cache=True)
def sigmoid_backward(dh, h):
    for n in range(h.shape[0]):
        for j in range(h.shape[1]):
            dh[n, j] *= h[n, j] * (1 - h[n, j])


@njit(cache=True)
def tanh_forward(h):
    for n in range(h.shape[0]):
        for j in range(h.shape[1]):
            h[n, j] = tanh(float(h[n, j]))


@njit(cache=True)
def tanh_backward(dh, h):
    for n in range(h.shape[0]):
        for j in range(h.shape[1]):
            dh[n, j] *= 1 - h[n, j] * h[n, j]


@njit(cache=True)
def activation_forward(h, activation):
    """Dispatch on the activation's code (RELU, SIGMOID, TANH)."""
    if activation == RELU:
        relu_forward(h)
    elif activation == SIGMOID:
        sigmoid_forward(h)
    else:
        tanh_forward(h)


@njit(cache=True)
def activation_backward(dh, h, activation):
    if activation == RELU:
        relu_backward(dh, h)
    elif activation == SIGMOID:
        sigmoid_backward(dh, h)
    else:
        tanh_backward(dh, h)


# --------------------------------------------------------------------------- losses
# Each returns (sum over the batch of per-sample losses, number of correct argmax predictions)
# and writes dlogits = d(mean loss)/d logits, so the gradient is already divided by B.


@njit(cache=True)
def row_argmax(logits, n):
    """Index of the largest logit of row n (the first, on ties): the predicted class."""
    best = 0
    for k in range(1, logits.shape[1]):
        if logits[n, k] > logits[n, best]:
            best = k
    return best


@njit(cache=True)
def cross_entropy_forward_backward(dlogits, logits, y):
    """Softmax then -log p[label].  dlogits (B, K), logits (B, K), y (B,) labels."""
    B, K = logits.shape
    total = 0.0
    correct = 0
    inv_b = 1.0 / B
    for n in range(B):
        best = row_argmax(logits, n)
        correct += best == y[n]
        m = logits[n, best]
        s = 0.0
        for k in range(K):
            s += exp(float(logits[n, k] - m))
        log_s = log(s)
        total += log_s - (logits[n, y[n]] - m)
        for k in range(K):
            p = exp(float(logits[n, k] - m) - log_s)
            dlogits[n, k] = (p - (k == y[n])) * inv_b
    return total, correct


@njit(cache=True)
def squared_error_forward_backward(dlogits, logits, y):
    """Sigmoid outputs, 1/2 sum_k (onehot_k - out_k)^2 per sample (the toy net's loss)."""
    B, K = logits.shape
    total = 0.0
    correct = 0
    inv_b = 1.0 / B
    for n in range(B):
        correct += row_argmax(logits, n) == y[n]
        for k in range(K):
            out = 1.0 / (1.0 + exp(-float(logits[n, k])))
            target = 1.0 if k == y[n] else 0.0
            total += 0.5 * (target - out) ** 2
            dlogits[n, k] = (out - target) * out * (1.0 - out) * inv_b
    return total, correct


@njit(cache=True)
def loss_forward_backward(dlogits, logits, y, loss):
    """Dispatch on the loss's code (CROSS_ENTROPY, SQUARED_ERROR)."""
    if loss == CROSS_ENTROPY:
        return cross_entropy_forward_backward(dlogits, logits, y)
    return squared_error_forward_backward(dlogits, logits, y)
