"""One MLP training epoch on MNIST: jitprop vs a plain NumPy loop vs PyTorch (CPU), same network,
same threads, run side by side in this process.  Prints seconds per epoch, ratios, and GFLOP/s
beside the sgemm GFLOP/s NumPy reaches at the same shapes.

    python benchmarks/mlp_epoch.py [--data-dir ../shared/data/mnist] [--repeats 5]

The bench extra (pip install -e ".[bench]") brings threadpoolctl, which the script needs, and
PyTorch, which it does not: without it the script says so and compares against NumPy only.
Absolute seconds depend on the machine and its load; the ratios are the result.  Seconds are
the best of --repeats rounds (default 5), ratios the median of the rounds' ratios.
"""

import argparse
import itertools
import time

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from jitprop import data, mlp

LAYERS = [784, 128, 10]


def dense_flops(n_samples, layers):
    """GEMM flops of one epoch: forward and dW for every layer, dX for all but the first."""
    flops = 0
    for index, (fan_in, fan_out) in enumerate(itertools.pairwise(layers)):
        gemms = 2 if index == 0 else 3
        flops += gemms * 2 * n_samples * fan_in * fan_out
    return flops


def sparse_flops(images, layers):
    """The flops jitprop does in one epoch: the input layer's forward and dW on nonzero pixels
    only (2 flops per pixel and unit, each), the other layers counted dense."""
    flops = 2 * 2 * int(np.count_nonzero(images)) * layers[1]
    return flops + dense_flops(len(images), layers) - dense_flops(len(images), layers[:2])


def jitprop_epoch(images, labels, batch, threads):
    """The epoch's training pass as mlp.train times it (and timing.csv records it): after the
    once-per-run listing of nonzero pixels, which setup_seconds measures on its own."""
    numba.set_num_threads(threads)
    result = mlp.train(
        (images, labels),
        (images[:1], labels[:1]),
        layers=LAYERS,
        activation="relu",
        loss="cross_entropy",
        lr=0.05,
        seed=0,
        epochs=1,
        batch_size=batch,
    )
    return result["timing"][0]["seconds"]


def setup_seconds(images, labels, repeats):
    """jitprop's one-off cost per run: listing each image's nonzero pixels."""
    network = mlp._Network(LAYERS, "float32")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        network.samples(images, labels)
        times.append(time.perf_counter() - start)
    return min(times)


def numpy_epoch(images, labels, batch, threads):
    """The textbook NumPy loop: float32, matmul via BLAS, same init, shuffle and update."""
    rng = np.random.default_rng(0)
    params = mlp.init_params(LAYERS, rng, "float32", "relu")
    (W1, b1), (W2, b2) = params
    velocity = [np.zeros_like(p) for p in (W1, b1, W2, b2)]
    lr, mu = np.float32(0.05), np.float32(0.9)
    with threadpool_limits(threads):
        start = time.perf_counter()
        order = rng.permutation(len(images))
        for first in range(0, len(images), batch):
            index = order[first : first + batch]
            x = images[index].astype(np.float32) / np.float32(255)
            y = labels[index]
            h = np.maximum(x @ W1 + b1, 0)
            logits = h @ W2 + b2
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(y)), y] -= 1
            p /= len(y)
            dW2, db2 = h.T @ p, p.sum(axis=0)
            dh = (p @ W2.T) * (h > 0)
            dW1, db1 = x.T @ dh, dh.sum(axis=0)
            for param, v, g in zip((W1, b1, W2, b2), velocity, (dW1, db1, dW2, db2), strict=True):
                v *= mu
                v += g
                param -= lr * v
        return time.perf_counter() - start


def torch_epoch(images, labels, batch, threads):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    # PyTorch's best case: the whole set already as float tensors in memory.
    X = torch.from_numpy(images.astype(np.float32) / 255)
    Y = torch.from_numpy(labels.astype(np.int64))
    start = time.perf_counter()
    order = torch.randperm(len(X))
    for first in range(0, len(X), batch):
        index = order[first : first + batch]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(X[index]), Y[index])
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def sgemm_gflops(batch, threads, repeats=200):
    """GFLOP/s of NumPy's sgemm at the epoch's forward shape (batch x 784 @ 784 x 128)."""
    rng = np.random.default_rng(1)
    a = rng.random((batch, 784), dtype=np.float32)
    b = rng.random((784, 128), dtype=np.float32)
    with threadpool_limits(threads):
        a @ b
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        seconds = time.perf_counter() - start
    return 2 * batch * 784 * 128 * repeats / seconds / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    images, labels = data.load_split(args.data_dir, "train")
    try:
        import torch  # noqa: F401

        runners = {"jitprop": jitprop_epoch, "numpy": numpy_epoch, "torch": torch_epoch}
    except ImportError:
        print("PyTorch is not installed (pip install -e '.[bench]'): comparing with NumPy only.")
        runners = {"jitprop": jitprop_epoch, "numpy": numpy_epoch}
    jitprop_epoch(images[:256], labels[:256], 64, 1)  # compile or load the cache first
    flops, done = dense_flops(len(images), LAYERS), sparse_flops(images, LAYERS)
    print(
        f"784-128-10 relu, softmax cross-entropy, SGD momentum, float32, {len(images)} images;"
        f" {flops / 1e9:.1f} GFLOP of dense GEMM work per epoch, {done / 1e9:.1f} GFLOP of it"
        f" on nonzero pixels; {args.repeats} rounds"
    )
    header = f"{'threads':>7} {'batch':>5} " + " ".join(f"{name + ' s':>10}" for name in runners)
    header += f" {'vs numpy':>9}" + (f" {'vs torch':>9}" if "torch" in runners else "")
    header += f" {'jitprop GF/s':>12} {'(nonzero)':>9} {'sgemm GF/s':>10}"
    print(header)
    for threads in args.threads:
        for batch in args.batches:
            # Round-robin, so that a burst of load on this shared machine hits all three alike;
            # the ratio is the median of the rounds' ratios, each from back-to-back epochs.
            rounds = [
                {name: run(images, labels, batch, threads) for name, run in runners.items()}
                for _ in range(args.repeats)
            ]
            seconds = {name: min(r[name] for r in rounds) for name in runners}
            row = f"{threads:>7} {batch:>5} " + " ".join(f"{s:>10.3f}" for s in seconds.values())
            for baseline in [name for name in ("numpy", "torch") if name in runners]:
                row += f" {np.median([r['jitprop'] / r[baseline] for r in rounds]):>9.2f}"
            row += f" {flops / seconds['jitprop'] / 1e9:>12.1f}"
            row += f" {done / seconds['jitprop'] / 1e9:>9.1f}"
            row += f" {sgemm_gflops(batch, threads):>10.1f}"
            print(row, flush=True)
    print(
        "seconds: the best round; ratios (< 1: jitprop is faster): the median over rounds. "
        "jitprop GF/s counts the dense GEMM flops of the epoch; (nonzero) counts those it "
        "does, skipping zero pixels."
    )
    print(
        f"jitprop's one-off set-up per run (not per epoch), listing the images' nonzero "
        f"pixels: {setup_seconds(images, labels, args.repeats):.3f} s"
    )


if __name__ == "__main__":
    main()
