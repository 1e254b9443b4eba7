"""The CNN: each kernel against tests/reference.py's NumPy layers, every gradient against central
finite differences, the public API, bad layer lists named, training reproducible and thread-
independent, the augmentation's geometry and the onecycle schedule."""

import math
import os
import platform
import subprocess
import sys

import numba
import numpy as np
import pytest

from jitprop import cnn, cnn_net, data, training
from jitprop import cnn_layers as kernels
from jitprop.cnn_net import Buffer, Network, Pass

import reference
from helpers import need_two_threads

EXAMPLE = [  # the example network
    {"conv": {"out": 8, "kernel": 3}},
    "relu",
    "batchnorm",
    {"dropout": 0.05},
    {"maxpool": 2},
    {"conv": {"out": 16, "kernel": 3, "padding": 1, "bias": True}},
    "relu",
    "gap",
    {"linear": 10},
]
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


def cnhw(x):
    """A batch-major (N, C, H, W) array as the kernels' channel-major (C, N, H, W)."""
    return np.ascontiguousarray(x.transpose(1, 0, 2, 3))


batch_major = cnhw  # and back: swapping the first two axes undoes itself


@pytest.mark.kernel
@pytest.mark.parametrize(
    ("k", "padding", "bias"),
    [(3, 0, False), (3, 1, True), (1, 0, True), (5, 2, False), (2, 0, True)],
)
def test_conv_kernels_match_reference(k, padding, bias):
    rng = np.random.default_rng(k * 10 + padding)
    x = rng.normal(size=(3, 2, 9, 8))
    W = rng.normal(size=(5, 2, k, k))
    b = rng.normal(size=5) if bias else np.zeros(5)
    expected = reference.conv_forward(x, W, b, padding)
    xp = np.zeros((2, 3, 9 + 2 * padding, 8 + 2 * padding))
    kernels.pad(xp, cnhw(x), padding)
    out = np.empty((5, 3, *expected.shape[2:]))
    kernels.conv_forward(out, xp, W, b)
    np.testing.assert_allclose(
        batch_major(out), expected, rtol=1e-12, atol=1e-12, err_msg="conv_forward differs"
    )
    dout = rng.normal(size=expected.shape)
    ref_dx, ref_dW, ref_db = reference.conv_backward(dout, x, W, padding)
    dW, db = np.empty_like(W), np.empty(5)
    scratch = kernels.backward_params_scratch(5, xp.shape, k, np.float64)
    kernels.conv_backward_params(dW, db, cnhw(dout), xp, *scratch)
    np.testing.assert_allclose(dW, ref_dW, rtol=1e-12, atol=1e-12, err_msg="dW differs")
    np.testing.assert_allclose(db, ref_db, rtol=1e-12, atol=1e-12, err_msg="db differs")
    # The input gradient, as the network computes it: the output gradient conv_backward_params
    # left in its scratch, correlated with the turned, transposed kernel.
    dxp = np.full_like(xp, np.nan)
    kernels.conv_backward_input(dxp, scratch[0], W)
    dx = np.empty((2, 3, 9, 8))
    kernels.unpad(dx, dxp, padding)
    np.testing.assert_allclose(
        batch_major(dx), ref_dx, rtol=1e-12, atol=1e-12, err_msg="dx differs"
    )


