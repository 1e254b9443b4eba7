"""A multilayer perceptron on MNIST: Numba forward/backward kernels, the public API
(init_params, loss_and_grads, predict) and the mini-batch SGD training loop.

Shapes: B batch, D fan-in of a layer, H fan-out of a layer, K classes, N samples.
Kernels are deterministic: the same inputs give the same bits, whatever the number of threads.
"""

import itertools
import math
import time
import warnings

import numpy as np
from numba import njit, prange
from numba.core.errors import NumbaPerformanceWarning

ACTIVATIONS = ("relu", "sigmoid", "tanh")
LOSSES = ("cross_entropy", "squared_error")

# Numba can segfault when a cached function that was compiled against a cached parallel=True
# callee is later loaded from the cache (numba/numba#8578; reproduced here with two jobs
# sharing one cache).  So every function that calls a parallel kernel is parallel=True too,
# though it has no loop of its own to spread over threads, and Numba's warning that it found
# nothing to parallelize in such a function is silenced.
warnings.filterwarnings(
    "ignore",
    r"\s*The keyword argument 'parallel=True' was specified but no "
    "transformation for parallel execution was possible",
    NumbaPerformanceWarning,
)


# --------------------------------------------------------------------------- layers
# Every kernel keeps the order of its sums: out = b + x[0] W[0] + x[1] W[1] + ..., one rounded
# product at a time, skipping only the terms whose input x[k] is exactly zero.  So however the
# loops are blocked, vectorized or spread over threads, the result is the same bits.
#
# The input layer reads MNIST pixels, about 81% zero: it works on lists of the nonzero
# entries, by rows (each sample's pixels, in order) for the forward pass and by columns (each
# pixel's samples, in order) for dW.  `rows` = (start, column, value), row n's entries at
# start[n]:start[n + 1]; `cols` alike.  The other layers are dense and vectorize along the
# batch (forward) or along their inputs (dW), skipping zero inputs with a select, not a branch.


@njit(cache=True)
def nonzeros(x):
    """The nonzero entries of x (N, D) as rows (start (N + 1,), column, value): row n's at
    start[n]:start[n + 1], in column order."""
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
    return start, column, value


@njit(cache=True)
def transpose_rows(cols, rows, B):
    """Fill cols with the entries of the first B rows, column by column: count each column's
    entries, turn counts into starts, then deal the entries out row by row (so each column
    lists its rows in order), each column's start moving up as it fills.  At the end start[k]
    holds column k's end, which is column k + 1's start: shift back by one."""
    row_start, row_column, row_value = rows
    start, row, value = cols
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


@njit(cache=True, parallel=True)
def sparse_forward(out, rows, W, b):
    """out (B, H) = x @ W (D, H) + b (H,), x (B, D) given by its nonzero `rows`:
    out[n] = b + the sum of x[n, k] * W[k] over the nonzero x[n, k], k in order."""
    start, column, value = rows
    for n in prange(out.shape[0]):
        out[n] = b
        add_scaled_rows(out[n], W, column, value, start[n], start[n + 1])


@njit(cache=True, parallel=True)
def sparse_backward_params(dW, db, dout, cols):
    """dW (D, H) = x^T @ dout (B, H), db (H,) = column sums of dout, x given by its nonzero
    `cols`: dW[k] = 0 + the sum of x[n, k] * dout[n] over the nonzero x[n, k], n in order."""
    column_sums(db, dout)
    start, sample, value = cols
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


@njit(cache=True, parallel=True)
def dense_backward_input(dx, dout, W):
    """dx (B, D) = dout (B, H) @ W (D, H)^T: row n is the sum of dout[n, j] * W^T[j], j in
    order, so a transposed copy of W makes it add_scaled_rows over all H rows."""
    WT, every = np.ascontiguousarray(W.T), np.arange(W.shape[1])
    for n in prange(dout.shape[0]):
        dx[n] = 0
        add_scaled_rows(dx[n], WT, every, dout[n], 0, every.size)


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
            h[n, j] = 1 / (1 + np.exp(-h[n, j]))


