"""The CNN's kernels (jitprop.kernels.conv, conv_loops, maps, vectors): each against
tests/reference.py's NumPy layers or plain loops, the loops in LLVM IR against their plain
stand-ins bit for bit, the fused passes against the separate kernels, and the helpers' refusals."""

import math
import os
import platform
import subprocess
import sys

import numba
import numpy as np
import pytest

from jitprop import cnn_net
from jitprop.cnn_net import Buffer, Network, Pass
from jitprop.kernels import conv, conv_loops, maps, vectors

import reference
from helpers import EXAMPLE, cnhw


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
    conv.pad(xp, cnhw(x), padding)
    out = np.empty((5, 3, *expected.shape[2:]))
    conv.conv_forward(out, xp, W, b)
    np.testing.assert_allclose(
        cnhw(out), expected, rtol=1e-12, atol=1e-12, err_msg="conv_forward differs"
    )
    dout = rng.normal(size=expected.shape)
    ref_dx, ref_dW, ref_db = reference.conv_backward(dout, x, W, padding)
    dW, db = np.empty_like(W), np.empty(5)
    scratch = conv.backward_params_scratch(5, xp.shape, k, np.float64)
    conv.conv_backward_params(dW, db, cnhw(dout), xp, *scratch)
    np.testing.assert_allclose(dW, ref_dW, rtol=1e-12, atol=1e-12, err_msg="dW differs")
    np.testing.assert_allclose(db, ref_db, rtol=1e-12, atol=1e-12, err_msg="db differs")
    # The input gradient, as the network computes it: the output gradient conv_backward_params
    # left in its scratch, correlated with the turned, transposed kernel.
    dxp = np.full_like(xp, np.nan)
    conv.conv_backward_input(dxp, scratch[0], W)
    dx = np.empty((2, 3, 9, 8))
    conv.unpad(dx, dxp, padding)
    np.testing.assert_allclose(cnhw(dx), ref_dx, rtol=1e-12, atol=1e-12, err_msg="dx differs")


# tests/reference.py's plain loops, compiled as the kernels are (multiply-adds fused).
plain_conv_forward = numba.njit(fastmath=vectors.FMA)(reference.conv_forward_one_at_a_time)
plain_conv_dW = numba.njit(fastmath=vectors.FMA)(reference.conv_backward_params_running_sum)


@pytest.mark.kernel
@pytest.mark.parametrize("k", [3, 5, 2])  # the nine-tap pass, and the one-tap pass
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_wide_rows_give_the_plain_loops_bits(k, dtype):
    """The forward pass adds the plain loop's terms in its order, so it gives its bits; dW adds
    them in parts and trees, so it gives its sums to rounding.  (The plain loops are also
    benchmarks/cnn_conv.py's baseline.)"""
    rng = np.random.default_rng(k)
    xp = np.zeros((3, 4, 11, 11), dtype)
    xp[:, :, 1:10, 1:10] = rng.normal(size=(3, 4, 9, 9))  # padded by 1
    W, b = rng.normal(size=(5, 3, k, k)).astype(dtype), rng.normal(size=5).astype(dtype)
    out, plain = (np.empty((5, 4, 12 - k, 12 - k), dtype) for _ in range(2))
    conv.conv_forward(out, xp, W, b)
    plain_conv_forward(plain, xp, W, b)
    np.testing.assert_array_equal(plain, out, err_msg="conv_forward differs from the plain loop")
    dout = rng.normal(size=out.shape).astype(dtype)
    dW, plain_dW = np.empty_like(W), np.empty_like(W)
    scratch = conv.backward_params_scratch(5, xp.shape, k, dtype)
    conv.conv_backward_params(dW, np.empty(0, dtype), dout, xp, *scratch)
    plain_conv_dW(plain_dW, dout, xp)
    tolerance = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(plain_dW, dW, rtol=tolerance, atol=tolerance, err_msg="dW")