# The sums in registers against the sums in memory, bit for bit, in a fresh process: for this
# machine, and for x86-64 without FMA, where both must multiply and add unfused.
REGISTERS_VS_MEMORY = """
import numba, numpy as np
from jitprop import cnn_layers as kernels

@numba.njit
def taps_sums(parts, d, src, Wp, s0, s1):
    kernels._taps_sums(parts, d, src, Wp, s0, s1)

@numba.njit(fastmath=kernels.FMA)
def forward_taps(sums, flat, w, start, Wp):
    kernels._forward_taps(sums, flat, w, start, Wp)

def bits(a):
    return a.view(f"u{a.itemsize}")

rng = np.random.default_rng(3)
R, Wp, stretches = kernels.ROWS, 11, 12
for dtype in (np.float32, np.float64):
    d = rng.normal(size=(3, stretches * R + 64)).astype(dtype)[1:]  # rows longer than summed
    src = rng.normal(size=stretches * R + 2 * Wp + 3).astype(dtype)
    expected = np.zeros((2, 3, 3, R), dtype)
    for j in range(2):
        for first in range(0, stretches * R, 4 * R):
            kernels._block_parts(expected[j], d[j], src, first, Wp)
    parts = np.zeros_like(expected)
    taps_sums(parts, d, src, Wp, 0, 5)  # in two calls, as conv_backward_params' tiles go
    taps_sums(parts, d, src, Wp, 5, stretches)
    print("dW", np.array_equal(bits(parts), bits(expected)))
    flat = rng.normal(size=(5, 400)).astype(dtype)
    w = rng.normal(size=(4, 5, 3, 3)).astype(dtype)
    start, L = 7, 301  # whole steps of vectors, then a tail
    expected = np.tile(rng.normal(size=(4, 1)).astype(dtype), L)
    sums = expected.copy()
    for ci in range(5):
        kernels._nine_taps(*expected, flat[ci], start, Wp, w[:, ci].reshape(4, 9).copy())
    forward_taps(sums, flat, w, start, Wp)
    print("forward", np.array_equal(bits(sums), bits(expected)))
"""


