"""A multilayer perceptron on MNIST: its network on flat buffers (forward, backward, one batch's
training step) and the public API, init_params, loss_and_grads, predict and train.

Shapes: B batch, D fan-in of a layer, H fan-out of a layer, K classes, N samples.
The layer kernels are in jitprop.kernels.dense, the update in jitprop.kernels.optim, the
training loop in jitprop.training.
"""

import itertools
import math
from collections import namedtuple

import numpy as np
from numba import prange

from jitprop import checks, config, inits, training
from jitprop.jit import calls_parallel, njit
from jitprop.kernels import optim
from jitprop.kernels.dense import (
    ACTIVATIONS,
    CSR,
    LOSSES,
    activation_backward,
    activation_forward,
    csc_backward_params,
    csr_forward,
    csr_from_dense,
    csr_to_csc,
    dense_backward_input,
    dense_backward_params,
    dense_forward,
    loss_forward_backward,
)

__all__ = ["ACTIVATIONS", "LOSSES", "init_params", "loss_and_grads", "predict", "train"]

# --------------------------------------------------------------------------- the network
# Parameters live in one flat buffer `theta` (see jitprop.kernels.optim.SGD).  Layout: `shapes`
# (L, 2) holds each layer's (D, H); `offsets` (L, 2) where its W and b start.  Activations of a
# batch live in one flat buffer too, layer l at act_offsets[l] as (B, H_l); `dacts` mirrors it
# with gradients.  Net is what a pass over a batch needs beside the parameters.
Layout = namedtuple("Layout", ["shapes", "offsets", "act_offsets"])
Net = namedtuple("Net", ["layout", "acts", "dacts", "activation", "loss"])
# A data set as batches are gathered from it: the CSR of its inputs (N, D), kept as they are
# (uint8 pixels: a quarter of float32's bytes) and divided by `scale` batch by batch; its labels.
Samples = namedtuple("Samples", ["csr", "labels", "scale"])
# A batch: the CSR of its inputs, room for their CSC (filled by the backward pass), labels.
Batch = namedtuple("Batch", ["csr", "csc", "y"])


@njit(cache=True)
def _layer_params(theta, layout, layer):
    """Views W (D, H) and b (H,) of one layer inside a flat parameter buffer."""
    D, H = layout.shapes[layer, 0], layout.shapes[layer, 1]
    W_at, b_at = layout.offsets[layer, 0], layout.offsets[layer, 1]
    return theta[W_at : W_at + D * H].reshape((D, H)), theta[b_at : b_at + H]


@njit(cache=True)
def _layer_acts(acts, layout, layer, B):
    """View (B, H) of one layer's outputs inside a flat activation buffer."""
    H, at = layout.shapes[layer, 1], layout.act_offsets[layer]
    return acts[at : at + B * H].reshape((B, H))


@calls_parallel
def _network_forward(net, theta, batch):
    """Hidden layers dense + activation, the last layer linear: its outputs are the logits.
    The first layer reads the batch's CSR."""
    layout, acts = net.layout, net.acts
    B, L = batch.y.size, layout.shapes.shape[0]
    for layer in range(L):
        W, b = _layer_params(theta, layout, layer)
        out = _layer_acts(acts, layout, layer, B)
        if layer == 0:
            csr_forward(out, batch.csr, W, b)
        else:
            dense_forward(out, _layer_acts(acts, layout, layer - 1, B), W, b)
        if layer < L - 1:
            activation_forward(out, net.activation)


@calls_parallel
def _network_backward(grad, net, theta, batch):
    """Mirror of _network_forward, line for line in reverse, from dacts' logits slot
    (dloss/dlogits) down to the first layer's weights."""
    layout, acts, dacts = net.layout, net.acts, net.dacts
    B, L = batch.y.size, layout.shapes.shape[0]
    for layer in range(L - 1, -1, -1):
        dout = _layer_acts(dacts, layout, layer, B)
        if layer < L - 1:
            activation_backward(dout, _layer_acts(acts, layout, layer, B), net.activation)
        W, _ = _layer_params(theta, layout, layer)
        dW, db = _layer_params(grad, layout, layer)
        if layer == 0:
            csr_to_csc(batch.csc, batch.csr, B)
            csc_backward_params(dW, db, dout, batch.csc)
        else:
            dense_backward_params(dW, db, dout, _layer_acts(acts, layout, layer - 1, B))
            dense_backward_input(_layer_acts(dacts, layout, layer - 1, B), dout, W)


