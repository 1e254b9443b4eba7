"""What each of the CNN's smaller speed tricks buys: each against its plain alternative, on the
default network's shapes at batch 128 in float32, run side by side in this process (rounds
alternate, best of each), one thread by default.

    python benchmarks/cnn_tricks.py [--rounds 7] [--threads 1]

- batch norm doing its neighbours' passes (the dropout after it, the relu's backward before it)
  against every layer's own kernel: a whole forward and backward pass of the network;
- the branch-free 2 x 2 max pool, and its backward pass in vectors of windows, against
  tests/reference.py's window-by-window loops;
- the relu in chunks of CHUNK elements against tests/reference.py's element-by-element loop;
- dW on rows that start on cache lines against the same rows 16 bytes further on;
- the row copies in masked vectors (vectors.copy_span) against a plain copy loop.

The baselines give the same bits (tests/test_cnn_kernels.py); the script checks them again.
The ratios are what the comments at each trick in src/jitprop/kernels/ quote.
"""

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange

from jitprop import cnn_net, config
from jitprop.kernels import conv, maps, vectors

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import reference

LAYERS, B = config.defaults("cnn")["layers"], config.defaults("cnn")["batch_size"]
plain_maxpool_forward = njit(parallel=True)(reference.maxpool_forward_window_by_window)
plain_maxpool_backward = njit(parallel=True)(reference.maxpool_backward_window_by_window)
plain_relu = njit(parallel=True)(reference.relu_forward_element_by_element)


@njit(parallel=True)
def rows_by_copy_span(dst, src, Wo, Wp):
    """Rows of Wo values of src into rows of Wp of dst, zeros after them, as dW lays out its
    output gradient: with vectors.copy_span."""
    for r in prange(src.size // Wo):
        vectors.copy_span(dst, r * Wp, src, r * Wo, Wo, Wp)


@njit(parallel=True)
def rows_by_plain_loop(dst, src, Wo, Wp):
    """The same with a plain loop per row."""
    for r in prange(src.size // Wo):
        for i in range(Wp):
            dst[r * Wp + i] = src[r * Wo + i] if i < Wo else 0


def passes(fused):
    """A forward and backward pass of the default network on a random batch, with batch
    norm's fused neighbours, or with every layer's own kernel."""
    network = cnn_net.Network(LAYERS, "float32")
    theta = network.init(np.random.default_rng(0))
    params, grads, stats = network.views(theta), network.views(np.zeros_like(theta)), None
    work = cnn_net.Pass(network, B)
    if not fused:
        work.fused_dropouts, work.relus_before_batchnorm = set(), set()
    rng = np.random.default_rng(1)
    work.input(B)[0] = rng.normal(size=(B, 28, 28))
    labels = rng.integers(0, 10, B)
    keys = rng.integers(0, 2**32, len(LAYERS), dtype=np.uint64)
    stats = network.new_stats()

    def run():
        logits = work.forward(params, stats, B, True, keys)
        work.loss(logits, labels)
        work.backward(params, grads, B, keys)
        return np.concatenate([g.ravel() for layer in grads for g in layer.values()])

    return run


def pooling(plain):
    """The 2 x 2 pool of the default network (16 maps of 24 x 24), forward and backward."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(16, B, 24, 24)).astype(np.float32)
    out, argmax = np.empty((16, B, 12, 12), np.float32), np.empty((16, B, 12, 12), np.uint16)
    dout, dx = rng.normal(size=out.shape).astype(np.float32), np.empty_like(x)
    forward = plain_maxpool_forward if plain else maps.maxpool_forward
    backward = plain_maxpool_backward if plain else maps.maxpool_backward

    def run():
        forward(out, argmax, x, 2)
        backward(dx, dout, argmax, 2)
        return np.concatenate([out.ravel(), dx.ravel()])

    return run


def relu(plain):
    """The relu of the default network's largest activation (16 maps of 24 x 24)."""
    x = np.random.default_rng(3).normal(size=16 * B * 24 * 24).astype(np.float32)
    work = np.empty_like(x)
    kernel = plain_relu if plain else maps.relu_forward

    def run():
        work[:] = x
        kernel(work)
        return work

    return run


def shifted_copy(a):
    """Zeros shaped as `a`, starting 16 bytes past a cache line (as NumPy's large arrays do):
    a's rows are whole cache lines long, so every row starts 16 bytes past one."""
    return vectors.aligned_zeros((a.size + 4,), a.dtype)[4:].reshape(a.shape)


def dW(shifted):
    """dW of the default network's largest convolution (16 -> 16 channels on 26 x 26), its
    scratch rows on cache lines or 16 bytes past them."""
    rng = np.random.default_rng(4)
    xp = vectors.aligned_zeros((16, B, 26, 26), np.float32)
    xp[...] = rng.normal(size=xp.shape)
    dout = rng.normal(size=(16, B, 24, 24)).astype(np.float32)
    d, flats = conv.backward_params_scratch(16, xp.shape, 3, np.float32)
    if shifted:  # the same shapes, every row 16 bytes (four floats) past a cache line
        d, flats = (shifted_copy(a) for a in (d, flats))
    out, db = np.empty((16, 16, 3, 3), np.float32), np.empty(16, np.float32)

    def run():
        conv.conv_backward_params(out, db, dout, xp, d, flats)
        return out

    return run


def row_copies(plain):
    """dW's copies of the default network's largest output gradient into wide rows."""
    src = np.random.default_rng(5).normal(size=16 * B * 24 * 24).astype(np.float32)
    dst = np.empty(16 * B * 24 * 26, np.float32)
    copy = rows_by_plain_loop if plain else rows_by_copy_span

    def run():
        copy(dst, src, 24, 26)
        return dst

    return run


TRICKS = [  # (what, the trick, its plain alternative)
    ("batch norm's fused passes (a network pass)", lambda: passes(True), lambda: passes(False)),
    ("2x2 max pool, forward + backward", lambda: pooling(False), lambda: pooling(True)),
    ("relu in chunks", lambda: relu(False), lambda: relu(True)),
    ("dW on cache-line rows", lambda: dW(False), lambda: dW(True)),
    ("row copies in masked vectors", lambda: row_copies(False), lambda: row_copies(True)),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    numba.set_num_threads(args.threads)
    print(f"default network, batch {B}, float32, {args.threads} thread(s); best of {args.rounds}")
    print(f"{'trick':<44} {'plain ms':>9} {'trick ms':>9} {'trick / plain':>14}")
    for name, trick, plain in TRICKS:
        runs = {"trick": trick(), "plain": plain()}
        results = {key: run().copy() for key, run in runs.items()}  # compiled and warm
        assert np.array_equal(results["trick"], results["plain"], equal_nan=True), name
        best = {key: np.inf for key in runs}
        for round_ in range(args.rounds):
            for key in list(runs)[:: -1 if round_ % 2 else 1]:
                start = time.perf_counter()
                runs[key]()
                best[key] = min(best[key], time.perf_counter() - start)
        ratio = best["trick"] / best["plain"]
        print(f"{name:<44} {1e3 * best['plain']:>9.3f} {1e3 * best['trick']:>9.3f} {ratio:>14.2f}")


if __name__ == "__main__":
    main()
