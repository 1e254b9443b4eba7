"""MLP kernels: central finite differences, a NumPy reference, training and divergence."""

import math

import numba
import numpy as np
import pytest

from jitprop import cnn, mlp, training
from jitprop.kernels import dense

import reference
from helpers import need_two_threads

CASES = [(act, loss) for act in mlp.ACTIVATIONS for loss in mlp.LOSSES]


def problem(activation, layers=(12, 7, 5, 4), batch=6, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    params = mlp.init_params(list(layers), seed, dtype, activation)
    params = [(W, rng.normal(0, 0.1, b.shape).astype(dtype)) for W, b in params]
    X = rng.random((batch, layers[0])).astype(dtype)
    X[X < 0.3] = 0  # zeros, as in MNIST images, exercise the kernels' zero skipping
    y = rng.integers(0, layers[-1], batch)
    return params, X, y


@pytest.mark.parametrize(("activation", "loss"), CASES)
@pytest.mark.kernel
def test_gradients_match_central_differences(activation, loss):
    params, X, y = problem(activation)
    _, grads = mlp.loss_and_grads(params, X, y, activation, loss)
    eps = 1e-6
    for layer, ((W, b), (dW, db)) in enumerate(zip(params, grads, strict=True)):
        for name, array, grad in ((f"dW{layer + 1}", W, dW), (f"db{layer + 1}", b, db)):
            numeric = np.empty_like(array)
            for index in np.ndindex(array.shape):
                saved = array[index]
                array[index] = saved + eps
                plus, _ = mlp.loss_and_grads(params, X, y, activation, loss)
                array[index] = saved - eps
                minus, _ = mlp.loss_and_grads(params, X, y, activation, loss)
                array[index] = saved
                numeric[index] = (plus - minus) / (2 * eps)
            np.testing.assert_allclose(
                grad,
                numeric,
                rtol=1e-5,
                atol=1e-9,
                equal_nan=False,
                err_msg=f"{name} differs from finite differences",
            )


@pytest.mark.parametrize(("activation", "loss"), CASES)
@pytest.mark.kernel
def test_matches_numpy_reference(activation, loss):
    params, X, y = problem(activation, layers=(30, 16, 8, 10), batch=9, seed=3)
    value, grads = mlp.loss_and_grads(params, X, y, activation, loss)
    ref_value, ref_grads = reference.mlp_loss_and_grads(params, X, y, activation, loss)
    assert value == pytest.approx(ref_value, rel=1e-12), "loss differs"
    for layer, ((dW, db), (rW, rb)) in enumerate(zip(grads, ref_grads, strict=True)):
        np.testing.assert_allclose(dW, rW, rtol=1e-10, atol=1e-14, err_msg=f"dW{layer + 1} differs")
        np.testing.assert_allclose(db, rb, rtol=1e-10, atol=1e-14, err_msg=f"db{layer + 1} differs")
    np.testing.assert_array_equal(
        mlp.predict(params, X, activation), reference.mlp_predict(params, X, activation)
    )


@pytest.mark.kernel
def test_float32_close_to_float64_reference():
    params, X, y = problem("relu", layers=(784, 32, 10), batch=16, seed=5, dtype="float32")
    value, grads = mlp.loss_and_grads(params, X, y)
    as64 = [(W.astype(np.float64), b.astype(np.float64)) for W, b in params]
    ref_value, ref_grads = reference.mlp_loss_and_grads(
        as64, X.astype(np.float64), y, "relu", "cross_entropy"
    )
    assert grads[0][0].dtype == np.float32
    assert value == pytest.approx(ref_value, rel=1e-5)
    np.testing.assert_allclose(
        grads[0][0], ref_grads[0][0], rtol=1e-3, atol=1e-6, err_msg="dW1 (float32) differs"
    )


def one_term_at_a_time(x, W, b):
    out = np.empty((x.shape[0], W.shape[1]), W.dtype)
    reference.linear_one_term_at_a_time(out, x, W, b)
    return out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("B", "D", "H"), [(7, 13, 10), (64, 50, 33), (3, 2, 1)])
