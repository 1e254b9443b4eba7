"""A multilayer perceptron on MNIST: Numba forward/backward kernels, the public API
(init_params, loss_and_grads, predict) and the mini-batch SGD training loop.

Shapes: B batch, D fan-in of a layer, H fan-out of a layer, K classes, N samples.
Kernels are serial and deterministic: the same inputs give the same bits, whatever the threads.
"""

import math
import time

import numpy as np
from numba import njit

ACTIVATIONS = ("relu", "sigmoid", "tanh")
LOSSES = ("cross_entropy", "squared_error")


# --------------------------------------------------------------------------- dense layer


@njit(cache=True)
def dense_forward(out, x, W, b):
    """out (B, H) = x (B, D) @ W (D, H) + b (H,)."""
    B, D = x.shape
    H = W.shape[1]
    for n in range(B):
        for j in range(H):
            out[n, j] = b[j]
        for k in range(D):
            a = x[n, k]
            # MNIST pixels and relu outputs are mostly zero: skipping them is exact and cheap.
            if a != 0:
                for j in range(H):
                    out[n, j] += a * W[k, j]


@njit(cache=True)
def dense_backward_params(dW, db, dout, x):
    """dW (D, H) = x (B, D)^T @ dout (B, H); db (H,) = column sums of dout."""
    B, D = x.shape
    H = dout.shape[1]
    for j in range(H):
        db[j] = 0
    for n in range(B):
        for j in range(H):
            db[j] += dout[n, j]
    for k in range(D):
        for j in range(H):
            dW[k, j] = 0
        for n in range(B):
            a = x[n, k]
            if a != 0:
                for j in range(H):
                    dW[k, j] += a * dout[n, j]


@njit(cache=True)
def dense_backward_input(dx, dout, W):
    """dx (B, D) = dout (B, H) @ W (D, H)^T."""
    B, H = dout.shape
    D = W.shape[0]
    for n in range(B):
        for k in range(D):
            acc = dx.dtype.type(0)
            for j in range(H):
                acc += dout[n, j] * W[k, j]
            dx[n, k] = acc


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


FORWARD = {"relu": relu_forward, "sigmoid": sigmoid_forward, "tanh": tanh_forward}
BACKWARD = {"relu": relu_backward, "sigmoid": sigmoid_backward, "tanh": tanh_backward}


# --------------------------------------------------------------------------- losses
# Each returns (sum over the batch of per-sample losses, number of correct argmax predictions)
# and writes dlogits = d(mean loss)/d logits, so the gradient is already divided by B.


@njit(cache=True)
def cross_entropy_forward_backward(dlogits, logits, y):
    """Softmax then -log p[label].  dlogits (B, K), logits (B, K), y (B,) labels."""
    B, K = logits.shape
    total = 0.0
    correct = 0
    inv_b = 1.0 / B
    for n in range(B):
        best = 0
        for k in range(1, K):
            if logits[n, k] > logits[n, best]:
                best = k
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
        best = 0
        for k in range(1, K):
            if logits[n, k] > logits[n, best]:
                best = k
        correct += best == y[n]
        for k in range(K):
            out = 1.0 / (1.0 + math.exp(-logits[n, k]))
            target = 1.0 if k == y[n] else 0.0
            total += 0.5 * (target - out) ** 2
            dlogits[n, k] = (out - target) * out * (1.0 - out) * inv_b
    return total, correct


LOSS_KERNELS = {"cross_entropy": cross_entropy_forward_backward,
                "squared_error": squared_error_forward_backward}


# --------------------------------------------------------------------------- optimizer and data


@njit(cache=True)
def sgd_momentum_update(W, v, dW, lr, momentum, weight_decay):
    """v <- momentum * v + (dW + weight_decay * W); W <- W - lr * v.  Any shape, flattened."""
    W, v, dW = W.reshape(-1), v.reshape(-1), dW.reshape(-1)
    for k in range(W.size):
        v[k] = momentum * v[k] + (dW[k] + weight_decay * W[k])
        W[k] -= lr * v[k]


@njit(cache=True)
def gather_batch(x, y, images, labels, index):
    """x (B, D) = images[index] / 255 as x's dtype; y (B,) = labels[index]."""
    scale = x.dtype.type(255)
    for n in range(index.size):
        src = index[n]
        y[n] = labels[src]
        for k in range(x.shape[1]):
            x[n, k] = images[src, k] / scale


# --------------------------------------------------------------------------- model level