@njit(cache=True)
def sigmoid_backward(dh, h):
    for n in range(h.shape[0]):
        for j in range(h.shape[1]):
            dh[n, j] *= h[n, j] * (1 - h[n, j])


@njit(cache=True)
def tanh_forward(h):
    for n in range(h.shape[0]):
        for j in range(h.shape[1]):
            h[n, j] = np.tanh(h[n, j])


@njit(cache=True)
def tanh_backward(dh, h):
    for n in range(h.shape[0]):
        for j in range(h.shape[1]):
            dh[n, j] *= 1 - h[n, j] * h[n, j]


@njit(cache=True)
def activation_forward(h, activation):
    """Dispatch on the index of the activation in ACTIVATIONS."""
    if activation == 0:
        relu_forward(h)
    elif activation == 1:
        sigmoid_forward(h)
    else:
        tanh_forward(h)


@njit(cache=True)
def activation_backward(dh, h, activation):
    if activation == 0:
        relu_backward(dh, h)
    elif activation == 1:
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
            s += math.exp(logits[n, k] - m)
        log_s = math.log(s)
        total += log_s - (logits[n, y[n]] - m)
        for k in range(K):
            p = math.exp(logits[n, k] - m - log_s)
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
            out = 1.0 / (1.0 + math.exp(-logits[n, k]))
            target = 1.0 if k == y[n] else 0.0
            total += 0.5 * (target - out) ** 2
            dlogits[n, k] = (out - target) * out * (1.0 - out) * inv_b
    return total, correct


@njit(cache=True)
def loss_forward_backward(dlogits, logits, y, loss):
    """Dispatch on the index of the loss in LOSSES."""
    if loss == 0:
        return cross_entropy_forward_backward(dlogits, logits, y)
    return squared_error_forward_backward(dlogits, logits, y)


# --------------------------------------------------------------------------- the network
# All parameters live in one flat buffer `theta` (gradients in `grad`, momentum in `velocity`,
# laid out alike), as llm.c does: one update loop, one allocation.  `shapes` (L, 2) holds each
# layer's (D, H); `offsets` (L, 2) where its W and b start.  Activations of a batch live in one
# flat buffer too, layer l at act_offsets[l] as (B, H_l); `dacts` mirrors it with gradients.


@njit(cache=True)
def layer_params(theta, shapes, offsets, layer):
    """Views W (D, H) and b (H,) of one layer inside a flat parameter buffer."""
    D, H = shapes[layer, 0], shapes[layer, 1]
    W = theta[offsets[layer, 0] : offsets[layer, 0] + D * H].reshape((D, H))
    return W, theta[offsets[layer, 1] : offsets[layer, 1] + H]


@njit(cache=True)
def layer_acts(acts, shapes, act_offsets, layer, B):
    """View (B, H) of one layer's outputs inside a flat activation buffer."""
    H = shapes[layer, 1]
    return acts[act_offsets[layer] : act_offsets[layer] + B * H].reshape((B, H))


@njit(cache=True, parallel=True)
def network_forward(acts, theta, batch, net, activation):
    """Hidden layers dense + activation, the last layer linear: its outputs are the logits.
    The first layer reads the batch's nonzero inputs (see gather_batch)."""
    shapes, offsets, act_offsets = net
    rows, _, y = batch
    B = y.size
    for layer in range(shapes.shape[0]):
        W, b = layer_params(theta, shapes, offsets, layer)
        out = layer_acts(acts, shapes, act_offsets, layer, B)
        if layer == 0:
            sparse_forward(out, rows, W, b)
        else:
            dense_forward(out, layer_acts(acts, shapes, act_offsets, layer - 1, B), W, b)
        if layer < shapes.shape[0] - 1:
            activation_forward(out, activation)


