"""The convolution, its forward pass, dW and dX side by side: cross-correlation as PyTorch's
Conv2d, on maps laid out channel-major, (C, B, H, W).  Internal: jitprop.cnn_net calls it.

out[co, n, y, x] = b[co] + the sum over ci, ky, kx, in that order, of W[co, ci, ky, kx]
xp[ci, n, y + ky, x + kx], xp the input zero-padded by p.

The "wide row" trick on tall images: a padded channel of the whole batch, flattened, is one
image of B Hp rows of Wp.  Output (n, y, x) is the flat position q = (n Hp + y) Wp + x, and
every term of every output is flat[q + ky Wp + kx].  So a tap is a pass over a contiguous range
of q, a loop that vectorizes with no gather, as long as the batch; the positions past each
image's output (x >= Wo, or y >= Ho, which straddle two images) are computed and dropped.  The
passes' inner loops are kernels/conv_loops.py's; docs/kernels.md gives the design and what each
part buys, measured.  Either way the terms go left to right, so the result is the plain loop's
(tests/reference.py's), bit for bit in the forward pass.

Shapes: B batch, Ci / Co input / output channels, H x W a map (Hp x Wp zero-padded), k the
kernel's side.
"""

import numpy as np
from numba import prange

from jitprop.jit import calls_parallel, njit
from jitprop.kernels.conv_loops import (
    CHANNELS_PER_PASS,
    STRETCH,
    block_parts,
    forward_taps,
    one_tap,
    taps_sums,
)
from jitprop.kernels.vectors import ALIGN, FMA, aligned_zeros, copy_span, tree_sum

# Positions a job of conv_forward covers, about: fewer, longer jobs cost less to set up (2048
# took the largest layer from 3.3 to 2.8 ms a batch, benchmarks/cnn_epoch.py --stages), and its
# four accumulators still fit the L2 cache.
SPAN = 2048


@calls_parallel
def conv_forward(out, xp, W, b):
    """out (Co, B, Ho, Wo) = the cross-correlation of xp (Ci, B, Hp, Wp), already padded, with
    W (Co, Ci, k, k), plus b (Co,) (zeros for no bias); Ho = Hp - k + 1, Wo = Wp - k + 1."""
    Ci, B, Hp, Wp = xp.shape
    _correlate(out, xp.reshape(Ci, B * Hp * Wp), 0, Hp, Wp, W, b)


