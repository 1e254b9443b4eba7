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
from jitprop.kernels import dense, optim

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
def epoch_until(stage, samples, order, buffers, net, sgd):
    """The batches of one epoch, each run through the first `stage` stages of _train_step.
    A hand copy of mlp's _train_step for this 784-128-10 relu network, cut into stages: no
    test ties it to the real one, so change it with mlp._network_forward/_network_backward."""
    layout, B = net.layout, buffers.y.size
    (W1, b1), (W2, b2) = [mlp._layer_params(sgd.theta, layout, k) for k in range(2)]
    (dW1, db1), (dW2, db2) = [mlp._layer_params(sgd.grad, layout, k) for k in range(2)]
    h, logits = [mlp._layer_acts(net.acts, layout, k, B) for k in range(2)]
    dh, dlogits = [mlp._layer_acts(net.dacts, layout, k, B) for k in range(2)]
    for first in range(0, order.size - B + 1, B):
        batch = mlp._gather_batch(buffers, samples, order[first : first + B])
        if stage > 1:
            dense.csr_forward(h, batch.csr, W1, b1)
            dense.relu_forward(h)
        if stage > 2:
            dense.dense_forward(logits, h, W2, b2)
        if stage > 3:
            dense.cross_entropy_forward_backward(dlogits, logits, batch.y)
        if stage > 4:
            dense.dense_backward_params(dW2, db2, dlogits, h)
        if stage > 5:
            dense.dense_backward_input(dh, dlogits, W2)
            dense.relu_backward(dh, h)
        if stage > 6:
            dense.csr_to_csc(batch.csc, batch.csr, B)
        if stage > 7:
            dense.csc_backward_params(dW1, db1, dh, batch.csc)
        if stage > 8:
            optim.sgd_momentum_update(sgd, np.float32(0.01))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data/mnist")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    numba.set_num_threads(args.threads)
    images, labels = data.load_split(args.data_dir, "train")
    network = mlp._Network([784, 128, 10], "float32")
    theta = network.pack(mlp.init_params([784, 128, 10], 0))
    state = (
        network.samples(images, labels),
        np.random.default_rng(0).permutation(len(images)),
        network.batch_buffers(args.batch),
        network.net(args.batch, dense.RELU, dense.CROSS_ENTROPY),
        optim.sgd_state(theta, network.segments(), 0.9, 0.0),
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