@njit(cache=True, parallel=True)
def network_backward(grad, dacts, theta, acts, batch, net, activation):
    """Mirror of network_forward, line for line in reverse, from dacts' logits slot
    (dloss/dlogits) down to the first layer's weights."""
    shapes, offsets, act_offsets = net
    rows, cols, y = batch
    B = y.size
    for layer in range(shapes.shape[0] - 1, -1, -1):
        dout = layer_acts(dacts, shapes, act_offsets, layer, B)
        if layer < shapes.shape[0] - 1:
            activation_backward(dout, layer_acts(acts, shapes, act_offsets, layer, B), activation)
        W, _ = layer_params(theta, shapes, offsets, layer)
        dW, db = layer_params(grad, shapes, offsets, layer)
        if layer == 0:
            transpose_rows(cols, rows, B)
            sparse_backward_params(dW, db, dout, cols)
        else:
            dense_backward_params(dW, db, dout, layer_acts(acts, shapes, act_offsets, layer - 1, B))
            dense_backward_input(layer_acts(dacts, shapes, act_offsets, layer - 1, B), dout, W)


@njit(cache=True)
def momentum_step(W, v, g, lr, momentum, weight_decay):
    """v <- momentum * v + (g + weight_decay * W); W <- W - lr * v, elementwise on 1-D views."""
    # Indexing from 0 lets Numba drop its negative-index checks, so LLVM vectorizes the loop.
    for k in range(W.size):
        v[k] = momentum * v[k] + (g[k] + weight_decay * W[k])
        W[k] -= lr * v[k]