@pytest.mark.kernel
def test_layer_kernels_give_the_bits_of_one_term_at_a_time(dtype, B, D, H):
    rng = np.random.default_rng(B * D * H)
    x = rng.normal(size=(B, D)).astype(dtype)
    x[rng.random((B, D)) < 0.6] = 0
    W, b = rng.normal(size=(D, H)).astype(dtype), rng.normal(size=H).astype(dtype)
    dout = rng.normal(size=(B, H)).astype(dtype)
    expected_out = one_term_at_a_time(x, W, b)
    expected_dW = one_term_at_a_time(x.T, dout, np.zeros(H, dtype))  # dW = x^T dout
    expected_dx = one_term_at_a_time(dout, W.T, np.zeros(D, dtype))  # no zeros in dout
    out, dW, db, dx = (np.empty_like(a) for a in (expected_out, W, b, x))
    dense.dense_forward(out, x, W, b)
    np.testing.assert_array_equal(out, expected_out, err_msg="dense_forward")
    dense.dense_backward_params(dW, db, dout, x)
    np.testing.assert_array_equal(dW, expected_dW, err_msg="dense_backward_params dW")
    np.testing.assert_array_equal(db, np.cumsum(dout, axis=0)[-1], err_msg="db")
    dense.dense_backward_input(dx, dout, W)
    np.testing.assert_array_equal(dx, expected_dx, err_msg="dense_backward_input")
    # The input layer's kernels, on the batch's CSR and CSC, into outputs that must be overwritten.
    out[:], dW[:], db[:] = np.nan, np.nan, np.nan
    network = mlp._Network([D, H], dtype)
    samples = network.samples(x, np.zeros(B), scale=1)
    batch = mlp._gather_batch(network.batch_buffers(B), samples, np.arange(B))
    dense.csr_forward(out, batch.csr, W, b)
    np.testing.assert_array_equal(out, expected_out, err_msg="csr_forward")
    dense.csr_to_csc(batch.csc, batch.csr, B)
    dense.csc_backward_params(dW, db, dout, batch.csc)
    np.testing.assert_array_equal(dW, expected_dW, err_msg="csc_backward_params dW")
    np.testing.assert_array_equal(db, np.cumsum(dout, axis=0)[-1], err_msg="csc_backward_params db")


def test_training_gives_the_same_bits_on_one_thread_and_two():
    need_two_threads()
    train_set = images(300, 4)
    kwargs = dict(
        layers=[784, 40, 24, 10],
        activation="relu",
        loss="cross_entropy",
        lr=0.05,
        seed=2,
        epochs=2,
        batch_size=32,
    )
    results = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        try:
            results.append(mlp.train(train_set, train_set, **kwargs))
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    (one, two) = results
    assert one["history"] == two["history"]
    assert one["steps"] == two["steps"]
    for (W1, b1), (W2, b2) in zip(one["params"], two["params"], strict=True):
        assert W1.tobytes() == W2.tobytes()
        assert b1.tobytes() == b2.tobytes()


