"""A convolutional network on MNIST, its layers given as a list (the config's cnn.layers): the
public API (init_params, loss_and_grads, predict, train, summary), the batches' inputs with the
seeded augmentation of the training images, and the network as the training loop drives it.

The layer list is parsed by jitprop.cnn_spec, the network is jitprop.cnn_net, its kernels are
jitprop.kernels', the loop jitprop.training's.
"""

import math

import numpy as np
from numba import prange

from jitprop import checks, cnn_spec, config, data, training
from jitprop.cnn_net import Network, Pass
from jitprop.cnn_spec import LayerError
from jitprop.jit import njit
from jitprop.kernels import elementary, optim

__all__ = [
    "MNIST_MEAN",
    "MNIST_STD",
    "LayerError",
    "init_params",
    "loss_and_grads",
    "parse_layers",
    "predict",
    "summary",
    "train",
]

# Inputs are scaled to [0, 1] and normalized with MNIST's training-set mean and standard
# deviation (jitprop.data's), as the reference CNNs do.
MNIST_MEAN, MNIST_STD = data.MEAN, data.STD


# --------------------------------------------------------------------------- inputs


@njit(cache=True, parallel=True)
def _gather(x, images, index, angles, shifts, mean, std):
    """x (B, S, S) = the images[index] (uint8, (N, S S)), each turned by angles[n]
    radians about its centre (anticlockwise as drawn, as np.rot90) and moved by shifts[n] =
    (dy, dx) pixels, sampled bilinearly with zeros outside, scaled to [0, 1] and normalized by
    mean and std.  Angle and shift 0 copy: their weights are exactly 1, 0, 0, 0."""
    side = x.shape[1]
    centre = (side - 1) / 2
    for n in prange(index.size):
        image = images[index[n]]
        if angles[n] == 0 and shifts[n, 0] == 0 and shifts[n, 1] == 0:
            # The same values without the sampling: 15x faster (evaluation, no augmentation).
            out = x[n].reshape(side * side)
            for q in range(side * side):
                out[q] = (image[q] / 255 - mean) / std
            continue
        s, c = elementary._sin_cos(angles[n])
        dy, dx = shifts[n, 0], shifts[n, 1]
        for i in range(side):
            for j in range(side):
                # The source of output pixel (i, j): undo the shift, then the turn.
                u, v = i - centre - dy, j - centre - dx
                sy, sx = c * u + s * v + centre, -s * u + c * v + centre
                y0, x0 = math.floor(sy), math.floor(sx)
                fy, fx = sy - y0, sx - x0
                value = 0.0
                for a in range(2):
                    for b in range(2):
                        yy, xx = y0 + a, x0 + b
                        if 0 <= yy < side and 0 <= xx < side:
                            weight = (fy if a else 1 - fy) * (fx if b else 1 - fx)
                            value += weight * image[yy * side + xx]
                x[n, i, j] = (value / 255 - mean) / std


def _inputs(work, images, index, angles=None, shifts=None):
    """The batch images[index] into work's input, augmented by angles and shifts when given."""
    B = index.size
    if angles is None:
        angles, shifts = np.zeros(B), np.zeros((B, 2))
    _gather(work.input(B)[0], images, index, angles, shifts, MNIST_MEAN, MNIST_STD)


def _copies(views):
    """Per-layer dicts of arrays, copied out of the flat buffer their views share."""
    return [{name: view.copy() for name, view in layer.items()} for layer in views]


def _check(network, X):
    return training.checked_inputs(X, data.IMAGE[1:], network.dtype).reshape(-1, *data.IMAGE)


# --------------------------------------------------------------------------- the public API


def parse_layers(entries):
    """(specs, shapes) of the network `entries` (the config's cnn.layers) on MNIST's images:
    every layer's Spec and every activation's shape, the input's first; raises LayerError
    naming the layer that cannot work."""
    return cnn_spec.parse_layers(entries, data.IMAGE, data.CLASSES)


def summary(entries):
    """The torchsummary-like table of the network `entries` on MNIST's images: one row per
    layer with its index, layer, output shape and parameter count; the last row holds the
    total."""
    return cnn_spec.summary(entries, data.IMAGE, data.CLASSES)


def init_params(entries, seed, dtype=None):
    """Parameters of the network `entries` (the config's cnn.layers), drawn from
    numpy.random.default_rng(seed): a list with one dict per layer, conv {"W": (out, in, k, k)
    [, "b": (out,)]}, batchnorm {"gamma", "beta"}, linear {"W": (in, out), "b"}, others {}."""
    network = Network(entries, dtype or config.defaults("cnn")["dtype"])
    theta = network.init(np.random.default_rng(seed))
    return _copies(network.views(theta))


