"""SHA-256 of what short training runs of each family produce, under several settings: two
revisions (or two machines, or two CPU targets) that print the same lines train to the same
bits.  Not a timing: a check to run before and after a change that must keep (or must move)
the trained bits, and whose result is worth writing in the commit message.

    python benchmarks/training_hashes.py [--data-dir ../shared/data/mnist] [--only cnn]

Each line is a run's name and the hash of its trained parameters (and the CNN's running
statistics), its per-epoch history, its logged batch losses and, for the CNN, its mistakes.
It uses only the public API (jitprop.toy, mlp, cnn, data), which every revision keeps.
"""

import argparse
import hashlib

import numpy as np

from jitprop import cnn, data, mlp, toy

SHEET = [0.15, 0.2, 0.25, 0.3, 0.4, 0.45, 0.5, 0.55]
# MLP runs: one of each activation, loss, dtype and schedule, weight decay on and off.
MLP_RUNS = {
    "mlp-default": {},
    "mlp-sigmoid-squared-float64": {
        "activation": "sigmoid",
        "loss": "squared_error",
        "dtype": "float64",
        "layers": [784, 32, 16, 10],
        "lr_schedule": "constant",
        "weight_decay": 1e-4,
        "batch_size": 50,
    },
    "mlp-tanh": {"activation": "tanh", "momentum": 0.5, "layers": [784, 24, 10]},
}
# CNN runs: the default network with augmentation, and small networks that take every other
# kernel path: padding, bias, a 5x5 and a 1x1 kernel, 3x3 pooling, a linear layer on maps,
# float64, and a network that ends in maps.
CNN_RUNS = {
    "cnn-default": {"augment": {"rotation": 7.0, "shift": 1.0}},
    "cnn-paths-float64": {
        "dtype": "float64",
        "weight_decay": 1e-3,
        "lr_schedule": "cosine",
        "layers": [
            {"conv": {"out": 5, "kernel": 5, "padding": 2, "bias": True}},
            "relu",
            {"maxpool": 2},
            {"conv": {"out": 6, "kernel": 1}},
            "batchnorm",
            {"dropout": 0.2},
            "relu",
            {"maxpool": 2},
            {"linear": 10},
        ],
    },
    "cnn-ends-in-maps": {
        "layers": [
            {"conv": {"out": 4, "kernel": 3, "padding": 1}},
            "relu",
            "batchnorm",
            {"maxpool": 2},
            {"conv": {"out": 8, "kernel": 3}},
            "relu",
            {"maxpool": 3},
            {"dropout": 0.1},
            {"conv": {"out": 10, "kernel": 4}},
        ],
    },
}


def digest_of(arrays, *records):
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(repr(records).encode())
    return digest.hexdigest()


def toy_hashes():
    runs = {"toy-sheet-0.5": (SHEET, 0.5), "toy-seed1-2.0": (toy.random_weights(1, (-1, 1)), 2.0)}
    for name, (weights, lr) in runs.items():
        history = toy.train(weights, [0.05, 0.1], [0.5, 0.5], lr, 200)
        yield name, digest_of([history.to_numpy(float)])


def mlp_hashes(train, test):
    for name, settings in MLP_RUNS.items():
        run = mlp.train(train, test, lr=0.05, seed=3, epochs=2, **settings)
        arrays = [array for pair in run["params"] for array in pair]
        yield name, digest_of(arrays, run["history"], run["steps"])


def cnn_hashes(train, test):
    for name, settings in CNN_RUNS.items():
        run = cnn.train(train, test, lr=0.1, seed=1, epochs=1, batch_size=64, **settings)
        arrays = [layer[key] for layer in run["params"] for key in sorted(layer)]
        arrays += [stat[key] for stat in run["stats"] for key in sorted(stat)]
        yield name, digest_of(arrays, run["history"], run["steps"], run["misclassified"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--only", choices=["toy", "mlp", "cnn"])
    args = parser.parse_args()
    train = data.load_split(args.data_dir, "train", 1024)
    test = data.load_split(args.data_dir, "test", 256)
    families = {
        "toy": toy_hashes,
        "mlp": lambda: mlp_hashes(train, test),
        "cnn": lambda: cnn_hashes(train, test),
    }
    for family, hashes in families.items():
        if args.only in (None, family):
            for name, digest in hashes():
                print(f"{name:<30} {digest}", flush=True)


if __name__ == "__main__":
    main()
