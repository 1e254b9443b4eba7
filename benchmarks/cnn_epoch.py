"""One CNN training epoch on MNIST: jitprop against PyTorch (CPU), the same layers (the config's
default cnn.layers), batch size, SGD with momentum and loss, run side by side in this process
at 1 and 2 threads.  Prints seconds per epoch, the ratio, GFLOP/s on the convolutions' and
linear layers' multiply-adds, and the machine's practical peak (NumPy's sgemm).

    python benchmarks/cnn_epoch.py [--data-dir ../shared/data/mnist] [--rounds 3]
                                   [--batches N] [--threads 1 2] [--stages]

Both train on the same normalized images without augmentation (the issue compares layers;
jitprop's epoch with its +-7 degree rotations, which sample every image where unmoved ones are
copied, is the last column); the ratio is the median of the rounds' ratios, each from
back-to-back epochs.  --stages prints where jitprop's time goes, kernel by
kernel (the profile).  The bench extra (pip install -e ".[bench]") brings threadpoolctl,
which the script needs, and PyTorch, without which it times jitprop alone.
"""

import argparse
import collections
import math
import time

import numba
import numpy as np

from jitprop import cnn, cnn_spec, config, data

LAYERS = config.defaults("cnn")["layers"]
BATCH = config.defaults("cnn")["batch_size"]


def jitprop_epoch(images, labels, threads, batches, augment=False):
    """Seconds of `batches` training steps of cnn.train's loop (no evaluation)."""
    numba.set_num_threads(threads)
    rotation = 7.0 if augment else 0.0
    settings = config.run_settings("cnn", {"augment": {"rotation": rotation, "shift": 0.0}})
    rng = np.random.default_rng(0)
    trainer = cnn._Trainer((images, labels), (images[:1], labels[:1]), settings, rng)
    trainer.begin_epoch(rng)
    order = rng.permutation(len(labels))
    totals, corrects = np.empty(batches), np.empty(batches, np.int64)
    rates = np.full(batches, 0.05, settings["dtype"])
    start = time.perf_counter()
    trainer.train_batches(totals, corrects, order, 0, rates, np.inf)
    return time.perf_counter() - start


def torch_model(layers):
    import torch

    modules = []
    specs, shapes = cnn.parse_layers(layers)
    for spec, shape in zip(specs, shapes, strict=False):
        if spec.kind == "conv":
            modules.append(
                torch.nn.Conv2d(
                    shape[0], spec.out, spec.kernel, padding=spec.padding, bias=spec.bias
                )
            )
        elif spec.kind == "relu":
            modules.append(torch.nn.ReLU())
        elif spec.kind == "batchnorm":
            modules.append(torch.nn.BatchNorm2d(shape[0]))
        elif spec.kind == "dropout":
            modules.append(torch.nn.Dropout(spec.p))
        elif spec.kind == "maxpool":
            modules.append(torch.nn.MaxPool2d(spec.k))
        elif spec.kind == "gap":
            modules += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()]
        else:
            modules += [torch.nn.Flatten(), torch.nn.Linear(math.prod(shape), spec.n)]
    return torch.nn.Sequential(*modules)


def torch_epoch(images, labels, threads, batches):
    """PyTorch's best case: the whole set already normalized float tensors in memory."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torch_model(LAYERS)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    X = torch.from_numpy(((images / 255 - cnn.MNIST_MEAN) / cnn.MNIST_STD).astype(np.float32))
    X = X.reshape(-1, 1, 28, 28)
    Y = torch.from_numpy(labels.astype(np.int64))
    order = torch.randperm(len(X))
    start = time.perf_counter()
    for batch in range(batches):
        index = order[batch * BATCH : (batch + 1) * BATCH]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(X[index]), Y[index])
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def sgemm_gflops(threads, size=1024, repeats=20):
    """The practical peak: GFLOP/s of NumPy's sgemm on size x size matrices."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(1)
    a, b = rng.random((size, size), dtype=np.float32), rng.random((size, size), dtype=np.float32)
    with threadpool_limits(threads):
        a @ b
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        seconds = time.perf_counter() - start
    return 2 * size**3 * repeats / seconds / 1e9