@calls_parallel
def _evaluate_batch(net, theta, batch):
    """Forward and loss of one batch, writing dloss/dlogits into dacts' logits slot.
    Returns (summed loss, correct predictions); updates nothing."""
    B, last = batch.y.size, net.layout.shapes.shape[0] - 1
    _network_forward(net, theta, batch)
    return loss_forward_backward(
        _layer_acts(net.dacts, net.layout, last, B),
        _layer_acts(net.acts, net.layout, last, B),
        batch.y,
        net.loss,
    )


@calls_parallel
def _train_step(sgd, net, batch, lr, limit):
    """Forward, loss, backward and update on one batch.  Returns (summed loss, correct
    predictions).  When the mean loss blew up (training.blown_up) the weights are left as
    they are: the caller stops the run as diverged."""
    total, correct = _evaluate_batch(net, sgd.theta, batch)
    if training.blown_up(total / batch.y.size, limit):
        return total, correct
    _network_backward(sgd.grad, net, sgd.theta, batch)
    optim.sgd_momentum_update(sgd, lr)
    return total, correct


@calls_parallel
def _train_batches(totals, corrects, sgd, net, buffers, samples, order, first, rates, limit):
    """_train_step on len(totals) consecutive batches of the shuffled `order`, the first one
    starting at sample `first`; rates[i] is batch i's learning rate.  Writes each batch's
    summed loss and correct count; returns how many batches it trained, fewer than asked when
    one's mean loss blew up past `limit` (its loss is written, its update is not made)."""
    B, N = buffers.y.size, order.size
    for i in range(totals.size):
        start = first + i * B
        batch = _gather_batch(buffers, samples, order[start : min(start + B, N)])
        total, correct = _train_step(sgd, net, batch, rates[i], limit)
        totals[i], corrects[i] = total, correct
        if training.blown_up(total / batch.y.size, limit):
            return i + 1
    return totals.size


# Copying CSR rows is 1.9x faster than gathering the batch as dense floats on one thread, 2.4x
# on two threads against the (serial) dense gather (benchmarks/mlp_tricks.py), and the kernels
# after it skip the zeros.
@njit(cache=True, parallel=True)
def _gather_batch(buffers, samples, index):
    """The batch of samples[index] in `buffers` (a Batch for up to B samples): copies the
    chosen CSR rows, divided by samples.scale, and labels; y is cut to len(index)."""
    # Only arrays and scalars may enter a prange loop, not the named tuples holding them.
    (start, column, value), labels, scale = samples
    row_start, row_column, row_value = buffers.csr
    y = buffers.y
    for n in range(index.size):
        row_start[n + 1] = row_start[n] + start[index[n] + 1] - start[index[n]]
    for n in prange(index.size):
        first, t = start[index[n]], row_start[n]
        for i in range(row_start[n + 1] - t):
            row_column[t + i] = column[first + i]
            row_value[t + i] = value[first + i] / scale
        y[n] = labels[index[n]]
    return Batch(buffers.csr, buffers.csc, y[: index.size])