def _network_of(params, entries):
    """The network of `entries`, in the dtype of `params`, which must fit it: one dict a layer,
    the names and shapes init_params gives, float32 or float64 throughout."""
    if not isinstance(params, list) or not all(isinstance(layer, dict) for layer in params):
        raise ValueError(
            f"params: expected a list of one dict per layer, as init_params gives, found "
            f"{params!r:.80}"
        )
    dtypes = {np.asarray(view).dtype for layer in params for view in layer.values()}
    if len(dtypes) != 1 or next(iter(dtypes)) not in (np.float32, np.float64):
        raise ValueError(
            f"params: expected one dtype, float32 or float64, found {sorted(map(str, dtypes))}"
        )
    network = Network(entries, dtypes.pop())
    if len(params) != len(network.specs):
        raise ValueError(f"params: {len(params)} layers, expected {len(network.specs)}")
    for index, (spec, layer, views) in enumerate(
        zip(network.specs, params, network.views(np.empty(network.size)), strict=True)
    ):
        expected = {name: view.shape for name, view in views.items()}
        found = {name: np.shape(value) for name, value in layer.items()}
        if found != expected:
            raise ValueError(f"params[{index}] ({spec.kind}): expected {expected}, found {found}")
    return network


def _check_stats(network, stats):
    """`stats` as predict reads it, as float64 arrays, or a ValueError naming what is wrong:
    per layer, a batchnorm's running "mean" and "var" (C,), finite, the variance not negative;
    {} for other layers."""
    expected = network.new_stats()
    if not isinstance(stats, list) or len(stats) != len(expected):
        raise ValueError(f"stats: expected a list of {len(expected)} dicts, as train returns it")
    return [
        {
            name: _checked_stat(f"stats[{index}][{name!r}]", given, name, value.shape)
            for name, value in fresh.items()
        }
        for index, (given, fresh) in enumerate(zip(stats, expected, strict=True))
    ]


