"""The CNN's training epoch with the whole of jitprop (its kernels, at any depth of the package,
and the passes that call them) at two git revisions, side by side: one worker process per
revision, each importing its own copy of the package, and rounds that alternate between them
(never both at once).  Each prints its median milliseconds a batch and the median of the rounds'
ratios to the first.  On machines whose speed drifts by 10-30% within minutes, this is how to
tell whether a kernel change pays.

    python benchmarks/cnn_kernels_ab.py BASE [NEW] [--data-dir ../shared/data/mnist]
                                        [--threads 1] [--batches 60] [--rounds 5]

NEW defaults to the working tree's src/jitprop.  Each worker compiles into a Numba cache of its
own, and its first round is a warm-up, not counted.  A revision's jitprop must have
cnn._Trainer and config.run_settings as they are now (every revision since the CNN arrived
does).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# A worker: builds the CNN's trainer as cnn.train does, then times `batches` training steps
# each time it reads a line, and answers with the seconds.
WORKER = """
import sys, time
import numba, numpy as np
from jitprop import cnn, config, data
data_dir, threads, batches = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
numba.set_num_threads(threads)
images, labels = data.load_split(data_dir, "train")
settings = config.run_settings("cnn", {"augment": {"rotation": 0.0, "shift": 0.0}})
rng = np.random.default_rng(0)
trainer = cnn._Trainer((images, labels), (images[:1], labels[:1]), settings, rng)
trainer.begin_epoch(rng)
order = rng.permutation(len(labels))
totals, corrects = np.empty(batches), np.empty(batches, np.int64)
rates = np.full(batches, 0.05, settings["dtype"])
for line in sys.stdin:
    start = time.perf_counter()
    trainer.train_batches(totals, corrects, order, 0, rates, np.inf)
    print(time.perf_counter() - start, flush=True)
"""


def package_at(revision, folder):
    """The directory holding jitprop as it was at `revision` (its src/, extracted)."""
    archive = folder / f"{len(list(folder.iterdir()))}.tar"
    subprocess.run(
        ["git", "archive", "--output", str(archive), revision, "src/jitprop"], cwd=ROOT, check=True
    )
    with tarfile.open(archive) as tar:
        tar.extractall(archive.with_suffix(""), filter="data")
    return archive.with_suffix("") / "src"


def start_worker(source, cache, args):
    env = {**os.environ, "PYTHONPATH": str(source), "NUMBA_CACHE_DIR": str(cache)}
    command = [sys.executable, "-c", WORKER, args.data_dir, str(args.threads), str(args.batches)]
    return subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )


def time_round(worker):
    worker.stdin.write("go\n")
    worker.stdin.flush()
    line = worker.stdout.readline()
    if not line:
        raise RuntimeError(f"a worker died (exit {worker.wait()})")
    return float(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="a git revision, e.g. HEAD~2")
    parser.add_argument("new", nargs="?", help="a git revision (default: the working tree)")
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    args.data_dir = str(Path(args.data_dir).resolve())
    names = [args.base, args.new or "working tree"]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        sources = [package_at(args.base, folder)]
        sources.append(package_at(args.new, folder) if args.new else ROOT / "src")
        workers = [
            start_worker(source, folder / f"cache{k}", args) for k, source in enumerate(sources)
        ]
        seconds = {name: [] for name in names}
        try:
            for round_ in range(args.rounds + 1):
                turns = list(zip(names, workers, strict=True))
                for name, worker in turns[:: -1 if round_ % 2 else 1]:  # each first in turn
                    spent = time_round(worker)
                    if round_:
                        seconds[name].append(spent)
        finally:
            for worker in workers:
                worker.stdin.close()
                worker.wait()
    base = seconds[names[0]]
    print(f"{args.batches} batches x {args.rounds} rounds, {args.threads} thread(s)")
    for name in names:
        ratio = statistics.median(np.divide(seconds[name], base))
        per_batch = 1e3 * statistics.median(seconds[name]) / args.batches
        print(f"{name:>20}: {per_batch:6.2f} ms a batch, {ratio:.3f} of {names[0]}")


if __name__ == "__main__":
    main()
