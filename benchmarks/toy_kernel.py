"""The toy net's kernels against a pure-Python implementation of the same equations, run side by
side in this process: time per training step of one run, and net-steps per second of the grid
kernel, which trains many nets at once (one core: the kernels are serial).

One run is a chain: each step needs the weights of the one before, and a step's critical path
holds two exp and two divisions, so it is bound by their latency, not by throughput.  The grid
kernel steps many independent nets side by side, one per SIMD lane.

The pure-Python baseline does less than the kernels: a step's forward pass, backward pass and
update, but no error and no cells kept, so the speed-ups are if anything understated.  The
grid's baseline is that per-step time times the grid's net-steps, not a second run.

    python benchmarks/toy_kernel.py [--check]

--check only checks, without timing, that every net of a small grid (16 nets, in one block of
SIMD lanes and in blocks of 5 with a remainder) trains to the bits of a single run:
tests/test_benchmarks.py runs it so.
"""

import argparse
import math
import sys
import time

import numpy as np
from numba import njit

from jitprop import toy

SHEET_W = [0.15, 0.2, 0.25, 0.3, 0.4, 0.45, 0.5, 0.55]


def python_train(w, i1, i2, t1, t2, lr, steps):
    """The exercise's equations in plain Python floats, one step at a time."""
    w1, w2, w3, w4, w5, w6, w7, w8 = w
    for _ in range(steps):
        out_h1 = 1 / (1 + math.exp(-(w1 * i1 + w2 * i2)))
        out_h2 = 1 / (1 + math.exp(-(w3 * i1 + w4 * i2)))
        out_o1 = 1 / (1 + math.exp(-(w5 * out_h1 + w6 * out_h2)))
        out_o2 = 1 / (1 + math.exp(-(w7 * out_h1 + w8 * out_h2)))
        d1 = (out_o1 - t1) * out_o1 * (1 - out_o1)
        d2 = (out_o2 - t2) * out_o2 * (1 - out_o2)
        dh1 = (d1 * w5 + d2 * w7) * out_h1 * (1 - out_h1)
        dh2 = (d1 * w6 + d2 * w8) * out_h2 * (1 - out_h2)
        w1, w2 = w1 - lr * dh1 * i1, w2 - lr * dh1 * i2
        w3, w4 = w3 - lr * dh2 * i1, w4 - lr * dh2 * i2
        w5, w6 = w5 - lr * d1 * out_h1, w6 - lr * d1 * out_h2
        w7, w8 = w7 - lr * d2 * out_h1, w8 - lr * d2 * out_h2
    return w1, w2, w3, w4, w5, w6, w7, w8


# Not cached: Numba's cache would not notice a change to toy._toy_step in another module.
@njit(error_model="numpy")
def toy_train_grid_kernel(E_total, w0, i, t, lr, block=64):
    """A grid of G independent nets in one call, recording E_total (G, S) of every step.
    w0 (G, 8) starts, i (G, 2), t (G, 2), lr (G,).

    Nets go in blocks of `block`; within a block every net takes step s before any takes step
    s + 1, so the loop over nets vectorizes, a SIMD lane a net, each lane doing the same IEEE
    operations in the same order as toy._toy_train_kernel: the same bits.  (The pipeline
    writes every cell of every step, which this does not: it is a benchmark of what the toy
    kernels can do, checked by --check.)"""
    G, S = E_total.shape
    w, E = np.empty((8, block)), np.empty((S, block))
    for first in range(0, G, block):
        size = min(block, G - first)
        nets = slice(first, first + size)
        w[:, :size] = w0[nets].T
        i1, i2 = i[nets, 0].copy(), i[nets, 1].copy()
        t1, t2, rate = t[nets, 0].copy(), t[nets, 1].copy(), lr[nets].copy()
        for s in range(S):
            for n in range(size):
                weights = (w[0, n], w[1, n], w[2, n], w[3, n], w[4, n], w[5, n], w[6, n], w[7, n])
                cells, _, updated = toy._toy_step(weights, i1[n], i2[n], t1[n], t2[n], rate[n])
                E[s, n] = cells[10]
                for k in range(8):
                    w[k, n] = updated[k]
        E_total[nets] = E[:, :size].T


