"""What the "wide row" convolution kernels buy (jitprop.kernels.conv): each convolution of the
default network, forward and weight gradient at batch 128 in float32, against the plain Numba
loops they replace (tests/reference.py's), run side by side in this process at 1 and 2 threads.

    python benchmarks/cnn_conv.py [--rounds 3] [--threads 1 2]

The plain forward adds the same terms in the same order, so its outputs are the wide rows'
bit for bit (checked here, and by tests/test_cnn.py); the plain weight gradient adds its
terms in a running sum, the wide rows' in parts and a tree, so the two agree to rounding.
"""

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np
from numba import njit

from jitprop import cnn, config
from jitprop.kernels import conv, vectors

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import reference

BATCH = config.defaults("cnn")["batch_size"]


# tests/reference.py's plain loops, compiled as the kernels are: parallel, multiply-adds fused.
plain_conv_forward = njit(parallel=True, fastmath=vectors.FMA)(reference.conv_forward_one_at_a_time)
plain_conv_backward_params = njit(parallel=True, fastmath=vectors.FMA)(
    reference.conv_backward_params_running_sum
)


def convolutions(layers, B, rng, dtype=np.float32):
    """Per convolution of `layers`: (name, out, xp, W, b, dout), random, for a batch of B."""
    specs, shapes = cnn.parse_layers(layers)
    found = []
    for index, (spec, shape, out) in enumerate(zip(specs, shapes, shapes[1:], strict=False)):
        if spec.kind != "conv":
            continue
        Ci, H, W = shape
        p, k, Co = spec.padding, spec.kernel, out[0]
        xp = np.zeros((Ci, B, H + 2 * p, W + 2 * p), dtype)
        xp[:, :, p : p + H, p : p + W] = rng.normal(size=(Ci, B, H, W))
        name = f"#{index} conv {Ci}->{Co} k{k} on {H}x{W}"
        found.append(
            (
                name,
                np.empty((Co, B, *out[1:]), dtype),
                xp,
                rng.normal(size=(Co, Ci, k, k)).astype(dtype),
                rng.normal(size=Co).astype(dtype),
                rng.normal(size=(Co, B, *out[1:])).astype(dtype),
            )
        )
    return found


def best(function, rounds):
    function()  # compiled and warm
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def compare(name, out, xp, W, b, dout, rounds):
    """Rows (name, pass, plain seconds, wide-row seconds) of one convolution, once the two
    forward passes are found bit-identical and the two dW close."""
    plain_out, dW, plain_dW = np.empty_like(out), np.empty_like(W), np.empty_like(W)
    scratch = conv.backward_params_scratch(out.shape[0], xp.shape, W.shape[2], W.dtype)
    no_bias = np.empty(0, W.dtype)
    rows = [
        (
            name,
            "forward",
            best(lambda: plain_conv_forward(plain_out, xp, W, b), rounds),
            best(lambda: conv.conv_forward(out, xp, W, b), rounds),
        ),
        (
            name,
            "dW",
            best(lambda: plain_conv_backward_params(plain_dW, dout, xp), rounds),
            best(lambda: conv.conv_backward_params(dW, no_bias, dout, xp, *scratch), rounds),
        ),
    ]
    assert np.array_equal(out, plain_out), f"{name}: the forward passes' bits differ"
    np.testing.assert_allclose(dW, plain_dW, rtol=1e-3, atol=1e-2, err_msg=name)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    layers = config.defaults("cnn")["layers"]
    cases = convolutions(layers, BATCH, np.random.default_rng(0))
    print(f"default network, batch {BATCH}, float32; ms per batch, best of {args.rounds}")
    print(f"{'threads':>7} {'convolution':<27} {'pass':<8} {'plain':>8} {'wide rows':>10} {'x':>6}")
    for threads in args.threads:
        numba.set_num_threads(threads)
        for case in cases:
            for name, stage, plain_s, wide_s in compare(*case, args.rounds):
                print(
                    f"{threads:>7} {name:<27} {stage:<8} {1e3 * plain_s:>8.2f} "
                    f"{1e3 * wide_s:>10.2f} {plain_s / wide_s:>6.1f}"
                )


if __name__ == "__main__":
    main()
