"""The benchmarks' own kernels, which no pipeline step runs, still compute what they claim."""

import importlib.util

import numpy as np
import pytest

from jitprop import cnn_layers as kernels
from jitprop import toy

from conftest import ROOT

SHEET_W = [0.15, 0.2, 0.25, 0.3, 0.4, 0.45, 0.5, 0.55]
INPUTS, TARGETS = [0.05, 0.1], [0.5, 0.5]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


toy_kernel = load("toy_kernel")


@pytest.mark.parametrize("block", [64, 5])  # one block of SIMD lanes; blocks with a remainder
@pytest.mark.kernel
def test_grid_kernel_is_bit_identical_to_single_runs(block):
    rates = np.array([0.1, 0.5, 2.0, 1e4])
    starts = np.array([SHEET_W, *[toy.random_weights(s, (-1, 1)) for s in (1, 2, 3)]])
    G = len(rates) * len(starts)
    w0 = np.repeat(starts[None], len(rates), axis=0).reshape(G, 8)
    lr = np.repeat(rates, len(starts))
    E = np.empty((G, 30))
    toy_kernel.toy_train_grid_kernel(
        E, w0, np.tile(INPUTS, (G, 1)), np.tile(TARGETS, (G, 1)), lr, block
    )
    for g in range(G):
        single = toy.train(w0[g], INPUTS, TARGETS, lr[g], 30)["E_total"].to_numpy()
        np.testing.assert_array_equal(E[g], single, err_msg=f"E_total of grid net {g} differs")


def test_cnn_epoch_counts_the_multiply_adds_of_a_training_step():
    cnn_epoch = load("cnn_epoch")
    layers = [{"conv": {"out": 2, "kernel": 3}}, "relu", "gap", {"linear": 10}]
    # The first convolution: forward and weight gradient, 2 x 26 x 26 outputs of 9 taps each;
    # the linear layer: forward and both gradients, 2 x 10.
    assert cnn_epoch.multiply_adds(layers) == 2 * (2 * 26 * 26 * 9) + 3 * (2 * 10)


@pytest.mark.kernel
@pytest.mark.parametrize("k", [3, 5, 2])  # the nine-tap pass, and the one-tap pass
def test_plain_convolution_loops_give_the_wide_rows_results(k):
    """The baseline of benchmarks/cnn_conv.py: the plain forward loop gives conv_forward's bits
    (the wide rows add the same terms in the same order), the plain dW its sums to rounding."""
    cnn_conv = load("cnn_conv")
    rng = np.random.default_rng(k)
    conv = {"conv": {"out": 5, "kernel": k, "padding": 1}}
    layers = [{"conv": {"out": 3, "kernel": 1}}, conv, "gap", {"linear": 10}]
    _, (name, out, xp, W, b, dout) = cnn_conv.convolutions(layers, 3, rng)
    plain = np.empty_like(out)
    cnn_conv.plain_conv_forward(plain, xp, W, b)
    kernels.conv_forward(out, xp, W, b)
    np.testing.assert_array_equal(plain, out, err_msg=name)
    dW, plain_dW = np.empty_like(W), np.empty_like(W)
    scratch = kernels.backward_params_scratch(5, xp.shape, k, W.dtype)
    kernels.conv_backward_params(dW, np.empty(0, W.dtype), dout, xp, *scratch)
    cnn_conv.plain_conv_backward_params(plain_dW, dout, xp)
    np.testing.assert_allclose(plain_dW, dW, rtol=1e-4, atol=1e-4)
