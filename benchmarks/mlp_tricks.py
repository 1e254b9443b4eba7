"""What each speed trick of the MLP's layer kernels buys: every kernel of jitprop.layers against
the plain one-term-at-a-time loop of tests/reference.py, compiled by Numba the same way and run
side by side on the same MNIST batches (784-128-10, batch 64, float32).  Both give the same
bits (tests/test_mlp.py); on one thread the ratio is the trick's gain.  The plain loops are
serial, so with --threads 2 it is the trick's and the second thread's together.  The numbers
quoted beside the tricks in src/jitprop/kernels/dense.py and mlp.py come from this script.

    python benchmarks/mlp_tricks.py [--data-dir ../shared/data/mnist] [--threads 1]
"""

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np
from numba import njit

from jitprop import data, mlp
from jitprop.kernels import dense

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import reference

plain = njit(reference.linear_one_term_at_a_time)
H, K, B = 128, 10, 64


@njit
def gather_dense(x, images, index):
    """The plain batch: the chosen images as floats in [0, 1]."""
    for n in range(index.size):
        for k in range(images.shape[1]):
            x[n, k] = images[index[n], k] / np.float32(255)


def best_ratio(trick, baseline, rounds):
    """Seconds of each (best of `rounds`) and the median of the rounds' ratios."""
    times = {"trick": [], "plain": []}
    for _ in range(rounds):
        for name, function in (("trick", trick), ("plain", baseline)):
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    ratios = np.array(times["plain"]) / np.array(times["trick"])
    return min(times["trick"]), min(times["plain"]), float(np.median(ratios))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    numba.set_num_threads(args.threads)
    images, labels = data.load_split(args.data_dir, "train", B * args.batches)
    rng = np.random.default_rng(0)
    (W1, b1), (W2, b2) = mlp.init_params([784, H, K], 0, "float32", "relu")
    network = mlp._Network([784, H, K], "float32")
    samples = network.samples(images, labels)
    buffers = network.batch_buffers(B)
    batches = [np.arange(first, first + B) for first in range(0, len(labels), B)]
    pixels = [np.ascontiguousarray(images[index] / np.float32(255)) for index in batches]
    hidden = rng.normal(size=(B, H)).astype(np.float32).clip(0)  # relu outputs: zeros too
    dh, dlogits = (rng.normal(size=(B, n)).astype(np.float32) for n in (H, K))
    h, logits, dW1, dx = (
        np.empty(shape, np.float32) for shape in ((B, H), (B, K), W1.shape, (B, H))
    )
    dW2, db1, db2 = np.empty_like(W2), np.empty(H, np.float32), np.empty(K, np.float32)
    zeros_h, zeros_k = np.zeros(H, np.float32), np.zeros(K, np.float32)
    W2T = np.ascontiguousarray(W2.T)
    hiddenT = np.ascontiguousarray(hidden.T)

    csr = [mlp._gather_batch(network.batch_buffers(B), samples, index) for index in batches]

    def each_batch(kernel):
        return lambda: [kernel(i) for i in range(len(batches))]

    def csc_backward(i):
        dense.csr_to_csc(buffers.csc, csr[i].csr, B)
        dense.csc_backward_params(dW1, db1, dh, buffers.csc)

    cases = [
        ("gather a batch: CSR vs dense x / 255", each_batch(
            lambda i: mlp._gather_batch(buffers, samples, batches[i])),
         each_batch(lambda i: gather_dense(pixels[i], images, batches[i]))),
        ("input layer forward: CSR, 4 rows a pass", each_batch(
            lambda i: dense.csr_forward(h, csr[i].csr, W1, b1)),
         each_batch(lambda i: plain(h, pixels[i], W1, b1))),
        ("input layer dW: CSC, 4 rows a pass", each_batch(csc_backward),
         each_batch(lambda i: plain(dW1, np.ascontiguousarray(pixels[i].T), dh, zeros_h))),
        ("output layer forward: on x^T, select", each_batch(
            lambda i: dense.dense_forward(logits, hidden, W2, b2)),
         each_batch(lambda i: plain(logits, hidden, W2, b2))),
        ("output layer dW: dW^T, select", each_batch(
            lambda i: dense.dense_backward_params(dW2, db2, dlogits, hidden)),
         each_batch(lambda i: plain(dW2, hiddenT, dlogits, zeros_k))),
        ("output layer dx: plain loop (control)", each_batch(
            lambda i: dense.dense_backward_input(dx, dlogits, W2)),
         each_batch(lambda i: plain(dx, dlogits, W2T, zeros_h))),
    ]  # fmt: skip
    for _, trick, baseline in cases:  # compile, or load the cache, first
        trick()
        baseline()
    print(f"{len(batches)} batches of {B}, {args.threads} thread(s), best of {args.rounds}")
    print(f"{'kernel and its trick':<40} {'trick s':>8} {'plain s':>8} {'gain':>6}")
    for name, trick, baseline in cases:
        fast, slow, ratio = best_ratio(trick, baseline, args.rounds)
        print(f"{name:<40} {fast:>8.4f} {slow:>8.4f} {ratio:>5.1f}x")


if __name__ == "__main__":
    main()