class _Network:
    """The flat layout of a network's parameters, and buffers for batches of up to B samples."""

    def __init__(self, layers, dtype):
        self.dtype = np.dtype(dtype)
        self.shapes = np.array(list(itertools.pairwise(layers)), dtype=np.int64)
        sizes = [(D * H, H) for D, H in self.shapes]
        flat = np.cumsum([0] + [size for pair in sizes for size in pair])
        self.offsets = flat[:-1].reshape(-1, 2).astype(np.int64)
        self.size = int(flat[-1])

    def layout(self, B):
        act_offsets = np.concatenate([[0], np.cumsum(B * self.shapes[:, 1])]).astype(np.int64)
        return Layout(self.shapes, self.offsets, act_offsets[:-1]), int(act_offsets[-1])

    def pack(self, params):
        theta = np.empty(self.size, self.dtype)
        for (W, b), view in zip(params, self.unpack(theta), strict=True):
            view[0][...] = W
            view[1][...] = b
        return theta

    def unpack(self, theta):
        """[(W, b)] as views into theta."""
        layout, _ = self.layout(0)
        return [_layer_params(theta, layout, layer) for layer in range(len(self.shapes))]

    def segments(self):
        """(start, end, decays) of every W (weight decay) and b (none), for optim.sgd_state."""
        return [
            (int(at), int(at + size), decays)
            for (W_at, b_at), (D, H) in zip(self.offsets, self.shapes, strict=True)
            for at, size, decays in ((W_at, D * H, 1), (b_at, H, 0))
        ]

    def net(self, B, activation, loss):
        """A Net for batches of up to B samples; activation and loss by their codes."""
        layout, size = self.layout(B)
        return Net(layout, np.empty(size, self.dtype), np.empty(size, self.dtype), activation, loss)

    def batch_buffers(self, B):
        """A Batch with room for up to B samples (the CSR and CSC of up to all D inputs)."""
        D = int(self.shapes[0, 0])
        csr, csc = (
            CSR(
                np.zeros(lists + 1, np.int64),
                np.empty(B * D, np.int32),
                np.empty(B * D, self.dtype),
            )
            for lists in (B, D)
        )
        return Batch(csr, csc, np.empty(B, np.int64))

    def samples(self, x, labels, scale=255):
        """A data set as _gather_batch reads it, from inputs x (N, D), uint8 pixels or floats."""
        csr = csr_from_dense(x)
        if x.shape[1] <= np.iinfo(np.uint16).max:
            csr = csr._replace(index=csr.index.astype(np.uint16))
        return Samples(csr, labels, self.dtype.type(scale))


# --------------------------------------------------------------------------- the public API


def init_params(layers, seed, dtype=None, activation=None):
    """Weights for `layers` = [784, ..., 10]: a list of (W, b), W (fan_in, fan_out), b zeros.

    He-normal for relu (normal numbers by Box and Muller with jitprop's own log and cos:
    jitprop.inits), Xavier/Glorot-uniform for sigmoid and tanh, drawn from
    numpy.random.default_rng(seed) (`seed` may also be a Generator, which is then advanced).
    dtype and activation default to the config's."""
    defaults = config.defaults("mlp")
    dtype, activation = dtype or defaults["dtype"], activation or defaults["activation"]
    if (
        not isinstance(layers, (list, tuple))
        or len(layers) < 2
        or not all(checks.whole_number(n) and n >= 1 for n in layers)
    ):
        raise ValueError(f"layers: expected at least two whole numbers >= 1, found {layers!r}")
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in FLOAT_DTYPES:
        raise ValueError(f"dtype: expected one of {FLOAT_DTYPES}, found {dtype!r}")
    _codes(activation, None)
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in itertools.pairwise(layers):
        if activation == "relu":
            W = inits.normal(rng, math.sqrt(2.0 / fan_in), (fan_in, fan_out))
        else:
            W = inits.uniform(rng, math.sqrt(6.0 / (fan_in + fan_out)), (fan_in, fan_out))
        params.append((W.astype(dtype), np.zeros(fan_out, dtype=dtype)))
    return params


FLOAT_DTYPES = ("float32", "float64")


def _check_params(params):
    """params as init_params gives them, or a ValueError naming what does not fit: a list of
    (W (fan_in, fan_out), b (fan_out,)), each layer's fan_in the last one's fan_out, one float
    dtype throughout."""
    try:
        pairs = [(np.asarray(W), np.asarray(b)) for W, b in params]
    except (TypeError, ValueError):
        raise ValueError(
            f"params: expected a list of (W, b) pairs, as init_params gives, found {params!r:.80}"
        ) from None
    if not pairs:
        raise ValueError("params: expected at least one (W, b) layer, found none")
    dtypes = sorted({str(a.dtype) for pair in pairs for a in pair})
    if len(dtypes) != 1 or dtypes[0] not in FLOAT_DTYPES:
        raise ValueError(f"params: expected one dtype of {FLOAT_DTYPES}, found {dtypes}")
    fan_in = "fan_in"
    for index, (W, b) in enumerate(pairs):
        if W.ndim != 2 or b.shape != W.shape[1:] or (index and W.shape[0] != fan_in):
            raise ValueError(
                f"params[{index}]: expected W ({fan_in}, fan_out) and b (fan_out,), found W "
                f"{W.shape} and b {b.shape}"
            )
        fan_in = W.shape[1]