SMALL_PARAMS = mlp.init_params([12, 5, 3], 0, "float64")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ([], r"params: expected at least one \(W, b\) layer, found none"),
        ([{"W": 1}], r"params: expected a list of \(W, b\) pairs"),
        (
            [SMALL_PARAMS[0], (np.zeros((4, 3)), np.zeros(3))],
            r"params\[1\]: expected W \(5, fan_out\) and b \(fan_out,\), found W \(4, 3\)",
        ),
        ([(SMALL_PARAMS[0][0], np.zeros(4)), SMALL_PARAMS[1]], r"params\[0\]: .* and b \(4,\)"),
        (
            [(W.astype(int), b.astype(int)) for W, b in SMALL_PARAMS],
            r"params: expected one dtype of \('float32', 'float64'\), found \['int64'\]",
        ),
    ],
)
def test_bad_params_are_named(params, message):
    X, y = np.zeros((4, 12)), np.array([0, 1, 2, 1])
    assert np.isfinite(mlp.loss_and_grads(SMALL_PARAMS, X, y)[0])  # the good call works
    with pytest.raises(ValueError, match=message):
        mlp.loss_and_grads(params, X, y)
    with pytest.raises(ValueError, match=message):
        mlp.predict(params, X)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (([784], 0), r"layers: expected at least two whole numbers >= 1, found \[784\]"),
        (([784, 0, 10], 0), r"layers: .* found \[784, 0, 10\]"),
        (
            ([784, 10], 0, "int32"),
            r"dtype: expected one of \('float32', 'float64'\), found 'int32'",
        ),
        (([784, 10], 0, "float32", "gelu"), r"activation: expected one of .*, found 'gelu'"),
    ],
)
def test_bad_init_arguments_are_named(arguments, message):
    with pytest.raises(ValueError, match=message):
        mlp.init_params(*arguments)


def test_init_is_he_or_glorot_and_seeded():
    relu = mlp.init_params([784, 256, 10], 7, "float32", "relu")
    assert relu[0][0].shape == (784, 256)
    assert relu[0][0].dtype == np.float32
    assert relu[0][0].std() == pytest.approx(np.sqrt(2 / 784), rel=0.02)
    assert not relu[0][1].any()
    tanh = mlp.init_params([784, 256, 10], 7, "float64", "tanh")
    limit = np.sqrt(6 / (784 + 256))
    assert np.abs(tanh[0][0]).max() <= limit
    assert tanh[0][0].std() == pytest.approx(limit / np.sqrt(3), rel=0.02)
    again = mlp.init_params([784, 256, 10], 7, "float32", "relu")
    np.testing.assert_array_equal(relu[1][0], again[1][0])


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 784)).astype(np.uint8)
    x[rng.random((n, 784)) < 0.7] = 0
    # Learnable labels: class c lights up the c-th of ten bands of 78 pixels.
    labels = rng.integers(0, 10, n).astype(np.uint8)
    for row, label in enumerate(labels.tolist()):
        x[row, 78 * label : 78 * label + 78] |= 0xC0
    return x, labels


@pytest.mark.kernel
def test_training_steps_match_reference_sgd_momentum():
    """Three steps, so that the velocity of one step carries into the next."""
    train_set = images(12)
    kwargs = dict(
        layers=[784, 5, 10],
        activation="tanh",
        loss="cross_entropy",
        lr=0.3,
        seed=4,
        epochs=1,
        batch_size=4,
        momentum=0.9,
        weight_decay=0.01,
        lr_schedule="constant",
        dtype="float64",
    )
    after = mlp.train(train_set, train_set, **kwargs)["params"]
    rng = np.random.default_rng(4)
    expected = mlp.init_params([784, 5, 10], rng, "float64", "tanh")
    velocity = [(np.zeros_like(W), np.zeros_like(b)) for W, b in expected]
    order = rng.permutation(12)
    for step in range(3):
        batch = order[4 * step : 4 * step + 4]
        X, y = train_set[0][batch] / 255.0, train_set[1][batch].astype(int)
        _, grads = reference.mlp_loss_and_grads(expected, X, y, "tanh", "cross_entropy")
        expected, velocity = reference.sgd_momentum(expected, velocity, grads, 0.3, 0.9, 0.01)
    for layer, ((W, b), (rW, rb)) in enumerate(zip(after, expected, strict=True)):
        np.testing.assert_allclose(W, rW, rtol=1e-12, atol=1e-15, err_msg=f"W{layer + 1} differs")
        np.testing.assert_allclose(b, rb, rtol=1e-12, atol=1e-15, err_msg=f"b{layer + 1} differs")