# The sums in registers against the sums in memory, bit for bit, in a fresh process: for this
# machine, and for x86-64 without FMA, where both must multiply and add unfused.
REGISTERS_VS_MEMORY = """
import numba, numpy as np
from jitprop.kernels import conv, conv_loops, maps, vectors

@numba.njit
def taps_sums(parts, d, src, Wp, s0, s1):
    conv_loops.taps_sums(parts, d, src, Wp, s0, s1)

@numba.njit(fastmath=vectors.FMA)
def forward_taps(sums, flat, w, start, Wp):
    conv_loops.forward_taps(sums, flat, w, start, Wp)

def bits(a):
    return a.view(f"u{a.itemsize}")

rng = np.random.default_rng(3)
R, Wp, stretches = conv_loops.STRETCH, 11, 12
for dtype in (np.float32, np.float64):
    d = rng.normal(size=(3, stretches * R + 64)).astype(dtype)[1:]  # rows longer than summed
    src = rng.normal(size=stretches * R + 2 * Wp + 3).astype(dtype)
    expected = np.zeros((2, 3, 3, R), dtype)
    for j in range(2):
        for first in range(0, stretches * R, 4 * R):
            conv_loops.block_parts(expected[j], d[j], src, first, Wp)
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
        conv_loops._nine_taps(*expected, flat[ci], start, Wp, w[:, ci].reshape(4, 9).copy())
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
    conv_loops.taps_sums(parts, d, src, Wp, s0, s1)


def test_sums_in_registers_refuse_arrays_they_would_misread():
    R = conv_loops.STRETCH
    parts, src = np.zeros((2, 3, 3, R)), np.zeros(9 * R)
    for d in (np.zeros((2, 8 * R), np.float32), np.zeros((2, 16 * R))[:, ::2]):
        with pytest.raises(numba.core.errors.TypingError, match="C-contiguous float32 or float64"):
            taps_sums(parts, d, src, 5, 0, 1)


@numba.njit
def copy_span(dst, dst_at, src, src_at, width, span):
    vectors.copy_span(dst, dst_at, src, src_at, width, span)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_copy_span_copies_then_zeros_and_writes_nothing_else(dtype):
    """The convolutions' row copies, a vector at a time with the last one masked, against the
    plain loop: spans shorter than, as long as and longer than a vector, none, and all zeros."""
    rng = np.random.default_rng(4)
    src = rng.normal(size=60).astype(dtype)
    for width, span in [(0, 0), (0, 5), (5, 5), (5, 7), (16, 16), (17, 40), (31, 33), (40, 40)]:
        expected = np.full(50, np.nan, dtype)
        vectors.copy_span(expected, 3, src, 11, width, span)  # the plain Python stand-in
        assert np.isnan(expected[:3]).all()
        assert np.isnan(expected[3 + span :]).all()
        dst = np.full(50, np.nan, dtype)
        copy_span(dst, 3, src, 11, width, span)
        np.testing.assert_array_equal(dst, expected, err_msg=f"width {width}, span {span}")
    with pytest.raises(numba.core.errors.TypingError, match="C-contiguous float32 or float64"):
        copy_span(np.zeros(8, dtype), 0, np.zeros(16, dtype)[::2], 0, 8, 8)


@numba.njit
def unpool_row(dst, top, grad, where, at, Wo):
    maps._unpool_row(dst, top, grad, where, at, Wo)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unpool_row_puts_each_gradient_at_its_argmax_and_writes_nothing_else(dtype):
    """max pooling's backward pass, a vector of windows at a time, against the plain loop, for
    rows of fewer windows than a vector has lanes, as many, and more."""
    rng = np.random.default_rng(5)
    grad = rng.normal(size=80).astype(dtype)
    where = rng.integers(0, 4, size=80).astype(np.uint16)
    for Wo in (1, 6, 8, 16, 17, 33):
        expected = np.full(200, np.nan, dtype)
        maps._unpool_row(expected, 5, grad, where, 7, Wo)  # the plain Python stand-in
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
        d, flats = conv.backward_params_scratch(5, (3, 4, 9, 11), 3, dtype)
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
    scratch = conv.backward_params_scratch(5, (3, 6, 7, 7), 3, np.float64)
    for B in (6, 2):
        x, dout, W = (
            rng.normal(size=(B, 3, 7, 7)),
            rng.normal(size=(B, 5, 5, 5)),
            rng.normal(size=(5, 3, 3, 3)),
        )
        dW, db, dx = np.empty_like(W), np.empty(5), np.full((3, B, 7, 7), np.nan)
        conv.conv_backward_params(dW, db, cnhw(dout), cnhw(x), *scratch)
        conv.conv_backward_input(dx, scratch[0], W)
        ref_dx, ref_dW, ref_db = reference.conv_backward(dout, x, W, 0)
        np.testing.assert_allclose(dW, ref_dW, rtol=1e-12, err_msg=f"dW differs at B={B}")
        np.testing.assert_allclose(db, ref_db, rtol=1e-12, err_msg=f"db differs at B={B}")
        np.testing.assert_allclose(cnhw(dx), ref_dx, rtol=1e-12, err_msg=f"dx at B={B}")


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
    maps.batchnorm_forward(
        y, batch_mean, inv_std, cnhw(x), gamma, beta, mean, var, 0.1, 1e-5, *NO_DROPOUT
    )
    np.testing.assert_allclose(
        cnhw(y), expected, rtol=1e-12, atol=1e-12, err_msg="batchnorm y differs"
    )
    # Running statistics as PyTorch keeps them: the unbiased variance, momentum 0.1.
    M = 4 * 5 * 6
    np.testing.assert_allclose(mean, 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(var, 0.9 + 0.1 * x.var(axis=(0, 2, 3)) * M / (M - 1), rtol=1e-12)
    dy = rng.normal(size=x.shape)
    ref_dx, ref_dgamma, ref_dbeta = reference.batchnorm_backward(dy, cache, gamma)
    dx, dgamma, dbeta = np.empty((3, 4, 5, 6)), np.empty(3), np.empty(3)
    saved = cnhw(x), batch_mean, inv_std
    maps.batchnorm_backward(dx, dgamma, dbeta, cnhw(dy), *saved, gamma, *NO_FUSION)
    np.testing.assert_allclose(
        cnhw(dx), ref_dx, rtol=1e-10, atol=1e-12, err_msg="batchnorm dx differs"
    )
    np.testing.assert_allclose(dgamma, ref_dgamma, rtol=1e-12, err_msg="dgamma differs")
    np.testing.assert_allclose(dbeta, ref_dbeta, rtol=1e-12, err_msg="dbeta differs")
    evaluated = np.empty((3, 4, 5, 6))
    maps.batchnorm_evaluate(evaluated, cnhw(x), gamma, beta, mean, var, 1e-5)
    by_hand = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(
        cnhw(evaluated),
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
        maps.batchnorm_forward(y, batch_mean, inv_std, x, *stats, *drop)
        if dropout and not fused:
            maps.dropout_forward(y.reshape(-1), mask, key, threshold, scale)
        dx, dgamma, dbeta = np.empty_like(x), np.empty(3, dtype), np.empty(3, dtype)
        saved = x, batch_mean, inv_std  # what the backward pass reads of the forward's
        if fused:
            fusion = (mask if dropout else NO_FUSION[0], scale, relu)
            maps.batchnorm_backward(dx, dgamma, dbeta, dy, *saved, gamma, *fusion)
        else:
            dropped = dy.copy()
            if dropout:
                maps.dropout_backward(dropped.reshape(-1), mask, scale)
            maps.batchnorm_backward(dx, dgamma, dbeta, dropped, *saved, gamma, *NO_FUSION)
            if relu:
                maps.relu_backward(dx.reshape(-1), x.reshape(-1))
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
    maps.dropout_forward(x, mask, key, threshold, scale)
    # Binomial: 5 standard deviations of the kept fraction.
    assert abs(mask.mean() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / x.size)
    np.testing.assert_array_equal(x, np.where(mask, scale, 0.0))
    for i in (0, 1, 17, 199_999):
        kept = reference.lowbias32(reference.lowbias32(i) ^ key) >= threshold
        assert bool(mask[i]) == kept, f"mask differs from the documented hash at {i}"
    dx = np.full(x.size, 2.0)
    maps.dropout_backward(dx, mask, scale)
    np.testing.assert_array_equal(dx, 2 * x, err_msg="dropout backward uses another mask")


@pytest.mark.kernel
def test_maxpool_gap_and_layout_kernels_match_reference():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, size=(2, 3, 6, 4)).astype(float)  # many ties
    expected, where = reference.maxpool_forward(x, 2)
    out, argmax = np.empty((3, 2, 3, 2)), np.empty((3, 2, 3, 2), np.uint16)
    maps.maxpool_forward(out, argmax, cnhw(x), 2)
    np.testing.assert_array_equal(cnhw(out), expected, err_msg="maxpool differs")
    np.testing.assert_array_equal(cnhw(argmax), where, err_msg="maxpool ties differ")
    dout = rng.normal(size=expected.shape)
    dx = np.empty((3, 2, 6, 4))
    maps.maxpool_backward(dx, cnhw(dout), argmax, 2)
    np.testing.assert_array_equal(cnhw(dx), reference.maxpool_backward(dout, where, 2, x.shape))
    # Windows that leave a column over (kernels called directly; layers refuse them): the
    # gradient is the same, and zero in that column.
    wider = np.full((3, 2, 6, 5), np.nan)
    maps.maxpool_backward(wider, cnhw(dout), argmax, 2)
    np.testing.assert_array_equal(wider, np.pad(dx, ((0, 0), (0, 0), (0, 0), (0, 1))))
    out3, where3 = np.empty((3, 2, 2, 1)), np.empty((3, 2, 2, 1), np.uint16)
    maps.maxpool_forward(out3, where3, cnhw(x[:, :, :6, :3]), 3)
    expected3, ties3 = reference.maxpool_forward(x[:, :, :6, :3], 3)
    np.testing.assert_array_equal(cnhw(out3), expected3)
    np.testing.assert_array_equal(cnhw(where3), ties3, err_msg="3x3 maxpool ties differ")
    # A NaN wins its window wherever it is (PyTorch's rule), in both kinds of loop.
    for k in (2, 3):
        poisoned = x[:, :, :6, :3].copy() if k == 3 else x.copy()
        poisoned[1, 2, k - 1, 1] = np.nan
        pooled = np.empty((3, 2, 6 // k, poisoned.shape[3] // k))
        maps.maxpool_forward(pooled, np.empty(pooled.shape, np.uint16), cnhw(poisoned), k)
        np.testing.assert_array_equal(
            np.isnan(cnhw(pooled)), np.isnan(reference.maxpool_forward(poisoned, k)[0])
        )
    means = np.empty((2, 3))
    maps.gap_forward(means, cnhw(x))
    np.testing.assert_allclose(means, x.mean(axis=(2, 3)), rtol=1e-12)
    dmeans = rng.normal(size=(2, 3))
    dgap = np.empty((3, 2, 6, 4))
    maps.gap_backward(dgap, dmeans)
    np.testing.assert_allclose(cnhw(dgap), np.broadcast_to(dmeans[:, :, None, None] / 24, x.shape))
    rows = np.empty((2, 72))
    maps.maps_to_rows(rows, cnhw(x))
    np.testing.assert_array_equal(rows, x.reshape(2, 72), err_msg="flattening is not (c, y, x)")
    back = np.empty((3, 2, 6, 4))
    maps.rows_to_maps(back, rows)
    np.testing.assert_array_equal(cnhw(back), x)


@pytest.mark.kernel
@pytest.mark.parametrize("k", [2, 3])
def test_pooling_and_relu_give_the_plain_loops_bits(k):
    """The branch-free 2 x 2 pool, the vectors of windows of its backward pass and the relu's
    chunks against tests/reference.py's plain loops (their baselines in
    benchmarks/cnn_tricks.py), ties and NaNs included."""
    rng = np.random.default_rng(k)
    x = rng.integers(-3, 4, size=(3, 5, 6 * k, 4 * k)).astype(np.float32)  # many ties
    x[0, 0, 0, 1] = np.nan
    out, plain = (np.empty((3, 5, 6, 4), np.float32) for _ in range(2))
    argmax, plain_argmax = (np.empty((3, 5, 6, 4), np.uint16) for _ in range(2))
    maps.maxpool_forward(out, argmax, x, k)
    reference.maxpool_forward_window_by_window(plain, plain_argmax, x, k)
    np.testing.assert_array_equal(out, plain, err_msg="maxpool_forward differs")
    np.testing.assert_array_equal(argmax, plain_argmax, err_msg="maxpool argmax differs")
    dout = rng.normal(size=out.shape).astype(np.float32)
    dx, plain_dx = np.full_like(x, np.nan), np.full_like(x, np.nan)
    maps.maxpool_backward(dx, dout, argmax, k)
    reference.maxpool_backward_window_by_window(plain_dx, dout, argmax, k)
    np.testing.assert_array_equal(dx, plain_dx, err_msg="maxpool_backward differs")
    flat = rng.normal(size=3 * maps.CHUNK + 5).astype(np.float32)
    plain_flat = flat.copy()
    maps.relu_forward(flat)
    reference.relu_forward_element_by_element(plain_flat)
    np.testing.assert_array_equal(flat, plain_flat, err_msg="relu_forward differs")