def init_params(layers, seed, dtype="float32", activation="relu"):
    """Weights for `layers` = [784, ..., 10]: a list of (W, b), W (fan_in, fan_out), b zeros.

    He-normal for relu, Xavier/Glorot-uniform for sigmoid and tanh, drawn from
    numpy.random.default_rng(seed) (`seed` may also be a Generator, which is then advanced)."""
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(layers[:-1], layers[1:], strict=True):
        if activation == "relu":
            W = rng.normal(0.0, math.sqrt(2.0 / fan_in), size=(fan_in, fan_out))
        else:
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            W = rng.uniform(-limit, limit, size=(fan_in, fan_out))
        params.append((W.astype(dtype), np.zeros(fan_out, dtype=dtype)))
    return params


class Workspace:
    """Buffers for one batch size: the saved forward outputs and their gradients."""

    def __init__(self, params, batch):
        dtype = params[0][0].dtype
        self.h = [np.empty((batch, W.shape[1]), dtype) for W, _ in params]
        self.dh = [np.empty((batch, W.shape[1]), dtype) for W, _ in params]

    def view(self, batch):
        """The first `batch` rows of every buffer (the last batch of an epoch may be short)."""
        if batch == self.h[0].shape[0]:
            return self.h, self.dh
        return [h[:batch] for h in self.h], [d[:batch] for d in self.dh]


def forward(params, x, activation, h):
    """Hidden layers dense + activation, the last layer linear: h[-1] holds the logits."""
    act = FORWARD[activation]
    for layer, (W, b) in enumerate(params):
        dense_forward(h[layer], x if layer == 0 else h[layer - 1], W, b)
        if layer < len(params) - 1:
            act(h[layer])


def backward(grads, params, x, activation, h, dh):
    """Mirror of `forward`, line for line in reverse, from dh[-1] = dloss/dlogits."""
    act_backward = BACKWARD[activation]
    for layer in range(len(params) - 1, -1, -1):
        if layer < len(params) - 1:
            act_backward(dh[layer], h[layer])
        dW, db = grads[layer]
        dense_backward_params(dW, db, dh[layer], x if layer == 0 else h[layer - 1])
        if layer > 0:
            dense_backward_input(dh[layer - 1], dh[layer], params[layer][0])


def _check_batch(params, X, y=None):
    W0 = params[0][0]
    if X.ndim != 2 or X.shape[1] != W0.shape[0]:
        raise ValueError(f"X: expected shape (B, {W0.shape[0]}), found {X.shape}")
    X = np.ascontiguousarray(X, dtype=W0.dtype)
    if y is None:
        return X, None
    y = np.ascontiguousarray(y, dtype=np.int64)
    K = params[-1][0].shape[1]
    if y.shape != (X.shape[0],) or (y.size and (y.min() < 0 or y.max() >= K)):
        raise ValueError(f"y: expected {X.shape[0]} labels in 0..{K - 1}")
    return X, y


def _check_names(activation, loss=None):
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {ACTIVATIONS}, found {activation!r}")
    if loss is not None and loss not in LOSSES:
        raise ValueError(f"loss: expected one of {LOSSES}, found {loss!r}")


def loss_and_grads(params, X, y, activation="relu", loss="cross_entropy"):
    """Mean loss over the batch and its gradients.

    params: list of (W (D, H), b (H,)); X (B, 784) floats; y (B,) class ids.
    Returns (loss, grads) with grads a list of (dW, db) shaped as params."""
    _check_names(activation, loss)
    X, y = _check_batch(params, X, y)
    work = Workspace(params, X.shape[0])
    grads = [(np.empty_like(W), np.empty_like(b)) for W, b in params]
    forward(params, X, activation, work.h)
    total, _ = LOSS_KERNELS[loss](work.dh[-1], work.h[-1], y)
    backward(grads, params, X, activation, work.h, work.dh)
    return total / X.shape[0], grads


def predict(params, X, activation="relu"):
    """Class ids (B,) of the largest logit for X (B, 784)."""
    _check_names(activation)
    X, _ = _check_batch(params, X)
    work = Workspace(params, X.shape[0])
    forward(params, X, activation, work.h)
    return np.argmax(work.h[-1], axis=1)


# --------------------------------------------------------------------------- training