BAD_INPUT = [
    (
        lambda s: ({"images": s[0]}, s),
        {},
        r"train_set: expected a pair \(images, labels\), found a dict",
    ),
    (lambda s: (s, None), {}, r"test_set: expected a pair \(images, labels\), found a NoneType"),
    (
        lambda s: ((s[0] / 255, s[1]), s),
        {},
        r"train_set\[0\]: expected uint8 images of shape \(N, 784\)",
    ),
    (lambda s: ((s[0].reshape(-1, 28, 28), s[1]), s), {}, r"found uint8 \(40, 28, 28\)"),
    (lambda s: (s, (s[0][:0], s[1][:0])), {}, r"test_set: expected at least one image, found none"),
    (
        lambda s: ((s[0], s[1][:20]), s),
        {},
        r"train_set\[1\]: expected 40 integer labels, one per image",
    ),
    (lambda s: (s, (s[0], s[1] + 0.5)), {}, r"test_set\[1\]: expected 40 integer labels"),
    (
        lambda s: ((s[0], s[1] + 9), s),
        {},
        r"train_set\[1\]: expected labels in 0\.\.9, found 9\.\.18",
    ),
    (lambda s: (s, s), {"lr": -1.0}, r"lr: expected a finite number > 0, found -1\.0"),
    (lambda s: (s, s), {"lr": "0.1"}, r"lr: expected a finite number > 0, found '0\.1'"),
    (lambda s: (s, s), {"seed": -1}, r"seed: expected an integer >= 0, found -1"),
    (lambda s: (s, s), {"seed": 1.5}, r"seed: expected an integer >= 0, found 1\.5"),
]


@pytest.mark.parametrize("family", [mlp, cnn], ids=["mlp", "cnn"])
@pytest.mark.parametrize(("sets", "changes", "message"), BAD_INPUT)
def test_bad_training_input_is_named(family, sets, changes, message):
    """What the trainers take from a Python caller, checked before any work: each data set,
    its images and labels, lr and seed, named with what was expected."""
    train_set, test_set = sets(images(40))
    arguments = {"lr": 0.1, "seed": 0} | changes
    with pytest.raises(ValueError, match=message):
        family.train(train_set, test_set, epochs=1, batch_size=8, **arguments)


def test_training_learns_and_is_deterministic():
    train_set, test_set = images(512, 1), images(128, 2)
    kwargs = dict(
        layers=[784, 32, 10],
        activation="relu",
        loss="cross_entropy",
        lr=0.03,
        seed=0,
        epochs=4,
        batch_size=50,
        log_every=11,
    )
    first = mlp.train(train_set, test_set, **kwargs)
    second = mlp.train(train_set, test_set, **kwargs)
    assert first["history"] == second["history"]
    assert first["steps"] == second["steps"]
    losses = [row["train_loss"] for row in first["history"]]
    assert losses[-1] < losses[0] / 4, f"train loss did not fall: {losses}"
    assert first["history"][-1]["test_accuracy"] > 0.6
    assert not first["diverged"]
    # 512 samples in batches of 50: 11 steps an epoch, the last one short.
    assert [s["step"] for s in first["steps"]][:3] == [0, 11, 22]
    third = mlp.train(train_set, test_set, **{**kwargs, "seed": 1})
    assert third["history"] != first["history"]


def test_cosine_schedule():
    rates = training.learning_rates(0.1, "cosine", 4, "float64")
    np.testing.assert_allclose(
        rates, [0.1, 0.1 * (1 + np.cos(np.pi / 4)) / 2, 0.05, 0.1 * (1 + np.cos(3 * np.pi / 4)) / 2]
    )
    assert (training.learning_rates(0.1, "constant", 3, "float32") == np.float32(0.1)).all()
    with pytest.raises(ValueError, match="schedule: expected one of"):
        training.learning_rates(0.1, "linear", 3, "float32")