def _checked_stat(where, given, name, shape):
    """given[name] as a float64 array of `shape`, or a ValueError naming `where`."""
    found = given.get(name) if isinstance(given, dict) else None
    expected = f"{where}: expected {shape[0]} finite numbers, one per channel"
    try:
        array = np.array(found, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{expected}, found {found!r:.60}") from None
    if found is None or array.shape != shape:
        raise ValueError(f"{expected}, found {'None' if found is None else f'shape {array.shape}'}")
    if not np.isfinite(array).all():
        raise ValueError(f"{expected}, found NaN or infinity")
    if name == "var" and (array < 0).any():
        raise ValueError(f"{where}: expected variances >= 0, found {array.min()}")
    return array


def loss_and_grads(params, X, y, entries):
    """Mean cross-entropy of the network on X (N, 28, 28), already normalized, with labels y,
    and its gradients, shaped as params.  Batch norm uses the batch's statistics, dropout is
    the identity; the params' dtype decides the arithmetic."""
    network = _network_of(params, entries)
    X = _check(network, X)
    y = training.checked_labels(y, len(X), data.CLASSES)
    theta = network.pack(params)
    grad = np.zeros_like(theta)
    work = Pass(network, X.shape[0])
    work.input(X.shape[0])[0] = X[:, 0]
    logits = work.forward(network.views(theta), network.new_stats(), X.shape[0], True, None)
    total, _ = work.loss(logits, y)
    work.backward(network.views(theta), network.views(grad), X.shape[0], None)
    return total / X.shape[0], _copies(network.views(grad))


def predict(params, stats, X, entries, batch=1000):
    """Class ids (N,) for X (N, 28, 28), already normalized, in evaluation mode: batch norm on
    `stats` (each batchnorm's running "mean" and "var", as train returns them), no dropout."""
    network = _network_of(params, entries)
    X = _check(network, X)
    stats = _check_stats(network, stats)
    if not checks.whole_number(batch) or batch < 1:
        raise ValueError(f"batch: expected a whole number >= 1, found {batch!r}")
    theta = network.pack(params)
    views = network.views(theta)
    work = Pass(network, min(batch, len(X)))
    labels = np.empty(len(X), np.int64)
    for start in range(0, len(X), batch):
        B = min(batch, len(X) - start)
        work.input(B)[0] = X[start : start + B, 0]
        logits = work.forward(views, stats, B, False, None)
        labels[start : start + B] = np.argmax(logits, axis=1)
    return labels


class _Trainer:
    """The CNN as training.fit drives it."""

    def __init__(self, train_set, test_set, settings, rng):
        network = self.network = Network(settings["layers"], settings["dtype"])
        # run_settings checked the batches of train_size images; these are the images given.
        size, batch = len(train_set[1]), settings["batch_size"]
        problems = config.batch_of_one_problems(network.specs, network.shapes, batch, size)
        config.raise_problems("cnn", problems)
        theta = network.init(rng)
        self.sgd = optim.sgd_state(
            theta, network.segments(), settings["momentum"], settings["weight_decay"]
        )
        self.params, self.grads = network.views(theta), network.views(self.sgd.grad)
        self.stats = network.new_stats()
        self.work = Pass(network, settings["batch_size"])
        self.images, self.labels = train_set
        self.test_images, self.test_labels = test_set
        self.n_train, self.batch_size = len(self.labels), settings["batch_size"]
        augment = settings["augment"]
        self.rotation = math.radians(augment["rotation"])
        self.shift = augment["shift"]
        self.angles = np.zeros(self.n_train)
        self.shifts = np.zeros((self.n_train, 2))
        self.rng = rng
        self.evaluation = Pass(network, min(training.EVALUATION_BATCH, len(self.test_labels)))

    def begin_epoch(self, rng):
        """This epoch's augmentation, one turn and shift per training image, by image."""
        if self.rotation:
            self.angles = rng.uniform(-self.rotation, self.rotation, self.n_train)
        if self.shift:
            self.shifts = rng.uniform(-self.shift, self.shift, (self.n_train, 2))

    def train_batches(self, totals, corrects, order, first, rates, limit):
        B, N = self.batch_size, self.n_train
        dropout_layers = len(self.network.specs)
        for i in range(totals.size):
            start = first + i * B
            index = order[start : min(start + B, N)]
            size = index.size
            _inputs(self.work, self.images, index, self.angles[index], self.shifts[index])
            keys = self.rng.integers(0, 2**32, dropout_layers, dtype=np.uint64)
            logits = self.work.forward(self.params, self.stats, size, True, keys)
            total, correct = self.work.loss(logits, self.labels[index].astype(np.int64))
            totals[i], corrects[i] = total, correct
            if training.blown_up(total / size, limit):
                return i + 1
            self.work.backward(self.params, self.grads, size, keys)
            optim.sgd_momentum_update(self.sgd, rates[i])
        return totals.size

    def evaluate(self):
        work = self.evaluation

        def evaluate_batch(index):
            _inputs(work, self.test_images, index)
            logits = work.forward(self.params, self.stats, index.size, False, None)
            labels = self.test_labels[index].astype(np.int64)
            return work.loss(logits, labels)

        return training.evaluate_in_batches(evaluate_batch, len(self.test_labels))

    def misclassified(self):
        """[{index, label, predicted}] of the test digits the network gets wrong, in order."""
        work, rows = self.evaluation, []
        for start in range(0, len(self.test_labels), work.B):
            index = np.arange(start, min(start + work.B, len(self.test_labels)))
            _inputs(work, self.test_images, index)
            logits = work.forward(self.params, self.stats, index.size, False, None)
            for n, predicted in zip(index, np.argmax(logits, axis=1), strict=True):
                if predicted != self.test_labels[n]:
                    rows.append(
                        {
                            "index": int(n),
                            "label": int(self.test_labels[n]),
                            "predicted": int(predicted),
                        }
                    )
        return rows


def train(train_set, test_set, *, lr, seed, on_epoch=None, progress=None, **settings):
    """Train the CNN with mini-batch SGD with momentum on (images uint8 (N, 784), labels (N,))
    pairs; every other setting is the config's key of the same name (layers, epochs,
    batch_size, momentum, weight_decay, dtype, log_every, lr_schedule, divergence_threshold,
    augment), its default the schema's.

    One Generator, default_rng(seed), draws the initial weights, then each epoch's shuffle and
    augmentation, and each batch's dropout keys.  Returns training.fit's dict (history, steps,
    timing, diverged, diverged_step) with params (as init_params gives them), stats (each
    batchnorm's running mean and var, as predict takes them), n_params and misclassified (the
    test digits the final network gets wrong: index, label, predicted)."""
    settings = config.run_settings("cnn", settings)
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
    params = _copies(trainer.params)
    # A diverged run has no final model, and so no final mistakes.
    misclassified = [] if result["diverged"] else trainer.misclassified()
    return {
        "params": params,
        "stats": trainer.stats,
        "n_params": trainer.network.size,
        "misclassified": misclassified,
        **result,
    }