def stages(images, labels, threads, batches):
    """Where jitprop's time goes: seconds per batch in each kernel, timed by wrapping them."""
    from jitprop.kernels import conv, dense, maps

    spent = collections.defaultdict(float)
    originals = []
    for module in (conv, maps, dense):
        for name in dir(module):
            kernel = getattr(module, name)
            if hasattr(kernel, "py_func") and not name.startswith("_"):

                def timed(*args, kernel=kernel, name=name):
                    start = time.perf_counter()
                    result = kernel(*args)
                    spent[name] += time.perf_counter() - start
                    return result

                originals.append((module, name, kernel))
                setattr(module, name, timed)
    try:
        total = jitprop_epoch(images, labels, threads, batches)
    finally:
        for module, name, kernel in originals:
            setattr(module, name, kernel)
    print(f"\nwhere jitprop's {batches} batches go ({threads} thread(s)), per batch:")
    for name, seconds in sorted(spent.items(), key=lambda item: -item[1]):
        print(f"  {name:<32} {seconds / batches * 1e3:7.2f} ms {seconds / total:6.1%}")
    rest = total - sum(spent.values())
    # The batch gather (cnn._gather), the SGD update and the Python around them.
    rest_label = "(the rest: gather, SGD, Python)"
    print(f"  {rest_label:<32} {rest / batches * 1e3:7.2f} ms {rest / total:6.1%}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batches", type=int, default=None, help="default: a whole epoch")
    parser.add_argument("--stages", action="store_true", help="also profile jitprop's kernels")
    args = parser.parse_args()
    images, labels = data.load_split(args.data_dir, "train")
    batches = args.batches or -(-len(labels) // BATCH)
    images, labels = images[: batches * BATCH], labels[: batches * BATCH]
    runners = {"jitprop": jitprop_epoch}
    try:
        import torch  # noqa: F401

        runners["torch"] = torch_epoch
    except ImportError:
        print("PyTorch is not installed (pip install -e '.[bench]'): timing jitprop only.")
    jitprop_epoch(images, labels, 1, 2)  # compile, or load the cache, first
    rows = cnn.summary(LAYERS)
    macs = cnn_spec.multiply_adds(*cnn.parse_layers(LAYERS)) * len(labels)
    print(
        f"the default CNN: {len(rows) - 1} layers, {rows[-1]['params']} parameters, batch "
        f"{BATCH}, float32; {len(labels)} images: {2 * macs / 1e9:.0f} GFLOP of convolution "
        f"and linear multiply-adds; {args.rounds} rounds"
    )
    header = f"{'threads':>7} " + " ".join(f"{name + ' s':>10}" for name in runners)
    header += f" {'vs torch':>9}" if "torch" in runners else ""
    header += f" {'jitprop GF/s':>12} {'torch GF/s':>10} {'sgemm GF/s':>10} {'augment s':>9}"
    print(header)
    for threads in args.threads:
        rounds = [
            {name: run(images, labels, threads, batches) for name, run in runners.items()}
            for _ in range(args.rounds)
        ]
        seconds = {name: min(r[name] for r in rounds) for name in runners}
        row = f"{threads:>7} " + " ".join(f"{s:>10.2f}" for s in seconds.values())
        if "torch" in runners:
            row += f" {np.median([r['jitprop'] / r['torch'] for r in rounds]):>9.2f}"
        torch_rate = 2 * macs / seconds["torch"] / 1e9 if "torch" in runners else float("nan")
        augmented = jitprop_epoch(images, labels, threads, batches, augment=True)
        row += (
            f" {2 * macs / seconds['jitprop'] / 1e9:>12.1f} {torch_rate:>10.1f}"
            f" {sgemm_gflops(threads):>10.1f} {augmented:>9.2f}"
        )
        print(row, flush=True)
    if args.stages:
        for threads in args.threads:
            stages(images, labels, threads, min(batches, 100))


if __name__ == "__main__":
    main()