def _codes(activation, loss):
    """The kernels' codes of an activation and a loss named as in the config (None: its
    default)."""
    defaults = config.defaults("mlp")
    activation, loss = activation or defaults["activation"], loss or defaults["loss"]
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {ACTIVATIONS}, found {activation!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {LOSSES}, found {loss!r}")
    return ACTIVATIONS.index(activation), LOSSES.index(loss)


def _prepare(params, X, y, activation, loss, labelled=True):
    """Network, its flat parameters, a Net and a filled batch for the one-batch functions, once
    X and y fit params; without labels (predict's batch) labels of 0, which no output reads."""
    _check_params(params)
    fan_in, classes = params[0][0].shape[0], params[-1][0].shape[1]
    X = training.checked_inputs(X, (fan_in,), params[0][0].dtype)
    y = training.checked_labels(y, len(X), classes) if labelled else np.zeros(len(X), np.int64)
    layers = [fan_in] + [W.shape[1] for W, _ in params]
    network = _Network(layers, params[0][0].dtype)
    B = X.shape[0]
    batch = _gather_batch(network.batch_buffers(B), network.samples(X, y, scale=1), np.arange(B))
    return network, network.pack(params), network.net(B, *_codes(activation, loss)), batch


def loss_and_grads(params, X, y, activation=None, loss=None):
    """Mean loss over the batch and its gradients.

    params: list of (W (D, H), b (H,)); X (B, 784) floats; y (B,) class ids; activation and
    loss as in the config (default: the config's).
    Returns (loss, grads) with grads a list of (dW, db) shaped as params."""
    network, theta, net, batch = _prepare(params, X, y, activation, loss)
    grad = np.empty_like(theta)
    total, _ = _evaluate_batch(net, theta, batch)
    _network_backward(grad, net, theta, batch)
    return total / len(X), network.unpack(grad)


def predict(params, X, activation=None):
    """Class ids (B,) of the largest logit for X (B, 784)."""
    _, theta, net, batch = _prepare(params, X, None, activation, None, labelled=False)
    _network_forward(net, theta, batch)
    logits = _layer_acts(net.acts, net.layout, len(params) - 1, len(X))
    return np.argmax(logits, axis=1)


class _Trainer:
    """The MLP as training.fit drives it."""

    def __init__(self, train_set, test_set, settings, rng):
        s = settings
        codes = _codes(s["activation"], s["loss"])
        network = self.network = _Network(s["layers"], s["dtype"])
        theta = network.pack(init_params(s["layers"], rng, s["dtype"], s["activation"]))
        self.sgd = optim.sgd_state(theta, network.segments(), s["momentum"], s["weight_decay"])
        self.net = network.net(s["batch_size"], *codes)
        self.buffers = network.batch_buffers(s["batch_size"])
        # Each image's nonzero pixels, found once per run rather than once per batch.
        self.samples, self.test_samples = network.samples(*train_set), network.samples(*test_set)
        self.n_train = len(train_set[1])
        size = min(training.EVALUATION_BATCH, len(test_set[1]))
        self.evaluation = network.net(size, *codes), network.batch_buffers(size)

    def train_batches(self, totals, corrects, order, first, rates, limit):
        return _train_batches(
            totals,
            corrects,
            self.sgd,
            self.net,
            self.buffers,
            self.samples,
            order,
            first,
            rates,
            limit,
        )

    def evaluate(self):
        net, buffers = self.evaluation

        def evaluate_batch(index):
            batch = _gather_batch(buffers, self.test_samples, index)
            return _evaluate_batch(net, self.sgd.theta, batch)

        return training.evaluate_in_batches(evaluate_batch, len(self.test_samples.labels))


def train(train_set, test_set, *, lr, seed, on_epoch=None, progress=None, **settings):
    """Train an MLP with mini-batch SGD with momentum on (images uint8 (N, 784), labels (N,))
    pairs; every other setting is the config's key of the same name (layers, activation, loss,
    epochs, batch_size, momentum, weight_decay, dtype, log_every, lr_schedule,
    divergence_threshold), its default the schema's.

    One Generator, default_rng(seed), draws the initial weights and then each epoch's shuffle.
    Returns training.fit's dict (history, steps, timing, diverged, diverged_step) and params,
    the trained [(W, b)]."""
    settings = config.run_settings("mlp", settings)
    trainer, result = training.train(
        _Trainer,
        train_set,
        test_set,
        settings,
        lr=lr,
        seed=seed,
        on_epoch=on_epoch,
        progress=progress,
    )
    return {"params": trainer.network.unpack(trainer.sgd.theta), **result}