def evaluate(params, images, labels, activation, loss, batch=1000):
    """(mean loss, accuracy) over uint8 images (N, 784) and labels (N,)."""
    dtype = params[0][0].dtype
    work = Workspace(params, min(batch, len(images)))
    x = np.empty((work.h[0].shape[0], images.shape[1]), dtype)
    y = np.empty(x.shape[0], np.int64)
    total, correct = 0.0, 0
    for start in range(0, len(images), batch):
        index = np.arange(start, min(start + batch, len(images)))
        h, dh = work.view(index.size)
        gather_batch(x[: index.size], y[: index.size], images, labels, index)
        forward(params, x[: index.size], activation, h)
        batch_total, batch_correct = LOSS_KERNELS[loss](dh[-1], h[-1], y[: index.size])
        total += batch_total
        correct += batch_correct
    return total / len(images), correct / len(images)


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


def train(train_set, test_set, *, layers, activation, loss, lr, seed, epochs, batch_size,
          momentum=0.9, weight_decay=0.0, dtype="float32", log_every=50, on_epoch=None,
          progress=None, schedule="constant", divergence_threshold=10.0):
    """Mini-batch SGD with momentum on (images uint8 (N, 784), labels (N,)) pairs.

    One Generator, default_rng(seed), draws the initial weights and then each epoch's
    shuffle.  Stops early, marked diverged, when a batch loss is not finite or exceeds
    `divergence_threshold` times the first batch loss (the untrained net's).
    Returns dict(params, history (per-epoch rows), steps (logged batch losses), timing,
    diverged, diverged_step).  `on_epoch(epoch, row)` is called after each epoch;
    `progress(epoch, batches_done, batches)` now and then within one."""
    _check_names(activation, loss)
    images, labels = train_set
    if not 1 <= batch_size <= len(images):
        raise ValueError(f"batch_size: expected 1..{len(images)}, found {batch_size}")
    rng = np.random.default_rng(seed)
    params = init_params(layers, rng, dtype, activation)
    velocity = [(np.zeros_like(W), np.zeros_like(b)) for W, b in params]
    grads = [(np.empty_like(W), np.empty_like(b)) for W, b in params]
    work = Workspace(params, batch_size)
    x = np.empty((batch_size, images.shape[1]), dtype)
    y = np.empty(batch_size, np.int64)
    cast = np.dtype(dtype).type
    momentum, weight_decay = cast(momentum), cast(weight_decay)
    loss_kernel = LOSS_KERNELS[loss]
    history, steps, timing = [], [], []
    step, diverged_step, limit = 0, None, math.inf
    n_batches = -(-len(images) // batch_size)
    report_every = max(1, n_batches // 50)
    rates = learning_rates(lr, schedule, epochs * n_batches, dtype)
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        order = rng.permutation(len(images))
        total, correct = 0.0, 0
        for start in range(0, len(images), batch_size):
            index = order[start: start + batch_size]
            h, dh = work.view(index.size)
            xb, yb = x[: index.size], y[: index.size]
            gather_batch(xb, yb, images, labels, index)
            forward(params, xb, activation, h)
            batch_total, batch_correct = loss_kernel(dh[-1], h[-1], yb)
            batch_loss = batch_total / index.size
            if step == 0:
                limit = divergence_threshold * batch_loss
            # `not <=` also catches NaN.
            blown_up = not batch_loss <= limit
            if step % log_every == 0 or blown_up:
                steps.append({"step": step, "epoch": epoch, "batch_loss": batch_loss})
            if blown_up:
                diverged_step = step
                break
            backward(grads, params, xb, activation, h, dh)
            for (W, b), (vW, vb), (dW, db) in zip(params, velocity, grads, strict=True):
                sgd_momentum_update(W, vW, dW, rates[step], momentum, weight_decay)
                sgd_momentum_update(b, vb, db, rates[step], momentum, cast(0))
            total += batch_total
            correct += batch_correct
            step += 1
            done = start // batch_size + 1
            if progress is not None and (done % report_every == 0 or done == n_batches):
                progress(epoch, done, n_batches)
        if diverged_step is not None:
            break
        test_loss, test_accuracy = evaluate(params, *test_set, activation, loss)
        row = {"epoch": epoch, "train_loss": total / len(images),
               "train_accuracy": correct / len(images), "test_loss": test_loss,
               "test_accuracy": test_accuracy}
        history.append(row)
        timing.append({"epoch": epoch, "seconds": time.perf_counter() - started})
        if on_epoch is not None:
            on_epoch(epoch, row)
    return {"params": params, "history": history, "steps": steps, "timing": timing,
            "diverged": diverged_step is not None, "diverged_step": diverged_step}
