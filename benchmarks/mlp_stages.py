"""Where an MLP epoch's time goes: the training step cut after each of its stages, one epoch of
batches each, in rounds; a stage's cost is the difference from the cut before it.  (perf has no
hardware counters on this VM and py-spy cannot see inside Numba's code, so the profile is made
by timing.)  784-128-10, relu, softmax cross-entropy, float32, as mlp_epoch.py.

    python benchmarks/mlp_stages.py [--data-dir ../shared/data/mnist] [--batch 64] [--threads 1]
"""

import argparse
import time

import numba
import numpy as np
from numba import njit

from jitprop import data, mlp

STAGES = [
    "gather the batch",
    "input layer forward + relu",
    "output layer forward",
    "softmax cross-entropy",
    "output layer dW, db",
    "output layer dx + relu'",
    "transpose the batch's pixels",
    "input layer dW, db",
    "SGD momentum update",
]


@njit
def epoch_until(stage, samples, order, buffers, acts, dacts, theta, velocity, grad, net):
    """The batches of one epoch, each run through the first `stage` stages of train_step."""
    shapes, offsets, act_offsets = net
    B = buffers[2].size
    (W1, b1), (W2, b2) = [mlp.layer_params(theta, shapes, offsets, k) for k in range(2)]
    (dW1, db1), (dW2, db2) = [mlp.layer_params(grad, shapes, offsets, k) for k in range(2)]
    h, logits = [mlp.layer_acts(acts, shapes, act_offsets, k, B) for k in range(2)]
    dh, dlogits = [mlp.layer_acts(dacts, shapes, act_offsets, k, B) for k in range(2)]
    for first in range(0, order.size - B + 1, B):
        rows, cols, y = mlp.gather_batch(buffers, samples, order[first : first + B])
        if stage > 1:
            mlp.sparse_forward(h, rows, W1, b1)
            mlp.relu_forward(h)
        if stage > 2:
            mlp.dense_forward(logits, h, W2, b2)
        if stage > 3:
            mlp.cross_entropy_forward_backward(dlogits, logits, y)
        if stage > 4:
            mlp.dense_backward_params(dW2, db2, dlogits, h)
        if stage > 5:
            mlp.dense_backward_input(dh, dlogits, W2)
            mlp.relu_backward(dh, h)
        if stage > 6:
            mlp.transpose_rows(cols, rows, B)
        if stage > 7:
            mlp.sparse_backward_params(dW1, db1, dh, cols)
        if stage > 8:
            mlp.sgd_momentum_update(
                theta, velocity, grad, net, np.float32(0.01), np.float32(0.9), np.float32(0)
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    numba.set_num_threads(args.threads)
    images, labels = data.load_split(args.data_dir, "train")
    network = mlp.Network([784, 128, 10], "float32")
    theta = network.pack(mlp.init_params([784, 128, 10], 0))
    acts, dacts, net, buffers = network.buffers(args.batch)
    state = (
        network.samples(images, labels),
        np.random.default_rng(0).permutation(len(images)),
        buffers,
        acts,
        dacts,
        theta,
        np.zeros_like(theta),
        np.zeros_like(theta),
        net,
    )
    cuts = range(1, len(STAGES) + 1)
    for cut in cuts:
        epoch_until(cut, *state)  # compile
    best = dict.fromkeys(cuts, np.inf)
    for _ in range(args.rounds):
        for cut in cuts:
            start = time.perf_counter()
            epoch_until(cut, *state)
            best[cut] = min(best[cut], time.perf_counter() - start)
    print(f"one epoch, batch {args.batch}, {args.threads} thread(s), best of {args.rounds}")
    print(f"{'stage':<32} {'seconds':>8} {'share':>6}")
    total = best[len(STAGES)]
    for cut, name in zip(cuts, STAGES, strict=True):
        cost = best[cut] - (best[cut - 1] if cut > 1 else 0.0)
        print(f"{name:<32} {cost:>8.3f} {cost / total:>6.0%}")
    print(f"{'all of it':<32} {total:>8.3f}")


if __name__ == "__main__":
    main()