@pytest.mark.parametrize("target", ["host", "x86-64 without FMA"])
def test_sums_in_registers_are_the_sums_in_memory_bit_for_bit(target, tmp_path):
    """A 3 x 3 kernel's sums go in registers (_taps_sums, _forward_taps), other kernels' in
    memory (_block_parts, _one_tap), and the tails of the forward pass through _nine_taps; all
    must give the same bits, or a network's trained bits would depend on its kernel sizes'
    code paths and its batch's length.  Fails if the registers add unfused where the memory
    loops fuse, or the other way round.  Not a `kernel` test: without the JIT, the stand-ins
    round each product before adding it."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("NUMBA_CPU")}
    env["NUMBA_CACHE_DIR"] = str(tmp_path)
    if target != "host":
        if platform.machine() != "x86_64":
            pytest.skip("an x86-64 target")  # never skips on the CI's x86-64 machines
        env["NUMBA_CPU_NAME"] = "generic"  # x86-64's baseline: SSE2, no FMA
    done = subprocess.run(
        [sys.executable, "-c", REGISTERS_VS_MEMORY], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["dW", "True", "forward", "True"] * 2, done.stdout


@numba.njit
def taps_sums(parts, d, src, Wp, s0, s1):
    kernels._taps_sums(parts, d, src, Wp, s0, s1)


def test_sums_in_registers_refuse_arrays_they_would_misread():
    R = kernels.ROWS
    parts, src = np.zeros((2, 3, 3, R)), np.zeros(9 * R)
    for d in (np.zeros((2, 8 * R), np.float32), np.zeros((2, 16 * R))[:, ::2]):
        with pytest.raises(numba.core.errors.TypingError, match="C-contiguous float32 or float64"):
            taps_sums(parts, d, src, 5, 0, 1)


@numba.njit
def copy_span(dst, dst_at, src, src_at, width, span):
    kernels._copy_span(dst, dst_at, src, src_at, width, span)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_copy_span_copies_then_zeros_and_writes_nothing_else(dtype):
    """The convolutions' row copies, a vector at a time with the last one masked, against the
    plain loop: spans shorter than, as long as and longer than a vector, none, and all zeros."""
    rng = np.random.default_rng(4)
    src = rng.normal(size=60).astype(dtype)
    for width, span in [(0, 0), (0, 5), (5, 5), (5, 7), (16, 16), (17, 40), (31, 33), (40, 40)]:
        expected = np.full(50, np.nan, dtype)
        kernels._copy_span(expected, 3, src, 11, width, span)  # the plain Python stand-in
        assert np.isnan(expected[:3]).all()
        assert np.isnan(expected[3 + span :]).all()
        dst = np.full(50, np.nan, dtype)
        copy_span(dst, 3, src, 11, width, span)
        np.testing.assert_array_equal(dst, expected, err_msg=f"width {width}, span {span}")
    with pytest.raises(numba.core.errors.TypingError, match="C-contiguous float32 or float64"):
        copy_span(np.zeros(8, dtype), 0, np.zeros(16, dtype)[::2], 0, 8, 8)


@numba.njit
def unpool_row(dst, top, grad, where, at, Wo):
    kernels._unpool_row(dst, top, grad, where, at, Wo)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unpool_row_puts_each_gradient_at_its_argmax_and_writes_nothing_else(dtype):
    """max pooling's backward pass, a vector of windows at a time, against the plain loop, for
    rows of fewer windows than a vector has lanes, as many, and more."""
    rng = np.random.default_rng(5)
    grad = rng.normal(size=80).astype(dtype)
    where = rng.integers(0, 4, size=80).astype(np.uint16)
    for Wo in (1, 6, 8, 16, 17, 33):
        expected = np.full(200, np.nan, dtype)
        kernels._unpool_row(expected, 5, grad, where, 7, Wo)  # the plain Python stand-in
        assert np.isnan(expected[:5]).all()
        assert np.isnan(expected[5 + 4 * Wo :]).all()
        rows = expected[5 : 5 + 4 * Wo].reshape(2, Wo, 2)  # (window row, window, column)
        assert (np.count_nonzero(rows, axis=(0, 2)) == 1).all()
        dst = np.full(200, np.nan, dtype)
        unpool_row(dst, 5, grad, where, 7, Wo)
        np.testing.assert_array_equal(dst, expected, err_msg=f"Wo {Wo}")
    with pytest.raises(numba.core.errors.TypingError, match="takes uint16 argmaxes"):
        unpool_row(np.zeros(8, dtype), 0, grad, where.astype(np.int32), 0, 2)
    with pytest.raises(numba.core.errors.TypingError, match="C-contiguous float32 or float64"):
        unpool_row(np.zeros(16, dtype)[::2], 0, grad, where, 0, 2)


def test_kernel_arrays_start_on_cache_lines():
    """Activations and dW's scratch rows start at multiples of 64 bytes, so that no vector the
    kernels load from them crosses two cache lines (NumPy's large arrays start 16 bytes in)."""
    for dtype in (np.float32, np.float64):
        d, flats = kernels.backward_params_scratch(5, (3, 4, 9, 11), 3, dtype)
        for rows in (d, flats):
            assert not rows.any()
            assert [row.ctypes.data % 64 for row in rows] == [0] * len(rows)
        network = Network(EXAMPLE, dtype)
        work = Pass(network, 130)
        extra = [v for layer in work.extra for v in layer.values() if isinstance(v, Buffer)]
        buffers = [*work.acts, *work.dacts, *extra]
        assert len(extra) == 2  # the padded conv's xp and dxp
        assert [buffer.data.ctypes.data % 64 for buffer in buffers] == [0] * len(buffers)


@pytest.mark.kernel
def test_conv_backward_on_a_short_batch_in_a_long_scratch():
    """A scratch sized for batches of 6 holds a batch of 2 without stale values leaking in,
    into dW, db or the input gradient conv_backward_input reads from it."""
    rng = np.random.default_rng(1)
    scratch = kernels.backward_params_scratch(5, (3, 6, 7, 7), 3, np.float64)
    for B in (6, 2):
        x, dout, W = (
            rng.normal(size=(B, 3, 7, 7)),
            rng.normal(size=(B, 5, 5, 5)),
            rng.normal(size=(5, 3, 3, 3)),
        )
        dW, db, dx = np.empty_like(W), np.empty(5), np.full((3, B, 7, 7), np.nan)
        kernels.conv_backward_params(dW, db, cnhw(dout), cnhw(x), *scratch)
        kernels.conv_backward_input(dx, scratch[0], W)
        ref_dx, ref_dW, ref_db = reference.conv_backward(dout, x, W, 0)
        np.testing.assert_allclose(dW, ref_dW, rtol=1e-12, err_msg=f"dW differs at B={B}")
        np.testing.assert_allclose(db, ref_db, rtol=1e-12, err_msg=f"db differs at B={B}")
        np.testing.assert_allclose(batch_major(dx), ref_dx, rtol=1e-12, err_msg=f"dx at B={B}")


# batchnorm_forward's and batchnorm_backward's arguments for no layer done in their passes.
NO_DROPOUT = np.empty(0, np.uint8), np.uint64(0), (0, 1.0)
NO_FUSION = np.empty(0, np.uint8), 1.0, False


@pytest.mark.kernel
def test_batchnorm_kernels_match_reference():
    rng = np.random.default_rng(2)
    x = rng.normal(2.0, 3.0, size=(4, 3, 5, 6))
    gamma, beta = rng.normal(size=3), rng.normal(size=3)
    expected, cache = reference.batchnorm_forward(x, gamma, beta)
    y, batch_mean, inv_std = np.empty((3, 4, 5, 6)), np.empty(3), np.empty(3)
    mean, var = np.zeros(3), np.ones(3)
    kernels.batchnorm_forward(
        y, batch_mean, inv_std, cnhw(x), gamma, beta, mean, var, 0.1, 1e-5, *NO_DROPOUT
    )
    np.testing.assert_allclose(
        batch_major(y), expected, rtol=1e-12, atol=1e-12, err_msg="batchnorm y differs"
    )
    # Running statistics as PyTorch keeps them: the unbiased variance, momentum 0.1.
    M = 4 * 5 * 6
    np.testing.assert_allclose(mean, 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(var, 0.9 + 0.1 * x.var(axis=(0, 2, 3)) * M / (M - 1), rtol=1e-12)
    dy = rng.normal(size=x.shape)
    ref_dx, ref_dgamma, ref_dbeta = reference.batchnorm_backward(dy, cache, gamma)
    dx, dgamma, dbeta = np.empty((3, 4, 5, 6)), np.empty(3), np.empty(3)
    saved = cnhw(x), batch_mean, inv_std
    kernels.batchnorm_backward(dx, dgamma, dbeta, cnhw(dy), *saved, gamma, *NO_FUSION)
    np.testing.assert_allclose(
        batch_major(dx), ref_dx, rtol=1e-10, atol=1e-12, err_msg="batchnorm dx differs"
    )
    np.testing.assert_allclose(dgamma, ref_dgamma, rtol=1e-12, err_msg="dgamma differs")
    np.testing.assert_allclose(dbeta, ref_dbeta, rtol=1e-12, err_msg="dbeta differs")
    evaluated = np.empty((3, 4, 5, 6))
    kernels.batchnorm_evaluate(evaluated, cnhw(x), gamma, beta, mean, var, 1e-5)
    by_hand = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(
        batch_major(evaluated),
        gamma[None, :, None, None] * by_hand + beta[None, :, None, None],
        rtol=1e-12,
        err_msg="batchnorm_evaluate differs",
    )


@pytest.mark.kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layers", ["relu and dropout", "dropout", "relu"])
def test_batchnorm_does_the_dropout_after_and_the_relu_before_as_their_kernels_do(dtype, layers):
    # The network's relu -> batchnorm -> dropout: batch norm's kernels do the dropout's passes
    # and the relu's backward pass in theirs, and must give their kernels' bits.
    rng = np.random.default_rng(5)
    x = np.maximum(rng.normal(0.3, 1.0, size=(3, 4, 5, 6)), 0).astype(dtype)  # a relu's output
    gamma, beta = rng.normal(size=3).astype(dtype), rng.normal(size=3).astype(dtype)
    key, threshold, scale = np.uint64(12345), int(0.3 * 2**32), dtype(1 / 0.7)
    dropout, relu = "dropout" in layers, "relu" in layers
    results, dy = [], rng.normal(size=x.shape).astype(dtype)
    for fused in (False, True):
        y, batch_mean, inv_std = np.empty_like(x), np.empty(3), np.empty(3)
        mask, stats = np.ones(x.size, np.uint8), (gamma, beta, np.zeros(3), np.ones(3), 0.1, 1e-5)
        drop = (mask, key, (threshold, scale)) if fused and dropout else NO_DROPOUT
        kernels.batchnorm_forward(y, batch_mean, inv_std, x, *stats, *drop)
        if dropout and not fused:
            kernels.dropout_forward(y.reshape(-1), mask, key, threshold, scale)
        dx, dgamma, dbeta = np.empty_like(x), np.empty(3, dtype), np.empty(3, dtype)
        saved = x, batch_mean, inv_std  # what the backward pass reads of the forward's
        if fused:
            fusion = (mask if dropout else NO_FUSION[0], scale, relu)
            kernels.batchnorm_backward(dx, dgamma, dbeta, dy, *saved, gamma, *fusion)
        else:
            dropped = dy.copy()
            if dropout:
                kernels.dropout_backward(dropped.reshape(-1), mask, scale)
            kernels.batchnorm_backward(dx, dgamma, dbeta, dropped, *saved, gamma, *NO_FUSION)
            if relu:
                kernels.relu_backward(dx.reshape(-1), x.reshape(-1))
        results.append((y, mask, dx, dgamma, dbeta))
    assert not dropout or 0.6 < results[0][1].mean() < 0.8  # the dropout at work,
    assert (x == 0).mean() > 0.3  # and the relu's gate, where it is used
    for name, apart, together in zip("y mask dx dgamma dbeta".split(), *results, strict=True):
        np.testing.assert_array_equal(together, apart, err_msg=f"fused {name} differs")


def test_the_network_s_fused_passes_give_the_separate_kernels_bits():
    """cnn_net.Pass hands a dropout after a batch norm, and a relu's backward pass before one,
    to batch norm's kernels; with those pairs emptied it calls every layer's own kernel.  Both
    must give the same logits and gradients, bit for bit, with dropout at work."""
    layers = [{"conv": {"out": 4, "kernel": 3}}, "relu", "batchnorm", {"dropout": 0.3},
              {"conv": {"out": 5, "kernel": 3}}, "batchnorm", "relu", {"dropout": 0.2},
              {"maxpool": 2}, "gap", {"linear": 10}]  # fmt: skip
    network = cnn_net.Network(layers, "float32")
    theta = network.init(np.random.default_rng(0))
    params = network.views(theta)
    images, labels = np.random.default_rng(1).normal(size=(6, 28, 28)), np.arange(6)
    keys = np.random.default_rng(2).integers(0, 2**32, len(layers), dtype=np.uint64)
    results = []
    for fused in (True, False):
        work = cnn_net.Pass(network, 6)
        assert work.fused_dropouts == {3}  # the pairs it finds: batchnorm -> dropout,
        assert work.relus_before_batchnorm == {1}  # relu -> batchnorm
        if not fused:
            work.fused_dropouts, work.relus_before_batchnorm = set(), set()
        work.input(6)[0] = images
        stats, grad = network.new_stats(), np.zeros_like(theta)
        logits = work.forward(params, stats, 6, True, keys).copy()
        work.loss(logits, labels)
        work.backward(params, network.views(grad), 6, keys)
        results.append((logits, grad))
    np.testing.assert_array_equal(results[0][0], results[1][0], err_msg="logits differ")
    np.testing.assert_array_equal(results[0][1], results[1][1], err_msg="gradients differ")


@pytest.mark.kernel
def test_dropout_keeps_one_minus_p_with_the_documented_hash():
    p, key = 0.3, 987654321
    threshold, scale = int(p * 2**32), 1 / (1 - p)
    x = np.ones(200_000)
    mask = np.empty(x.size, np.uint8)
    kernels.dropout_forward(x, mask, key, threshold, scale)
    # Binomial: 5 standard deviations of the kept fraction.
    assert abs(mask.mean() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / x.size)
    np.testing.assert_array_equal(x, np.where(mask, scale, 0.0))
    for i in (0, 1, 17, 199_999):
        kept = reference.lowbias32(reference.lowbias32(i) ^ key) >= threshold
        assert bool(mask[i]) == kept, f"mask differs from the documented hash at {i}"
    dx = np.full(x.size, 2.0)
    kernels.dropout_backward(dx, mask, scale)
    np.testing.assert_array_equal(dx, 2 * x, err_msg="dropout backward uses another mask")


@pytest.mark.kernel
def test_maxpool_gap_and_layout_kernels_match_reference():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, size=(2, 3, 6, 4)).astype(float)  # many ties
    expected, where = reference.maxpool_forward(x, 2)
    out, argmax = np.empty((3, 2, 3, 2)), np.empty((3, 2, 3, 2), np.uint16)
    kernels.maxpool_forward(out, argmax, cnhw(x), 2)
    np.testing.assert_array_equal(batch_major(out), expected, err_msg="maxpool differs")
    np.testing.assert_array_equal(batch_major(argmax), where, err_msg="maxpool ties differ")
    dout = rng.normal(size=expected.shape)
    dx = np.empty((3, 2, 6, 4))
    kernels.maxpool_backward(dx, cnhw(dout), argmax, 2)
    np.testing.assert_array_equal(
        batch_major(dx), reference.maxpool_backward(dout, where, 2, x.shape)
    )
    # Windows that leave a column over (kernels called directly; layers refuse them): the
    # gradient is the same, and zero in that column.
    wider = np.full((3, 2, 6, 5), np.nan)
    kernels.maxpool_backward(wider, cnhw(dout), argmax, 2)
    np.testing.assert_array_equal(wider, np.pad(dx, ((0, 0), (0, 0), (0, 0), (0, 1))))
    out3, where3 = np.empty((3, 2, 2, 1)), np.empty((3, 2, 2, 1), np.uint16)
    kernels.maxpool_forward(out3, where3, cnhw(x[:, :, :6, :3]), 3)
    expected3, ties3 = reference.maxpool_forward(x[:, :, :6, :3], 3)
    np.testing.assert_array_equal(batch_major(out3), expected3)
    np.testing.assert_array_equal(batch_major(where3), ties3, err_msg="3x3 maxpool ties differ")
    # A NaN wins its window wherever it is (PyTorch's rule), in both kinds of loop.
    for k in (2, 3):
        poisoned = x[:, :, :6, :3].copy() if k == 3 else x.copy()
        poisoned[1, 2, k - 1, 1] = np.nan
        pooled = np.empty((3, 2, 6 // k, poisoned.shape[3] // k))
        kernels.maxpool_forward(pooled, np.empty(pooled.shape, np.uint16), cnhw(poisoned), k)
        np.testing.assert_array_equal(
            np.isnan(batch_major(pooled)), np.isnan(reference.maxpool_forward(poisoned, k)[0])
        )
    means = np.empty((2, 3))
    kernels.gap_forward(means, cnhw(x))
    np.testing.assert_allclose(means, x.mean(axis=(2, 3)), rtol=1e-12)
    dmeans = rng.normal(size=(2, 3))
    dgap = np.empty((3, 2, 6, 4))
    kernels.gap_backward(dgap, dmeans)
    np.testing.assert_allclose(
        batch_major(dgap), np.broadcast_to(dmeans[:, :, None, None] / 24, x.shape)
    )
    rows = np.empty((2, 72))
    kernels.maps_to_rows(rows, cnhw(x))
    np.testing.assert_array_equal(rows, x.reshape(2, 72), err_msg="flattening is not (c, y, x)")
    back = np.empty((3, 2, 6, 4))
    kernels.rows_to_maps(back, rows)
    np.testing.assert_array_equal(batch_major(back), x)


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