@njit(cache=True, parallel=True)
def momentum_blocks(W, v, g, lr, momentum, weight_decay, size=8192):
    """momentum_step in blocks of `size` elements, spread over the threads."""
    for block in prange((W.size + size - 1) // size):
        part = slice(block * size, min(W.size, (block + 1) * size))
        momentum_step(W[part], v[part], g[part], lr, momentum, weight_decay)


@njit(cache=True, parallel=True)
def sgd_momentum_update(theta, velocity, grad, net, lr, momentum, weight_decay):
    """SGD with momentum on every layer: weight decay on W, none on b."""
    shapes, offsets, _ = net
    for layer in range(shapes.shape[0]):
        start, end = offsets[layer, 0], offsets[layer, 0] + shapes[layer, 0] * shapes[layer, 1]
        momentum_blocks(
            theta[start:end], velocity[start:end], grad[start:end], lr, momentum, weight_decay
        )
        start, end = offsets[layer, 1], offsets[layer, 1] + shapes[layer, 1]
        momentum_step(
            theta[start:end], velocity[start:end], grad[start:end], lr, momentum, weight_decay * 0
        )


@njit(cache=True, parallel=True)
def evaluate_batch(acts, dacts, theta, batch, net, activation, loss):
    """Forward and loss of one batch (see gather_batch), writing dloss/dlogits into dacts'
    logits slot.  Returns (summed loss, correct predictions); updates nothing."""
    y = batch[2]
    shapes, _, act_offsets = net
    B, last = y.size, shapes.shape[0] - 1
    network_forward(acts, theta, batch, net, activation)
    return loss_forward_backward(
        layer_acts(dacts, shapes, act_offsets, last, B),
        layer_acts(acts, shapes, act_offsets, last, B),
        y,
        loss,
    )


@njit(cache=True, parallel=True)
def train_step(
    theta,
    velocity,
    grad,
    acts,
    dacts,
    batch,
    net,
    activation,
    loss,
    lr,
    momentum,
    weight_decay,
    limit,
):
    """Forward, loss, backward and update on one batch (see gather_batch).
    Returns (summed loss, correct predictions).  When the mean loss is above `limit` (or NaN)
    the weights are left as they are: the caller stops the run as diverged."""
    total, correct = evaluate_batch(acts, dacts, theta, batch, net, activation, loss)
    if not total / batch[2].size <= limit:
        return total, correct
    network_backward(grad, dacts, theta, acts, batch, net, activation)
    sgd_momentum_update(theta, velocity, grad, net, lr, momentum, weight_decay)
    return total, correct


@njit(cache=True, parallel=True)
def train_batches(
    totals,
    corrects,
    theta,
    velocity,
    grad,
    acts,
    dacts,
    buffers,
    net,
    activation,
    loss,
    samples,
    order,
    first,
    rates,
    momentum,
    weight_decay,
    limit,
):
    """train_step on len(totals) consecutive batches of the shuffled `order`, the first one
    starting at sample `first`; rates[i] is batch i's learning rate.  Writes each batch's
    summed loss and correct count; returns how many batches it trained, fewer than asked when
    one's mean loss blew up past `limit` (its loss is written, its update is not made)."""
    B, N = buffers[2].size, order.size
    for i in range(totals.size):
        start = first + i * B
        batch = gather_batch(buffers, samples, order[start : min(start + B, N)])
        total, correct = train_step(
            theta,
            velocity,
            grad,
            acts,
            dacts,
            batch,
            net,
            activation,
            loss,
            rates[i],
            momentum,
            weight_decay,
            limit,
        )
        totals[i], corrects[i] = total, correct
        if not total / batch[2].size <= limit:
            return i + 1
    return totals.size


@njit(cache=True, parallel=True)
def gather_batch(buffers, samples, index):
    """The batch of samples[index]: samples = (nonzero rows of the inputs (N, D), labels (N,),
    scale), see Network.samples; buffers = (rows, cols, labels) for up to B samples.  Copies
    the chosen rows, divided by scale, and labels; returns the batch (rows, cols, y), y cut to
    len(index).  cols, the same entries by column, are filled in by the backward pass."""
    (start, column, value), labels, scale = samples
    rows, cols, y = buffers
    row_start, row_column, row_value = rows
    for n in range(index.size):
        row_start[n + 1] = row_start[n] + start[index[n] + 1] - start[index[n]]
    for n in prange(index.size):
        first, t = start[index[n]], row_start[n]
        for i in range(row_start[n + 1] - t):
            row_column[t + i], row_value[t + i] = column[first + i], value[first + i] / scale
        y[n] = labels[index[n]]
    return rows, cols, y[: index.size]


# --------------------------------------------------------------------------- model level


def init_params(layers, seed, dtype="float32", activation="relu"):
    """Weights for `layers` = [784, ..., 10]: a list of (W, b), W (fan_in, fan_out), b zeros.

    He-normal for relu, Xavier/Glorot-uniform for sigmoid and tanh, drawn from
    numpy.random.default_rng(seed) (`seed` may also be a Generator, which is then advanced)."""
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in itertools.pairwise(layers):
        if activation == "relu":
            W = rng.normal(0.0, math.sqrt(2.0 / fan_in), size=(fan_in, fan_out))
        else:
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            W = rng.uniform(-limit, limit, size=(fan_in, fan_out))
        params.append((W.astype(dtype), np.zeros(fan_out, dtype=dtype)))
    return params


class Network:
    """The flat layout of a network's parameters, and buffers for batches of up to B samples."""

    def __init__(self, layers, dtype):
        self.dtype = np.dtype(dtype)
        self.shapes = np.array(list(itertools.pairwise(layers)), dtype=np.int64)
        sizes = [(D * H, H) for D, H in self.shapes]
        flat = np.cumsum([0] + [size for pair in sizes for size in pair])
        self.offsets = flat[:-1].reshape(-1, 2).astype(np.int64)
        self.size = int(flat[-1])

    def pack(self, params):
        theta = np.empty(self.size, self.dtype)
        for (W, b), view in zip(params, self.unpack(theta), strict=True):
            view[0][...] = W
            view[1][...] = b
        return theta

    def unpack(self, theta):
        """[(W, b)] as views into theta."""
        return [
            layer_params(theta, self.shapes, self.offsets, layer)
            for layer in range(len(self.shapes))
        ]

    def buffers(self, B):
        """(acts, dacts, net, batch buffers) for batches of up to B samples (see gather_batch)."""
        act_offsets = np.concatenate([[0], np.cumsum(B * self.shapes[:, 1])]).astype(np.int64)
        acts = np.empty(act_offsets[-1], self.dtype)
        D = int(self.shapes[0, 0])
        rows, cols = (
            (np.zeros(lists + 1, np.int64), np.empty(B * D, np.int32), np.empty(B * D, self.dtype))
            for lists in (B, D)
        )
        net = (self.shapes, self.offsets, act_offsets[:-1])
        return acts, np.empty_like(acts), net, (rows, cols, np.empty(B, np.int64))

    def samples(self, x, labels, scale=255):
        """A data set as gather_batch reads it: the nonzero entries of x (N, D), uint8 pixels
        or floats, kept as they are (a quarter of float32's bytes for pixels) and divided by
        `scale` batch by batch, and the labels."""
        start, column, value = nonzeros(x)
        if x.shape[1] <= np.iinfo(np.uint16).max:
            column = column.astype(np.uint16)
        return (start, column, value), labels, self.dtype.type(scale)


def _check_batch(params, X, y=None):
    W0 = params[0][0]
    if X.ndim != 2 or X.shape[1] != W0.shape[0]:
        raise ValueError(f"X: expected shape (B, {W0.shape[0]}), found {X.shape}")
    X = np.ascontiguousarray(X, dtype=W0.dtype)
    if y is None:
        return X, np.zeros(X.shape[0], np.int64)
    y = np.ascontiguousarray(y, dtype=np.int64)
    K = params[-1][0].shape[1]
    if y.shape != (X.shape[0],) or (y.size and (y.min() < 0 or y.max() >= K)):
        raise ValueError(f"y: expected {X.shape[0]} labels in 0..{K - 1}")
    return X, y


def _codes(activation, loss="cross_entropy"):
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {ACTIVATIONS}, found {activation!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {LOSSES}, found {loss!r}")
    return ACTIVATIONS.index(activation), LOSSES.index(loss)


def _prepare(params, X, y):
    """Network, its flat parameters and a filled batch for the public one-batch functions."""
    X, y = _check_batch(params, X, y)
    layers = [params[0][0].shape[0]] + [W.shape[1] for W, _ in params]
    network = Network(layers, params[0][0].dtype)
    acts, dacts, net, buffers = network.buffers(X.shape[0])
    batch = gather_batch(buffers, network.samples(X, y, scale=1), np.arange(X.shape[0]))
    return network, network.pack(params), acts, dacts, net, batch


def loss_and_grads(params, X, y, activation="relu", loss="cross_entropy"):
    """Mean loss over the batch and its gradients.

    params: list of (W (D, H), b (H,)); X (B, 784) floats; y (B,) class ids.
    Returns (loss, grads) with grads a list of (dW, db) shaped as params."""
    activation, loss = _codes(activation, loss)
    network, theta, acts, dacts, net, batch = _prepare(params, X, y)
    grad = np.empty_like(theta)
    total, _ = evaluate_batch(acts, dacts, theta, batch, net, activation, loss)
    network_backward(grad, dacts, theta, acts, batch, net, activation)
    return total / X.shape[0], network.unpack(grad)


def predict(params, X, activation="relu"):
    """Class ids (B,) of the largest logit for X (B, 784)."""
    activation, _ = _codes(activation)
    _network, theta, acts, _, net, batch = _prepare(params, X, None)
    network_forward(acts, theta, batch, net, activation)
    shapes, _, act_offsets = net
    logits = layer_acts(acts, shapes, act_offsets, len(shapes) - 1, X.shape[0])
    return np.argmax(logits, axis=1)


# --------------------------------------------------------------------------- training


def evaluate(network, theta, samples, activation, loss, size=1000):
    """(mean loss, accuracy) over samples (see Network.samples), in batches of `size`."""
    N = samples[1].size
    acts, dacts, net, buffers = network.buffers(min(size, N))
    total, correct = 0.0, 0
    for start in range(0, N, size):
        batch = gather_batch(buffers, samples, np.arange(start, min(start + size, N)))
        batch_total, batch_correct = evaluate_batch(
            acts, dacts, theta, batch, net, activation, loss
        )
        total += batch_total
        correct += batch_correct
    return total / N, correct / N


SCHEDULES = ("constant", "cosine")


def learning_rates(lr, schedule, total_steps, dtype):
    """The learning rate of every step: constant, or cosine-annealed from lr towards 0 over the
    whole run (lr * (1 + cos(pi * step / total_steps)) / 2)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule: expected one of {SCHEDULES}, found {schedule!r}")
    if schedule == "constant":
        return np.full(total_steps, lr, dtype=dtype)
    step = np.arange(total_steps, dtype=np.float64)
    return (lr * 0.5 * (1.0 + np.cos(np.pi * step / total_steps))).astype(dtype)


def train(
    train_set,
    test_set,
    *,
    layers,
    activation,
    loss,
    lr,
    seed,
    epochs,
    batch_size,
    momentum=0.9,
    weight_decay=0.0,
    dtype="float32",
    log_every=50,
    on_epoch=None,
    progress=None,
    schedule="constant",
    divergence_threshold=10.0,
):
    """Mini-batch SGD with momentum on (images uint8 (N, 784), labels (N,)) pairs.

    One Generator, default_rng(seed), draws the initial weights and then each epoch's
    shuffle.  Stops early, marked diverged, when a batch loss is not finite or exceeds
    `divergence_threshold` times the first batch loss (the untrained net's).
    Returns dict(params, history (per-epoch rows), steps (logged batch losses), timing
    (seconds of each epoch's training pass), diverged, diverged_step).
    `on_epoch(epoch, row)` is called after each epoch; `progress(epoch, batches_done,
    batches)` now and then within one."""
    activation_code, loss_code = _codes(activation, loss)
    images, _labels = train_set
    if not 1 <= batch_size <= len(images):
        raise ValueError(f"batch_size: expected 1..{len(images)}, found {batch_size}")
    rng = np.random.default_rng(seed)
    network = Network(layers, dtype)
    theta = network.pack(init_params(layers, rng, dtype, activation))
    velocity, grad = np.zeros_like(theta), np.empty_like(theta)
    acts, dacts, net, buffers = network.buffers(batch_size)
    # Each image's nonzero pixels, found once per run rather than once per batch.
    samples, test_samples = network.samples(*train_set), network.samples(*test_set)
    cast = network.dtype.type
    momentum, weight_decay = cast(momentum), cast(weight_decay)
    history, steps, timing = [], [], []
    step, diverged_step, limit = 0, None, math.inf
    n_batches = -(-len(images) // batch_size)
    # Batches go to the kernel in chunks: few calls from Python, yet a progress report and a
    # divergence check every chunk.  The first chunk is the first batch alone, whose loss
    # (the untrained net's) sets the divergence limit.
    chunk = max(1, n_batches // 50)
    rates = learning_rates(lr, schedule, epochs * n_batches, dtype)
    totals, corrects = np.empty(n_batches), np.empty(n_batches, np.int64)
    sizes = np.minimum(batch_size, len(images) - batch_size * np.arange(n_batches))
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        order = rng.permutation(len(images))
        done = 0
        while done < n_batches and diverged_step is None:
            count = 1 if step == 0 else min(chunk, n_batches - done)
            trained = train_batches(
                totals[done : done + count],
                corrects[done : done + count],
                theta,
                velocity,
                grad,
                acts,
                dacts,
                buffers,
                net,
                activation_code,
                loss_code,
                samples,
                order,
                done * batch_size,
                rates[step : step + count],
                momentum,
                weight_decay,
                limit,
            )
            if step == 0:
                limit = divergence_threshold * (totals[0] / sizes[0])
            for i in range(done, done + trained):
                batch_loss = totals[i] / sizes[i]
                # `not <=` also catches NaN.
                blown_up = not batch_loss <= limit
                if step % log_every == 0 or blown_up:
                    steps.append({"step": step, "epoch": epoch, "batch_loss": batch_loss})
                if blown_up:
                    diverged_step = step
                    break
                step += 1
            done += trained
            if progress is not None and diverged_step is None:
                progress(epoch, done, n_batches)
        if diverged_step is not None:
            break
        timing.append({"epoch": epoch, "seconds": time.perf_counter() - started})
        test_loss, test_accuracy = evaluate(
            network, theta, test_samples, activation_code, loss_code
        )
        # cumsum adds in order, as the epoch did; np.sum's pairwise order would differ.
        total = float(np.cumsum(totals)[-1])
        row = {
            "epoch": epoch,
            "train_loss": total / len(images),
            "train_accuracy": int(corrects.sum()) / len(images),
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
        }
        history.append(row)
        if on_epoch is not None:
            on_epoch(epoch, row)
    return {
        "params": network.unpack(theta),
        "history": history,
        "steps": steps,
        "timing": timing,
        "diverged": diverged_step is not None,
        "diverged_step": diverged_step,
    }
