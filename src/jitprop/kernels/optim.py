"""The optimizer: SGD with momentum on a flat parameter buffer, its state laid out alike, as
llm.c does: one update loop, one allocation.  Internal: jitprop.mlp and jitprop.cnn call it.

Shapes: P parameters in theta, K blocks of them.
"""

from collections import namedtuple

import numpy as np
from numba import prange

from jitprop.jit import njit

# `blocks` (K, 3) cuts theta into runs of at most PARAMS_PER_BLOCK
# parameters, (start, end, decays): the update spreads them over the threads, and applies weight
# decay to a block only when `decays` is 1 (weights, not biases or batch-norm parameters).
SGD = namedtuple("SGD", ["theta", "velocity", "grad", "blocks", "momentum", "weight_decay"])
PARAMS_PER_BLOCK = 8192


def sgd_state(theta, segments, momentum, weight_decay):
    """SGD with momentum for theta, its velocity starting at zero; segments: (start, end,
    decays) covering theta."""
    blocks = [
        (first, min(first + PARAMS_PER_BLOCK, end), decays)
        for start, end, decays in segments
        for first in range(start, end, PARAMS_PER_BLOCK)
    ]
    cast = theta.dtype.type
    return SGD(
        theta,
        np.zeros_like(theta),
        np.zeros_like(theta),
        np.array(blocks, dtype=np.int64).reshape(-1, 3),
        cast(momentum),
        cast(weight_decay),
    )


@njit(cache=True)
def _momentum_step(W, v, g, lr, momentum, weight_decay):
    """v <- momentum * v + (g + weight_decay * W); W <- W - lr * v, elementwise on 1-D views."""
    # Indexing from 0 lets Numba drop its negative-index checks, so LLVM vectorizes the loop.
    for k in range(W.size):
        v[k] = momentum * v[k] + (g[k] + weight_decay * W[k])
        W[k] -= lr * v[k]


@njit(cache=True, parallel=True)
def sgd_momentum_update(sgd, lr):
    """One SGD-with-momentum step of every parameter, block by block over the threads."""
    # Only arrays and scalars may enter a prange loop, not the named tuple holding them.
    theta, velocity, grad, blocks, momentum, decay = sgd
    for k in prange(blocks.shape[0]):
        start, end = blocks[k, 0], blocks[k, 1]
        weight_decay = decay if blocks[k, 2] else decay * 0
        _momentum_step(
            theta[start:end], velocity[start:end], grad[start:end], lr, momentum, weight_decay
        )