def best(function, repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def check():
    """Whether every net of a small grid, in blocks of 64 and of 5, gives a single run's bits;
    prints each net that does not."""
    i, t = np.array([0.05, 0.1]), np.array([0.5, 0.5])
    rates = np.array([0.1, 0.5, 2.0, 1e4])
    starts = np.array([SHEET_W, *[toy.random_weights(s, (-1, 1)) for s in (1, 2, 3)]])
    G, S = len(rates) * len(starts), 30
    w0 = np.repeat(starts[None], len(rates), axis=0).reshape(G, 8)
    lr = np.repeat(rates, len(starts))
    mismatches = 0
    for block in (64, 5):
        E = np.empty((G, S))
        toy_train_grid_kernel(E, w0, np.tile(i, (G, 1)), np.tile(t, (G, 1)), lr, block)
        for g in range(G):
            single = toy.train(w0[g], i, t, lr[g], S)["E_total"].to_numpy()
            if not np.array_equal(E[g], single):
                mismatches += 1
                print(f"block {block}: E_total of grid net {g} differs from its single run")
    print(f"{2 * G} grid nets checked against single runs: {mismatches} differ")
    return mismatches == 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="check the grid's bits, no timing")
    if parser.parse_args().check:
        sys.exit(0 if check() else 1)
    i, t = np.array([0.05, 0.1]), np.array([0.5, 0.5])
    w0 = np.array(SHEET_W)
    python_steps, kernel_steps = 20_000, 1_000_000
    python_s = best(lambda: python_train(SHEET_W, 0.05, 0.1, 0.5, 0.5, 0.5, python_steps))
    rows = np.empty((kernel_steps, len(toy.COLUMNS) - 5))
    toy._toy_train_kernel(rows[:2], w0, i, t, 0.5)  # compile or load the cache first
    kernel_s = best(lambda: toy._toy_train_kernel(rows, w0, i, t, 0.5))
    per_python, per_kernel = python_s / python_steps, kernel_s / kernel_steps
    print(
        "toy 2-2-2 net, one training step of one run (forward, backward, update; the kernel "
        "also writes all 27 cells of the step)"
    )
    print(f"{'implementation':<28} {'ns/step':>10} {'speed-up':>9}")
    print(f"{'pure Python (baseline)':<28} {per_python * 1e9:>10.0f} {1:>9.1f}")
    print(f"{'_toy_train_kernel':<28} {per_kernel * 1e9:>10.0f} {per_python / per_kernel:>9.1f}")

    G, S = 10_000, 100
    rng = np.random.default_rng(0)
    starts = rng.uniform(-1, 1, (G, 8))
    rates = np.geomspace(0.05, 5, G)
    inputs, targets = np.tile(i, (G, 1)), np.tile(t, (G, 1))
    E = np.empty((G, S))
    toy_train_grid_kernel(E[:1], starts[:1], inputs[:1], targets[:1], rates[:1])
    grid_s = best(lambda: toy_train_grid_kernel(E, starts, inputs, targets, rates))
    python_grid = per_python * G * S
    print(f"\ngrid of {G} nets x {S} steps in one call (1 core)")
    print(f"{'implementation':<28} {'net-steps/s':>12} {'speed-up':>9}")
    print(f"{'pure Python (baseline)':<28} {1 / per_python:>12.3g} {1:>9.1f}")
    print(f"{'toy_train_grid_kernel':<28} {G * S / grid_s:>12.3g} {python_grid / grid_s:>9.1f}")
    identical = all(
        np.array_equal(E[g], toy.train(starts[g], i, t, rates[g], S)["E_total"].to_numpy())
        for g in range(0, G, 997)
    )
    print(f"grid rows bit-identical to single runs (every 997th net checked): {identical}")


if __name__ == "__main__":
    main()