@njit(cache=True, parallel=True, fastmath=FMA)
def _correlate(out, flat, origin, Hp, Wp, W, b):
    """out[co, n, y, x] = b[co] + the sum over ci, ky, kx, in that order, of W[co, ci, ky, kx]
    flat[ci, origin + q + ky Wp + kx], q = (n Hp + y) Wp + x the output's position in tall wide
    rows of Wp, images of Hp rows; out (Co, B, Ho, Wo), Ho <= Hp, Wo <= Wp."""
    Co, B, Ho, Wo = out.shape
    Ci, k = flat.shape[0], W.shape[2]
    end = ((B - 1) * Hp + Ho - 1) * Wp + Wo  # one past the last output's position
    rows = max(1, SPAN // Wp)
    jobs = -(-((B - 1) * Hp + Ho) // rows)
    blocks = -(-Co // CHANNELS_PER_PASS)
    # A block's missing output channels have zero weights; they are computed and dropped.
    Wb = np.zeros((blocks * CHANNELS_PER_PASS, Ci, k, k), W.dtype)
    Wb[:Co] = W
    bb = np.zeros(blocks * CHANNELS_PER_PASS, out.dtype)
    bb[:Co] = b
    for job in prange(blocks * jobs):
        block, part = job // jobs, job % jobs
        first, row0 = block * CHANNELS_PER_PASS, part * rows
        start = row0 * Wp
        L = min(rows * Wp, end - start)
        sums = np.empty((CHANNELS_PER_PASS, L), out.dtype)
        for j in range(CHANNELS_PER_PASS):
            sums[j] = bb[first + j]
        if k == 3:
            forward_taps(sums, flat, Wb[first : first + CHANNELS_PER_PASS], origin + start, Wp)
        else:
            a0, a1, a2, a3 = sums[0], sums[1], sums[2], sums[3]
            for ci in range(Ci):
                for ky in range(k):
                    for kx in range(k):
                        w = Wb[first : first + CHANNELS_PER_PASS, ci, ky, kx].copy()
                        one_tap(a0, a1, a2, a3, flat[ci], origin + start + ky * Wp + kx, w)
        # Keep the positions that are outputs: rows y < Ho of an image, columns x < Wo.
        flat_out = out.reshape(Co * B * Ho * Wo)
        for r in range(-(-L // Wp)):
            n, y = (row0 + r) // Hp, (row0 + r) % Hp
            if y < Ho:
                width = min(Wo, L - r * Wp)
                for j in range(min(CHANNELS_PER_PASS, Co - first)):
                    at = ((first + j) * B + n) * Ho * Wo + y * Wo
                    copy_span(flat_out, at, sums[j], r * Wp, width, width)


@njit(cache=True, parallel=True)
def pad(xp, x, p):
    """xp (C, B, H + 2p, W + 2p) = x (C, B, H, W) with p zeros around each map."""
    C, B, H, W = x.shape
    Wp = W + 2 * p
    for m in prange(C * B):
        dst, src = xp[m // B, m % B].reshape((H + 2 * p) * Wp), x[m // B, m % B].reshape(H * W)
        dst[: p * Wp + p] = 0
        for y in range(H):
            row, at = src[y * W : y * W + W], (p + y) * Wp + p
            out = dst[at : at + W]
            for z in range(W):
                out[z] = row[z]
            dst[at + W : at + W + 2 * p] = 0  # this row's right margin, the next row's left
        dst[(p + H) * Wp + p :] = 0


@njit(cache=True, parallel=True)
def unpad(x, xp, p):
    """x (C, B, H, W) = the interior of xp (C, B, H + 2p, W + 2p)."""
    C, B, H, W = x.shape
    for m in prange(C * B):
        dst, src = x[m // B, m % B], xp[m // B, m % B]
        for y in range(H):
            for z in range(W):
                dst[y, z] = src[p + y, p + z]


# Stretches of STRETCH positions taps_sums takes a call: its inputs (32 stretches of two gradient
# rows and an input row, 192 KB in float32) stay in the L2 cache while it sweeps them once per
# vector of parts, whose loads and stores fewer, longer calls save (32 and 64 took 0.97-0.985
# of 16's epoch, benchmarks/cnn_kernels_ab.py; 4 and 8 were slower).
TILE = 32


@njit(cache=True)
def _margin(k, Wp):
    """The zeros before the data of conv_backward_params' scratch rows: room for the taps of
    conv_backward_input's first outputs, (k - 1) rows and columns back, in whole stretches of
    STRETCH, so that a position's stretch and lane (and so the trained bits) stay the same."""
    return -(-(k - 1) * (Wp + 1) // STRETCH) * STRETCH


# Bytes the kernels' large arrays start at a multiple of: a cache line, and an AVX-512 vector.
# NumPy's large arrays start 16 bytes into a page, so that every vector the kernels load from


def backward_params_scratch(Co, xp_shape, k, dtype):
    """The scratch arrays conv_backward_params needs (d, flats), allocated once for batches of
    up to B: fresh pages for megabytes of them at every call would cost as much as the sums.
    Each row has zeros before its data (_margin), and flats room past the batch for the taps of
    the last stretch, dropped ones included; every row starts at a multiple of ALIGN bytes."""
    Ci, B, Hp, Wp = xp_shape
    size = _margin(k, Wp) + -(-(B * Hp * Wp) // (4 * STRETCH)) * 4 * STRETCH
    spare = (k - 1) * Wp + 3 * -(-k // 3)
    spare = -(-spare // ALIGN) * ALIGN  # whole multiples of ALIGN elements, and so bytes
    # An even number of gradient rows: 3 x 3 kernels take output channels in pairs, and a
    # lone last one is paired with a spare row, whose sums are computed and dropped.
    return aligned_zeros((Co + Co % 2, size), dtype), aligned_zeros((Ci, size + spare), dtype)


@njit(cache=True, parallel=True, fastmath=FMA)
def conv_backward_params(dW, db, dout, xp, d, flats):
    """dW (Co, Ci, k, k) = the sum over n, y, x of dout[co, n, y, x] * xp[ci, n, y + ky, x + kx];
    db (Co,) = dout summed over n, y, x (pass db of size 0 for no bias); d and flats are
    scratch, from backward_params_scratch.

    The output gradient is laid out as the forward pass's tall wide rows (zeros where it kept
    no output), so that each tap is again one long dot product over positions; d keeps it so
    for conv_backward_input.  Per (output, input channel), a thread's own, the products are
    first added up elementwise, stretch after stretch of STRETCH positions, into STRETCH parts per
    tap; then each tap's parts are summed as a tree (tree_sum).  A 3 x 3 kernel's parts are
    added in vector registers (taps_sums, two output channels at a time); another kernel's in
    memory, four stretches a pass (block_parts), taps three of a row at a time, a kernel whose
    size is not a multiple of 3 with dropped taps, which read past its rows into spare zeros.
    Both add the same terms in the same order."""
    Co, B, Ho, Wo = dout.shape
    Ci, _, Hp, Wp = xp.shape
    k = dW.shape[2]
    groups = -(-k // 3)
    N, M = B * Hp * Wp, _margin(k, Wp)
    used = ((N + 4 * STRETCH - 1) // (4 * STRETCH)) * 4 * STRETCH
    grads = dout.reshape(Co * B * Ho * Wo)
    for m in prange(Co * B):
        co, n = m // B, m % B
        at = M + n * Hp * Wp
        for y in range(Ho):
            copy_span(d[co], at + y * Wp, grads, (m * Ho + y) * Wo, Wo, Wp)
        d[co, at + Ho * Wp : at + Hp * Wp] = 0
    for ci in prange(Ci):
        src = xp[ci].reshape(N)
        dst = flats[ci]
        dst[:M] = 0
        for q in range(N):
            dst[M + q] = src[q]
        dst[M + N :] = 0
    for co in prange(Co):
        d[co, :M] = 0
        d[co, M + N : M + used] = 0
        if db.size:
            rows = np.zeros(STRETCH)
            row_d = d[co]
            for first in range(M, M + used, STRETCH):
                for q in range(STRETCH):
                    rows[q] += row_d[first + q]
            db[co] = tree_sum(rows)
    if k == 3:
        s0, s1 = M // STRETCH, (M + used) // STRETCH
        for pair in prange((Co + 1) // 2 * Ci):
            co, ci = 2 * (pair // Ci), pair % Ci
            parts = np.zeros((2, 3, 3, STRETCH), dW.dtype)
            for s in range(s0, s1, TILE):
                taps_sums(parts, d[co : co + 2], flats[ci], Wp, s, min(s1, s + TILE))
            for j in range(min(2, Co - co)):
                for ky in range(3):
                    for kx in range(3):
                        dW[co + j, ci, ky, kx] = tree_sum(parts[j, ky, kx])
        return
    for pair in prange(Co * Ci):
        co, ci = pair // Ci, pair % Ci
        parts = np.zeros((k, 3 * groups, STRETCH), dW.dtype)
        for first in range(M, M + used, 4 * STRETCH):
            block_parts(parts, d[co], flats[ci], first, Wp)
        for ky in range(k):
            for kx in range(k):
                dW[co, ci, ky, kx] = tree_sum(parts[ky, kx])


@calls_parallel
def conv_backward_input(dxp, d, W):
    """dxp (Ci, B, Hp, Wp) = the gradient of the padded input xp: the output gradient, padded
    by k - 1, correlated with W (Co, Ci, k, k) turned by 180 degrees and transposed.  d is the
    output gradient as conv_backward_params left it: tall wide rows of Wp, images of Hp rows,
    which hold the padding's zeros already (an output row's last k - 1 columns, the next's
    first; an image's last k - 1 rows, the next's first), all but the first image's top,
    which is d's margin.  So every position is an output, and no padded copy is made.  d
    must hold this batch's gradient: conv_backward_params' last call, with dxp's batch size."""
    Co, Ci, k = W.shape[0], W.shape[1], W.shape[2]
    Hp, Wp = dxp.shape[2], dxp.shape[3]
    Wt = np.empty((Ci, Co, k, k), W.dtype)
    for ci in range(Ci):
        for co in range(Co):
            for ky in range(k):
                for kx in range(k):
                    Wt[ci, co, ky, kx] = W[co, ci, k - 1 - ky, k - 1 - kx]
    origin = _margin(k, Wp) - (k - 1) * (Wp + 1)
    _correlate(dxp, d[:Co], origin, Hp, Wp, Wt, np.zeros(Ci, dxp.dtype))