def test_divergence_stops_and_is_marked():
    train_set = images(256, 3)
    result = mlp.train(
        train_set,
        train_set,
        layers=[784, 32, 10],
        activation="relu",
        loss="cross_entropy",
        lr=50.0,
        seed=0,
        epochs=5,
        batch_size=32,
    )
    assert result["diverged"]
    assert result["steps"][-1]["step"] == result["diverged_step"]
    assert result["steps"][-1]["batch_loss"] > 10 * result["steps"][0]["batch_loss"]
    assert len(result["history"]) < 5


def test_non_finite_loss_is_divergence():
    train_set = images(64, 3)
    result = mlp.train(
        train_set,
        train_set,
        layers=[784, 8, 10],
        activation="relu",
        loss="cross_entropy",
        lr=1e30,
        seed=0,
        epochs=3,
        batch_size=16,
        dtype="float32",
        divergence_threshold=1e300,
    )
    assert result["diverged"]
    assert not np.isfinite(result["steps"][-1]["batch_loss"])


def test_an_infinite_loss_is_divergence_even_below_an_infinite_limit():
    # The limit is inf before the first batch, and divergence_threshold times the first loss
    # may overflow to inf: an infinite loss must still count.
    inf, nan = math.inf, math.nan
    for loss, limit in [(inf, inf), (inf, 1e300), (nan, inf), (3.0, 2.0)]:
        assert training.blown_up(loss, limit), (loss, limit)
    for loss, limit in [(2.0, 2.0), (1e300, inf)]:
        assert not training.blown_up(loss, limit), (loss, limit)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p, X, y: mlp.loss_and_grads(p, X[:, :5], y), r"X: expected shape \(N, 12\)"),
        (lambda p, X, y: mlp.predict(p, X[:0]), r"X: expected .* with N >= 1, found \(0, 12\)"),
        (lambda p, X, y: mlp.predict(p, np.where(X > 0, np.nan, X)), "X: expected finite"),
        (lambda p, X, y: mlp.predict(p, X.astype(str)), "X: expected real numbers, found <U"),
        (lambda p, X, y: mlp.predict(p, X > 0), "X: expected real numbers, found bool"),
        (lambda p, X, y: mlp.predict(p, X + 0j), "X: expected real numbers, found complex128"),
        (lambda p, X, y: mlp.loss_and_grads(p, X, y + 10), r"y: expected labels in 0\.\.3, f"),
        (lambda p, X, y: mlp.loss_and_grads(p, X, y + 0.5), "y: expected 6 integer labels"),
        (lambda p, X, y: mlp.loss_and_grads(p, X, None), "y: expected 6 .*, found None"),
        (
            lambda p, X, y: mlp.predict(5, X),
            r"params: expected a list of \(W, b\) pairs, .*found 5",
        ),
        (lambda p, X, y: mlp.loss_and_grads(p, X, y, "gelu"), "activation: expected one of"),
        (lambda p, X, y: mlp.loss_and_grads(p, X, y, "relu", "hinge"), "loss: expected one of"),
    ],
)
def test_bad_arguments_are_named(call, message):
    params, X, y = problem("relu")
    with pytest.raises(ValueError, match=message):
        call(params, X, y)


def test_a_batch_may_be_given_as_lists():
    params, X, y = problem("relu")
    loss, _ = mlp.loss_and_grads(params, X.tolist(), y.tolist())
    assert loss == mlp.loss_and_grads(params, X, y)[0]
    assert np.array_equal(mlp.predict(params, X.tolist()), mlp.predict(params, X))


def test_batch_larger_than_training_set_is_rejected():
    with pytest.raises(ValueError, match=r"batch_size: expected 1\.\.10, found 64"):
        mlp.train(
            images(10),
            images(10),
            layers=[784, 4, 10],
            activation="relu",
            loss="cross_entropy",
            lr=0.1,
            seed=0,
            epochs=1,
            batch_size=64,
        )
