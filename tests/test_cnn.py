"""The CNN: the network's gradients against tests/reference.py and central finite differences,
the public API, bad layer lists named, training reproducible and thread-independent, the
augmentation's geometry and the onecycle schedule."""

import math

import numba
import numpy as np
import pytest

from jitprop import cnn, cnn_spec, data, training
from jitprop.cnn_net import Network, Pass

import reference
from helpers import EXAMPLE, need_two_threads

SMALL = [  # every kind of layer, small enough for finite differences of every parameter
    {"conv": {"out": 3, "kernel": 3, "bias": True}},
    "relu",
    "batchnorm",
    {"dropout": 0.1},
    {"maxpool": 2},
    {"conv": {"out": 5, "kernel": 3, "padding": 1}},
    "relu",
    {"conv": {"out": 4, "kernel": 1}},
    {"maxpool": 13},
    {"linear": 6},
    "relu",
    {"linear": 10},
]


def problem(layers, N=4, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    params = cnn.init_params(layers, seed, dtype)
    # Batch norm's gamma and beta away from 1 and 0, so their gradients are not special.
    for spec, param in zip(cnn.parse_layers(layers)[0], params, strict=True):
        if spec.kind == "batchnorm":
            param["gamma"][...] = rng.uniform(0.5, 1.5, param["gamma"].shape)
            param["beta"][...] = rng.normal(0, 0.3, param["beta"].shape)
    return params, rng.normal(size=(N, 28, 28)).astype(dtype), rng.integers(0, 10, N)


# One max pool over a whole 28x28 map: a window's argmax above 255.
GLOBAL_MAXPOOL = [{"conv": {"out": 2, "kernel": 1}}, "relu", {"maxpool": 28}, {"linear": 10}]


# Ending in maps, (10, 1, 1): the logits are each sample's, flattened as PyTorch's view does.
MAPS_OUT = [
    {"conv": {"out": 2, "kernel": 3}},
    "relu",
    {"maxpool": 26},
    {"conv": {"out": 10, "kernel": 1, "bias": True}},
]


@pytest.mark.kernel
@pytest.mark.parametrize(
    "layers",
    [EXAMPLE, SMALL, GLOBAL_MAXPOOL, MAPS_OUT],
    ids=["example", "small", "global_maxpool", "maps_out"],
)
def test_loss_and_grads_match_numpy_reference(layers):
    params, X, y = problem(layers)
    loss, grads = cnn.loss_and_grads(params, X, y, layers)
    ref_loss, ref_grads = reference.cnn_loss_and_grads(params, X, y, layers)
    assert loss == pytest.approx(ref_loss, rel=1e-12), "loss differs"
    for index, (grad, ref) in enumerate(zip(grads, ref_grads, strict=True)):
        assert set(grad) == set(ref), f"layer {index}: gradients {set(grad)}, expected {set(ref)}"
        for name in grad:
            assert grad[name].shape == params[index][name].shape
            np.testing.assert_allclose(
                grad[name],
                ref[name],
                rtol=1e-9,
                atol=1e-12,
                err_msg=f"layer {index} d{name} differs",
            )


# Global average pooling, the one kind SMALL leaves out, before a linear layer.
POOLED = [
    {"conv": {"out": 2, "kernel": 3, "bias": True}},
    "relu",
    "batchnorm",
    "gap",
    {"linear": 10},
]


@pytest.mark.kernel
@pytest.mark.parametrize("layers", [SMALL, POOLED, MAPS_OUT], ids=["small", "pooled", "maps_out"])
def test_gradients_match_central_differences(layers):
    """Every entry of every gradient; without the JIT (a coverage run, where a loss costs a
    second), three entries of each."""
    params, X, y = problem(layers, N=3, seed=4)
    _, grads = cnn.loss_and_grads(params, X, y, layers)
    eps = 1e-6
    for index, (param, grad) in enumerate(zip(params, grads, strict=True)):
        for name, array in param.items():
            entries = list(np.ndindex(array.shape))
            if numba.config.DISABLE_JIT:
                entries = entries[:: max(1, len(entries) // 3)][:3]
            numeric = []
            for at in entries:
                saved = array[at]
                array[at] = saved + eps
                plus, _ = cnn.loss_and_grads(params, X, y, layers)
                array[at] = saved - eps
                minus, _ = cnn.loss_and_grads(params, X, y, layers)
                array[at] = saved
                numeric.append((plus - minus) / (2 * eps))
            np.testing.assert_allclose(
                [grad[name][at] for at in entries],
                numeric,
                rtol=1e-5,
                atol=1e-8,
                equal_nan=False,
                err_msg=f"layer {index} d{name} differs from finite differences",
            )


def dropout_loss_and_grad(network, theta, X, y, keys):
    """Mean loss and its gradient (flat, as theta) of one training pass, dropout drawn from
    `keys` (None: the identity), as a training step runs it."""
    work, N = Pass(network, len(X)), len(X)
    work.input(N)[0] = X
    logits = work.forward(network.views(theta), network.new_stats(), N, True, keys)
    total, _ = work.loss(logits, y)
    grad = np.zeros_like(theta)
    work.backward(network.views(theta), network.views(grad), N, keys)
    return total / N, grad


@pytest.mark.kernel
def test_gradients_with_dropout_match_central_differences():
    """With the masks of fixed keys the loss is an ordinary function of the weights: its
    gradient, dropout's backward pass included, against central differences."""
    params, X, y = problem(SMALL, N=3, seed=8)
    network = Network(SMALL, "float64")
    theta = network.pack(params)
    keys = np.arange(11, 11 + len(SMALL), dtype=np.uint64)
    loss, grad = dropout_loss_and_grad(network, theta, X, y, keys)
    assert loss != dropout_loss_and_grad(network, theta, X, y, None)[0], "dropout dropped none"
    entries = np.random.default_rng(9).choice(theta.size, 8 if numba.config.DISABLE_JIT else 80)
    numeric = []
    for at in entries:
        saved, eps = theta[at], 1e-6
        theta[at] = saved + eps
        plus = dropout_loss_and_grad(network, theta, X, y, keys)[0]
        theta[at] = saved - eps
        minus = dropout_loss_and_grad(network, theta, X, y, keys)[0]
        theta[at] = saved
        numeric.append((plus - minus) / (2 * eps))
    np.testing.assert_allclose(grad[entries], numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.kernel
def test_training_steps_match_reference_sgd_momentum():
    """Three steps of cnn.train against the reference's gradients and SGD with momentum and
    weight decay (on conv and linear weights only), so that velocity carries between steps."""
    layers = [
        {"conv": {"out": 3, "kernel": 3, "bias": True}},
        "relu",
        "batchnorm",
        {"maxpool": 2},
        {"conv": {"out": 4, "kernel": 3, "padding": 1}},
        "relu",
        "gap",
        {"linear": 10},
    ]
    rng = np.random.default_rng(6)
    images = rng.integers(0, 256, (12, 784)).astype(np.uint8)
    labels = rng.integers(0, 10, 12).astype(np.uint8)
    lr, momentum, decay = 0.2, 0.9, 0.01
    settings = dict(layers=layers, epochs=1, batch_size=4, momentum=momentum, dtype="float64")
    settings |= dict(
        weight_decay=decay, lr_schedule="constant", augment={"rotation": 0.0, "shift": 0.0}
    )
    result = cnn.train((images, labels), (images, labels), lr=lr, seed=3, **settings)
    after = result["params"]

    rng = np.random.default_rng(3)  # the run's generator: weights, then the epoch's order
    params = cnn.init_params(layers, rng, "float64")
    velocity = [{name: np.zeros_like(array) for name, array in layer.items()} for layer in params]
    order = rng.permutation(12)
    mean, var = np.zeros(3), np.ones(3)  # batch norm's running statistics, PyTorch's update
    for step in range(3):
        batch = order[4 * step : 4 * step + 4]
        X = (images[batch].reshape(-1, 28, 28) / 255 - cnn.MNIST_MEAN) / cnn.MNIST_STD
        conv = reference.conv_forward(X[:, None], params[0]["W"], params[0]["b"], 0)
        into_norm = np.maximum(conv, 0)
        mean = 0.9 * mean + 0.1 * into_norm.mean(axis=(0, 2, 3))
        var = 0.9 * var + 0.1 * into_norm.var(axis=(0, 2, 3), ddof=1)
        _, grads = reference.cnn_loss_and_grads(params, X, labels[batch].astype(int), layers)
        for param, grad, v in zip(params, grads, velocity, strict=True):
            for name in param:
                decays = name == "W"
                v[name] = momentum * v[name] + grad[name] + decay * decays * param[name]
                param[name] = param[name] - lr * v[name]
    for index, (param, expected) in enumerate(zip(after, params, strict=True)):
        for name in param:
            np.testing.assert_allclose(
                param[name], expected[name], rtol=1e-9, atol=1e-12, err_msg=f"layer {index} {name}"
            )
    np.testing.assert_allclose(result["stats"][2]["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(result["stats"][2]["var"], var, rtol=1e-12)


@pytest.mark.kernel
def test_float32_close_to_float64():
    params, X, y = problem(EXAMPLE, N=6, seed=5, dtype="float32")
    loss, grads = cnn.loss_and_grads(params, X, y, EXAMPLE)
    as64 = [{name: v.astype(np.float64) for name, v in p.items()} for p in params]
    ref_loss, ref_grads = reference.cnn_loss_and_grads(as64, X.astype(np.float64), y, EXAMPLE)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    for index, (grad, ref) in enumerate(zip(grads, ref_grads, strict=True)):
        for name in grad:
            assert grad[name].dtype == np.float32
            scale = np.abs(ref[name]).max()
            np.testing.assert_allclose(
                grad[name],
                ref[name],
                rtol=1e-3,
                atol=1e-4 * scale,
                err_msg=f"layer {index} d{name} (float32) differs",
            )


def test_predict_uses_the_running_statistics():
    params, X, _ = problem(EXAMPLE, N=7, seed=6)
    rng = np.random.default_rng(7)

    def batchnorm_stats(mean, var):
        return [{"mean": mean, "var": var} if i == 2 else {} for i in range(len(EXAMPLE))]

    stats = batchnorm_stats(rng.normal(size=8), rng.uniform(0.5, 2, 8))
    # The reference's features before the linear layer, batch norm in evaluation mode by hand.
    x = np.maximum(reference.conv_forward(X[:, None], params[0]["W"], None, 0), 0)
    x = (x - stats[2]["mean"][None, :, None, None]) / np.sqrt(
        stats[2]["var"][None, :, None, None] + 1e-5
    )
    x = params[2]["gamma"][None, :, None, None] * x + params[2]["beta"][None, :, None, None]
    x = reference.maxpool_forward(x, 2)[0]
    x = np.maximum(reference.conv_forward(x, params[5]["W"], params[5]["b"], 1), 0)
    features = x.mean(axis=(2, 3))
    # A readout that tells the seven images apart (an untrained one gives them all one label):
    # image n's logit k < 7 is the dot product of its centred features with image k's.
    centred = features - features.mean(axis=0)
    params[8]["W"] = centred.T @ np.eye(7, 10) * 1e3
    params[8]["b"] = -features.mean(axis=0) @ params[8]["W"]
    expected = (features @ params[8]["W"] + params[8]["b"]).argmax(axis=1)
    assert len(set(expected)) > 2

    np.testing.assert_array_equal(cnn.predict(params, stats, X, EXAMPLE), expected)
    fresh = cnn.predict(params, batchnorm_stats(np.zeros(8), np.ones(8)), X, EXAMPLE)
    assert (fresh != expected).any(), "predict does not read the running statistics"


NET = [{"conv": {"out": 4, "kernel": 3}}, "relu", "batchnorm", "gap", {"linear": 10}]


def bad_stats(mean=None, var=None):
    """NET's statistics, good unless mean or var is given."""
    mean = np.zeros(4) if mean is None else mean
    var = np.ones(4) if var is None else var
    return [{}, {}, {"mean": mean, "var": var}, {}, {}]


def other_conv(params):
    return [{"W": np.zeros((8, 1, 3, 3))}, *params[1:]]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda P, X, y: cnn.predict(P, bad_stats(mean=np.zeros(3)), X, NET),
            r"stats\[2\]\['mean'\]: expected 4 finite",
        ),
        (
            lambda P, X, y: cnn.predict(P, bad_stats(var=-np.ones(4)), X, NET),
            r"stats\[2\]\['var'\]: expected variances >= 0",
        ),
        (
            lambda P, X, y: cnn.predict(P, bad_stats(var=np.full(4, np.nan)), X, NET),
            r"stats\[2\]\['var'\]: expected 4 finite",
        ),
        (
            lambda P, X, y: cnn.predict(P, bad_stats(mean="abcd"), X, NET),
            r"stats\[2\]\['mean'\]: expected 4 finite numbers, one per channel, found 'abcd'",
        ),
        (lambda P, X, y: cnn.predict(P, None, X, NET), r"stats: expected a list of 5 dicts"),
        (
            lambda P, X, y: cnn.predict(P, bad_stats(), X, NET, batch=0),
            r"batch: expected a whole number >= 1, found 0",
        ),
        (
            lambda P, X, y: cnn.loss_and_grads(other_conv(P), X, y, NET),
            r"params\[0\] \(conv\): expected \{'W': \(4, 1, 3, 3\)\}, found \{'W': \(8, 1,",
        ),
        (
            lambda P, X, y: cnn.loss_and_grads([(1, 2)] * 5, X, y, NET),
            r"params: expected a list of one dict per layer, as init_params gives, found \[\(1,",
        ),
        (
            lambda P, X, y: cnn.loss_and_grads(
                [{k: v.astype(int) for k, v in p.items()} for p in P], X, y, NET
            ),
            r"params: expected one dtype, float32 or float64, found \['int64'\]",
        ),
        (
            lambda P, X, y: cnn.loss_and_grads(P, X, None, NET),
            r"y: expected 3 integer labels, one per row of X, found None",
        ),
        (lambda P, X, y: cnn.loss_and_grads(P, X, y + 7, NET), r"y: expected labels in 0\.\.9"),
        (lambda P, X, y: cnn.loss_and_grads(P, X, y * 1.0, NET), "y: expected 3 integer labels"),
        (lambda P, X, y: cnn.predict(P, bad_stats(), X[:, :27], NET), r"X: expected shape \(N, 28"),
        (lambda P, X, y: cnn.predict(P, bad_stats(), X + np.inf, NET), "X: expected finite"),
        (lambda P, X, y: cnn.predict(P, bad_stats(), X[:0], NET), "with N >= 1, found"),
    ],
)
def test_bad_params_stats_and_arguments_are_named(call, message):
    params = cnn.init_params(NET, 0, "float64")
    X, y = np.zeros((3, 28, 28)), np.array([1, 2, 3])
    assert cnn.predict(params, bad_stats(), X, NET).shape == (3,)  # the good call works
    with pytest.raises(ValueError, match=message):
        call(params, X, y)


def test_stats_may_be_lists_or_float32():
    params = cnn.init_params(NET, 0, "float64")
    X = np.random.default_rng(1).normal(size=(5, 28, 28))
    mean, var = np.linspace(-1, 1, 4), np.linspace(0.5, 2, 4)
    expected = cnn.predict(params, bad_stats(mean, var), X, NET)
    for convert in (list, lambda v: v.astype(np.float32)):  # no reflected list, no recompiling
        got = cnn.predict(params, bad_stats(convert(mean), convert(var)), X, NET)
        np.testing.assert_array_equal(got, expected)


def test_init_params_shapes_and_seeds():
    params = cnn.init_params(EXAMPLE, 0, "float32")
    shapes = [{name: v.shape for name, v in p.items()} for p in params]
    assert shapes == [
        {"W": (8, 1, 3, 3)},
        {},
        {"gamma": (8,), "beta": (8,)},
        {},
        {},
        {"W": (16, 8, 3, 3), "b": (16,)},
        {},
        {},
        {"W": (16, 10), "b": (10,)},
    ]
    assert params[0]["W"].dtype == np.float32
    bound = 1 / math.sqrt(8 * 9)  # PyTorch's default: uniform within 1 / sqrt(fan_in)
    assert 0.95 * bound < np.abs(params[5]["W"]).max() <= bound
    np.testing.assert_array_equal(params[5]["W"], cnn.init_params(EXAMPLE, 0, "float32")[5]["W"])
    assert (params[5]["W"] != cnn.init_params(EXAMPLE, 1, "float32")[5]["W"]).all()


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (
            [{"conv": {"out": 4, "kernel": 30}}, "gap", {"linear": 10}],
            r"cnn.layers\[0\] \(conv\): kernel 30 larger than its padded input 28x28",
        ),
        (
            [{"conv": {"out": 4, "kernel": 3}}, {"maxpool": 4}, "gap", {"linear": 10}],
            r"cnn.layers\[1\] \(maxpool\): a 4x4 pool does not divide its 26x26 input",
        ),
        (
            [{"conv": {"out": 4, "kernel": 3}}, "gap", {"linear": 9}],
            r"cnn.layers\[2\] \(linear\): the network ends with \(9,\); expected 10 outputs",
        ),
        (
            [{"conv": {"out": 4, "kernel": 3}}, "softmax", {"linear": 10}],
            r"cnn.layers\[1\]: unknown layer 'softmax'",
        ),
        (
            [{"conv": {"out": 4, "kernel": 3}}, {"relu": None}, "gap", {"linear": 10}],
            r"cnn.layers\[1\] \(relu\): takes no options, found None; write '- relu'",
        ),
        ([{"linear": 10}, "batchnorm"], r"cnn.layers\[1\] \(batchnorm\): input of shape \(10,\)"),
        ([{"dropout": 1.0}, {"linear": 10}], r"cnn.layers\[0\] \(dropout\): p 1.0"),
        (
            [{"conv": {"out": 0, "kernel": 3}}, "gap", {"linear": 10}],
            r"cnn.layers\[0\] \(conv\): out 0, kernel 3; expected whole numbers >= 1",
        ),
        ([{"conv": {"out": 4}}, {"linear": 10}], r"cnn.layers\[0\] \(conv\): found"),
        ([], r"cnn.layers: expected a non-empty list"),
    ],
)
def test_bad_layers_are_named(layers, message):
    with pytest.raises(cnn.LayerError, match=message):
        cnn.parse_layers(layers)


def test_multiply_adds_count_a_training_step():
    layers = [{"conv": {"out": 2, "kernel": 3}}, "relu", "gap", {"linear": 10}]
    # The first convolution: forward and weight gradient, 2 x 26 x 26 outputs of 9 taps each;
    # the linear layer: forward and both gradients, 2 x 10.
    assert cnn_spec.multiply_adds(*cnn.parse_layers(layers)) == 2 * (2 * 26 * 26 * 9) + 3 * 20


def test_summary_counts_parameters():
    rows = cnn.summary(EXAMPLE)
    assert [row["params"] for row in rows[:-1]] == [72, 0, 16, 0, 0, 1168, 0, 0, 170]
    assert rows[-1]["params"] == 72 + 16 + 1168 + 170
    assert rows[4]["output"] == (8, 13, 13)
    assert rows[7]["output"] == (16,)


TINY = [
    {"conv": {"out": 8, "kernel": 3}},
    "relu",
    "batchnorm",
    {"dropout": 0.05},
    {"maxpool": 2},
    {"conv": {"out": 16, "kernel": 3}},
    "relu",
    "batchnorm",
    {"maxpool": 11},
    {"linear": 10},
]


@pytest.fixture(scope="module")
def mnist_subset(mnist_dir):
    return data.load_split(mnist_dir, "train", 2000), data.load_split(mnist_dir, "test", 500)


def train_tiny(subset, **changes):
    settings = dict(
        layers=TINY,
        epochs=4,
        batch_size=32,
        lr=0.1,
        seed=0,
        augment={"rotation": 5.0, "shift": 1.0},
    )
    return cnn.train(*subset, **{**settings, **changes})


def test_training_learns_and_is_reproducible(mnist_subset):
    first, second = train_tiny(mnist_subset), train_tiny(mnist_subset)
    assert first["history"] == second["history"]
    assert first["steps"] == second["steps"]
    for a, b in zip(first["params"], second["params"], strict=True):
        for name in a:
            assert a[name].tobytes() == b[name].tobytes(), f"{name} differs between runs"
    # 2000 images, 4 epochs: far from chance (10%), though far from the full run's 99%.
    assert first["history"][-1]["test_accuracy"] > 0.7, first["history"]
    assert first["n_params"] == sum(r["params"] for r in cnn.summary(TINY)[:-1])
    assert set(first["stats"][2]) == {"mean", "var"}
    assert train_tiny(mnist_subset, seed=1)["history"] != first["history"]


def test_training_applies_dropout_and_augmentation(mnist_subset):
    # The same first batch (the shuffle comes first) from the same start: its loss moves only
    # if the training pass really drops units and turns the images.
    (images, labels), test = mnist_subset
    first_batch = ((images[:32], labels[:32]), test)

    def first_loss(**changes):
        return train_tiny(first_batch, epochs=1, **changes)["steps"][0]["batch_loss"]

    # p = 0 skips a dropout layer, but its masks' keys are drawn all the same; without
    # augmentation no angles are drawn, and the keys differ, so that one is compared with
    # dropout off.
    no_dropout = [{"dropout": 0.0} if "dropout" in layer else layer for layer in TINY]
    assert first_loss(layers=no_dropout) != first_loss(), "dropout is not applied in training"
    still = {"rotation": 0.0, "shift": 0.0}
    assert first_loss(layers=no_dropout, augment=still) != first_loss(layers=no_dropout), (
        "the images are not turned and shifted in training"
    )


def test_training_gives_the_same_bits_on_one_thread_and_two(mnist_subset):
    need_two_threads()
    results = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        try:
            results.append(train_tiny(mnist_subset, epochs=1))
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    one, two = results
    assert one["history"] == two["history"]
    for a, b in zip(one["params"], two["params"], strict=True):
        for name in a:
            assert a[name].tobytes() == b[name].tobytes(), f"{name} differs with threads"


def test_divergence_is_marked(mnist_subset):
    result = train_tiny(mnist_subset, lr=1e4, epochs=2)
    assert result["diverged"]
    assert result["steps"][-1]["step"] == result["diverged_step"]


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, 784)) * 255).astype(np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def test_augmentation_turns_and_shifts_about_the_centre():
    x, _ = images(1, 3)
    index = np.array([0, 0, 0])
    out = np.empty((3, 28, 28))
    angles = np.array([0.0, math.pi / 2, 0.0])
    shifts = np.array([[0.0, 0.0], [0.0, 0.0], [2.0, -3.0]])
    cnn._gather(out, x, index, angles, shifts, 0.0, 1.0)
    image = x[0].reshape(28, 28) / 255
    np.testing.assert_allclose(out[0], image, atol=1e-12, err_msg="no change is not a copy")
    # A quarter turn about the centre (13.5, 13.5) moves whole pixels: a positive angle turns
    # the digit anticlockwise as drawn, as np.rot90 does.
    np.testing.assert_allclose(out[1], np.rot90(image, k=1), atol=1e-9, err_msg="quarter turn")
    shifted = np.zeros_like(image)
    shifted[2:, :25] = image[:26, 3:]
    np.testing.assert_allclose(out[2], shifted, atol=1e-12, err_msg="shift by (2, -3) differs")
    normalized = np.empty((1, 28, 28))
    cnn._gather(normalized, x, index[:1], angles[:1], shifts[:1], cnn.MNIST_MEAN, cnn.MNIST_STD)
    np.testing.assert_allclose(normalized[0], (image - 0.1307) / 0.3081, rtol=1e-12)


def test_unmoved_images_skip_the_sampling_with_its_bits():
    """Images neither turned nor shifted are copied without the bilinear sampling; the values
    must be the sampling's, bit for bit: a whole-pixel shift is sampled (weights 1, 0, 0, 0)."""
    x, _ = images(2, 4)
    index, angles = np.array([0, 1]), np.zeros(2)
    copied, sampled = np.empty((2, 28, 28)), np.empty((2, 28, 28))
    cnn._gather(copied, x, index, angles, np.zeros((2, 2)), cnn.MNIST_MEAN, cnn.MNIST_STD)
    moved = np.array([[1.0, 0.0], [0.0, -1.0]])  # down a row; left a column
    cnn._gather(sampled, x, index, angles, moved, cnn.MNIST_MEAN, cnn.MNIST_STD)
    np.testing.assert_array_equal(copied, (x.reshape(2, 28, 28) / 255 - 0.1307) / 0.3081)
    np.testing.assert_array_equal(sampled[0, 1:], copied[0, :-1])
    np.testing.assert_array_equal(sampled[1, :, :-1], copied[1, :, 1:])


def test_onecycle_is_pytorchs():
    rates = training.learning_rates(0.4, "onecycle", 100, "float64")
    np.testing.assert_allclose(rates, reference.onecycle(0.4, 100), rtol=1e-12)
    assert rates.max() == pytest.approx(0.4)
    # Short runs too, where the warm-up is a step or less (checked against OneCycleLR itself:
    # T=5 gives 0.004, 0.09505, 0.06113, 0.01883, 4e-7).
    for steps in range(1, 8):
        np.testing.assert_allclose(
            training.learning_rates(0.1, "onecycle", steps, "float64"),
            reference.onecycle(0.1, steps),
            rtol=1e-12,
            err_msg=f"{steps} steps",
        )
