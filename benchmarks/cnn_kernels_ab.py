"""The CNN's training epoch with the layer kernels and the passes that call them
(src/jitprop/cnn_layers.py, cnn_net.py) of two git revisions, side by side in this process:
rounds alternate between the two, and each prints its median milliseconds a batch and the
median of the rounds' ratios to the first.  On machines whose speed drifts by 10-30% within
minutes, this is how to tell whether a kernel change pays.

    python benchmarks/cnn_kernels_ab.py BASE [NEW] [--data-dir ../shared/data/mnist]
                                        [--threads 1] [--batches 60] [--rounds 5]

NEW defaults to the working tree (jitprop as installed: editable, from this checkout, after
the README's commands).  Only those two files are swapped, so both revisions' passes must
take the working tree's arguments.  The first round of each is a warm-up, not counted: it
compiles the kernels.
"""

import argparse
import importlib.util
import statistics
import subprocess
import tempfile
from pathlib import Path

import numpy as np

import cnn_epoch  # the sibling script: Python puts this folder first on sys.path
from jitprop import cnn, cnn_net, data

ROOT = Path(__file__).resolve().parent.parent


def module_at(revision, file, folder):
    """The module in src/jitprop/`file` as it was at `revision`, imported from a copy in
    `folder`."""
    source = subprocess.run(
        ["git", "show", f"{revision}:src/jitprop/{file}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    name = f"{Path(file).stem}_{len(list(folder.iterdir()))}"
    path = folder / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def passes_at(revision, folder):
    """jitprop.cnn_net.Pass as it was at `revision`, calling that revision's kernels."""
    network = module_at(revision, "cnn_net.py", folder)
    network.kernels = module_at(revision, "cnn_layers.py", folder)
    return network.Pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="a git revision, e.g. HEAD~2")
    parser.add_argument("new", nargs="?", help="a git revision (default: the working tree)")
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    images, labels = data.load_split(args.data_dir, "train")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        names = [args.base, args.new or "working tree"]
        passes = [passes_at(args.base, folder)]
        passes.append(passes_at(args.new, folder) if args.new else cnn_net.Pass)
        seconds = {name: [] for name in names}
        try:
            for round_ in range(args.rounds + 1):
                turns = list(zip(names, passes, strict=True))
                for name, pass_type in turns[:: -1 if round_ % 2 else 1]:  # each first in turn
                    cnn.Pass = pass_type
                    spent = cnn_epoch.jitprop_epoch(images, labels, args.threads, args.batches)
                    if round_:
                        seconds[name].append(spent)
        finally:
            cnn.Pass = cnn_net.Pass
    base = seconds[names[0]]
    print(f"{args.batches} batches x {args.rounds} rounds, {args.threads} thread(s)")
    for name in names:
        ratio = statistics.median(np.divide(seconds[name], base))
        per_batch = 1e3 * statistics.median(seconds[name]) / args.batches
        print(f"{name:>20}: {per_batch:6.2f} ms a batch, {ratio:.3f} of {names[0]}")


if __name__ == "__main__":
    main()
