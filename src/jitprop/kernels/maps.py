"""Kernels of the layers on feature maps, each forward beside its backward: relu, batch
normalization, dropout, max pooling and global average pooling, and the change of layout between
maps and rows.  Internal: jitprop.cnn_net calls them.

Layout: feature maps are channel-major, (C, B, H, W) (see kernels/conv.py); rows are (B, F).
Every kernel spreads independent outputs over the threads and sums each one in a fixed order, so
the bits do not depend on the number of threads.
"""

import math

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import errors
from numba.extending import intrinsic, overload

from jitprop.jit import njit
from jitprop.kernels.vectors import (
    array_args,
    check_arrays,
    lanes_below,
    masked,
    tree_sum,
    vector_at,
    vector_bytes,
    vector_starts,
)

# --------------------------------------------------------------------------- relu
# On flat views of any activation, in place; parallel over stretches of it.
CHUNK = 1 << 14


@njit(cache=True, parallel=True)
def relu_forward(x):
    """x = max(x, 0), in place; x flat."""
    for part in prange(-(-x.size // CHUNK)):
        v = x[part * CHUNK : (part + 1) * CHUNK]
        zero = v.dtype.type(0)
        for i in range(v.size):
            v[i] = max(v[i], zero)


@njit(cache=True, parallel=True)
def relu_backward(dx, out):
    """dx = dx where the relu's output was positive, else 0, in place; flat."""
    for part in prange(-(-dx.size // CHUNK)):
        d, o = dx[part * CHUNK : (part + 1) * CHUNK], out[part * CHUNK : (part + 1) * CHUNK]
        zero = d.dtype.type(0)
        for i in range(d.size):
            d[i] = d[i] if o[i] > zero else zero


# --------------------------------------------------------------------------- batch norm
# Training: per channel c, mean and biased variance over (batch, row, column), summed in
# float64: each position's column over the batch, then a tree (the variance about the mean, a
# second pass); y = gamma (x - mean) / sqrt(var + eps) + beta.  The running mean and variance
# (unbiased) move by `momentum` towards the batch's, as PyTorch's BatchNorm2d does.


@njit(cache=True, parallel=True)
def batchnorm_forward(
    y, mean, inv_std, x, gamma, beta, running_mean, running_var, momentum, eps, mask, key, drop
):
    """y (C, B, H, W) from x; the batch's mean and inv_std (C,) saved for the backward pass.
    When mask is not empty, the dropout layer after is done in the same pass: y is then
    dropout_forward's output, with its `mask`, `key` and `drop` = (threshold, scale)."""
    C, B, H, W = x.shape
    M, HW = B * H * W, H * W
    key, threshold, scale = np.uint32(key), np.uint32(drop[0]), y.dtype.type(drop[1])
    zero = y.dtype.type(0)
    for c in prange(C):
        plane = x[c].reshape(B, HW)
        sums = np.zeros(HW)
        for n in range(B):
            for q in range(HW):
                sums[q] += plane[n, q]
        mu = tree_sum(sums) / M
        sums[:] = 0
        for n in range(B):
            for q in range(HW):
                sums[q] += (plane[n, q] - mu) ** 2
        var = tree_sum(sums) / M
        inv = 1.0 / math.sqrt(var + eps)
        mean[c], inv_std[c] = mu, inv
        m, i_s, g, bt = x.dtype.type(mu), x.dtype.type(inv), gamma[c], beta[c]
        src, dst = x[c].reshape(M), y[c].reshape(M)
        if mask.size:
            kept, first = mask[c * M : (c + 1) * M], np.uint32(c * M)
            for q in range(M):
                keep = _kept(first + np.uint32(q), key, threshold)
                kept[q] = keep
                dst[q] = (g * ((src[q] - m) * i_s) + bt) * scale if keep else zero
        else:
            for q in range(M):
                dst[q] = g * ((src[q] - m) * i_s) + bt
        running_mean[c] = (1 - momentum) * running_mean[c] + momentum * mu
        running_var[c] = (1 - momentum) * running_var[c] + momentum * var * M / max(M - 1, 1)


@njit(cache=True, parallel=True)
def batchnorm_backward(dx, dgamma, dbeta, dy, x, mean, inv_std, gamma, mask, scale, relu):
    """dx (C, B, H, W) from dy, with dgamma, dbeta (C,): per channel, with xhat = (x - mean)
    inv_std as the forward pass computed it (from its x, mean and inv_std), dbeta = sum dy,
    dgamma = sum dy xhat, dx = gamma inv_std / M (M dy - dbeta - xhat dgamma).  dx may be dy.
    Two more layers' backward passes can be done in the same passes: when mask is not empty,
    dy is first that of the dropout after (dropout_backward's, with its mask and scale); with
    relu, dx is then that of the relu before (relu_backward's; x is the relu's output)."""
    C, B, H, W = dy.shape
    M, HW = B * H * W, H * W
    zero = dy.dtype.type(0)
    for c in prange(C):
        m, i_s = x.dtype.type(mean[c]), x.dtype.type(inv_std[c])
        d, xs = dy[c].reshape(B, HW), x[c].reshape(B, HW)
        kept = mask[c * M : (c + 1) * M].reshape(B, HW) if mask.size else mask.reshape(1, 0)
        sums, dots = np.zeros(HW), np.zeros(HW)
        for n in range(B):
            if mask.size:
                for q in range(HW):
                    v = d[n, q] * scale if kept[n, q] else zero
                    sums[q] += v
                    dots[q] += v * ((xs[n, q] - m) * i_s)
            else:
                for q in range(HW):
                    sums[q] += d[n, q]
                    dots[q] += d[n, q] * ((xs[n, q] - m) * i_s)
        sum_dy, sum_dy_xhat = tree_sum(sums), tree_sum(dots)
        dbeta[c], dgamma[c] = sum_dy, sum_dy_xhat
        t = dy.dtype.type
        g, mean_dy, mean_dy_xhat = t(gamma[c] * inv_std[c]), t(sum_dy / M), t(sum_dy_xhat / M)
        d1, x1, out = dy[c].reshape(M), x[c].reshape(M), dx[c].reshape(M)
        kept1 = mask[c * M : (c + 1) * M] if mask.size else mask
        if mask.size and relu:
            for q in range(M):
                v = d1[q] * scale if kept1[q] else zero
                v = g * (v - mean_dy - ((x1[q] - m) * i_s) * mean_dy_xhat)
                out[q] = v if x1[q] > zero else zero
        elif mask.size:
            for q in range(M):
                v = d1[q] * scale if kept1[q] else zero
                out[q] = g * (v - mean_dy - ((x1[q] - m) * i_s) * mean_dy_xhat)
        elif relu:
            for q in range(M):
                v = g * (d1[q] - mean_dy - ((x1[q] - m) * i_s) * mean_dy_xhat)
                out[q] = v if x1[q] > zero else zero
        else:
            for q in range(M):
                out[q] = g * (d1[q] - mean_dy - ((x1[q] - m) * i_s) * mean_dy_xhat)


@njit(cache=True, parallel=True)
def batchnorm_evaluate(y, x, gamma, beta, mean, var, eps):
    """y = gamma (x - mean) / sqrt(var + eps) + beta with the running statistics; (C, B, H, W)."""
    C, B, H, W = x.shape
    for m in prange(C * B):
        c, n = m // B, m % B
        t = x.dtype.type
        inv, mc, g, bt = t(1.0 / math.sqrt(var[c] + eps)), t(mean[c]), t(gamma[c]), t(beta[c])
        src, dst = x[c, n].reshape(H * W), y[c, n].reshape(H * W)
        for q in range(H * W):
            dst[q] = g * ((src[q] - mc) * inv) + bt


# --------------------------------------------------------------------------- dropout
# Inverted dropout: an element is kept, and scaled by 1 / (1 - p), when a 32-bit hash of (its
# flat index, key) is at least p * 2**32.  The key is drawn from the run's generator for each
# batch and layer, so a run's masks are reproducible.  The hash is a counter-based generator
# (Wellons' lowbias32 finalizer, of the index's hash xor the key), as Philox is for PyTorch on
# GPUs: an element's draw does not depend on the order, and so on the threads, in which
# elements are visited.
MIX1, MIX2, MASK32 = np.uint64(0x7FEB352D), np.uint64(0x846CA68B), np.uint64(0xFFFFFFFF)
SHIFT15, SHIFT16 = np.uint32(15), np.uint32(16)


@njit(cache=True, inline="always")
def _hash32(z):
    """lowbias32 of z (uint32): a well-mixed 32-bit value.  The products are taken in 64 bits
    and cut back to 32 (which is what Numba does with a product of uint32s anyway)."""
    z = np.uint32(z ^ (z >> SHIFT16))
    z = np.uint32((np.uint64(z) * MIX1) & MASK32)
    z = np.uint32(z ^ (z >> SHIFT15))
    z = np.uint32((np.uint64(z) * MIX2) & MASK32)
    return np.uint32(z ^ (z >> SHIFT16))


@njit(cache=True, inline="always")
def _kept(index, key, threshold):
    """Whether dropout keeps the element at flat `index` under `key`: the one test that
    dropout_forward and batchnorm_forward's fused dropout both make."""
    return _hash32(_hash32(index) ^ key) >= threshold


@njit(cache=True, parallel=True)
def dropout_forward(x, mask, key, threshold, scale):
    """x *= scale where _hash32(_hash32(flat index) ^ key) >= threshold, else 0, in place, x
    flat; mask (uint8, x's size) records which were kept, for dropout_backward."""
    key, threshold = np.uint32(key), np.uint32(threshold)
    zero = x.dtype.type(0)
    for part in prange(-(-x.size // CHUNK)):
        v, kept = (
            x[part * CHUNK : (part + 1) * CHUNK],
            mask[part * CHUNK : (part + 1) * CHUNK],
        )
        first = np.uint32(part * CHUNK)
        for i in range(v.size):
            keep = _kept(first + np.uint32(i), key, threshold)
            kept[i] = keep
            v[i] = v[i] * scale if keep else zero


@njit(cache=True, parallel=True)
def dropout_backward(dx, mask, scale):
    """dx *= scale where the forward pass kept the element, else 0; in place, flat."""
    zero = dx.dtype.type(0)
    for part in prange(-(-dx.size // CHUNK)):
        v, kept = (
            dx[part * CHUNK : (part + 1) * CHUNK],
            mask[part * CHUNK : (part + 1) * CHUNK],
        )
        for i in range(v.size):
            v[i] = v[i] * scale if kept[i] else zero


# --------------------------------------------------------------------------- pooling


@njit(cache=True, parallel=True)
def maxpool_forward(out, argmax, x, k):
    """out (C, B, H/k, W/k) = the max of each k x k window of x; argmax (same shape, uint16) its
    position ky * k + kx in the window, the first maximum in row-major order on ties.  A NaN
    wins its window, as in PyTorch, so that a diverging run still shows NaN."""
    C, B, Ho, Wo = out.shape
    for m in prange(C * B):
        c, n = m // B, m % B
        src, dst, where = x[c, n], out[c, n], argmax[c, n]
        for i in range(Ho):
            if k == 2:  # the common case, without branches (4.6x faster) or divisions
                top, bottom = src[2 * i], src[2 * i + 1]
                for j in range(Wo):
                    best, v = top[2 * j], top[2 * j + 1]
                    take = v > best or v != v
                    best, at = (v, np.uint16(1)) if take else (best, np.uint16(0))
                    v = bottom[2 * j]
                    take = v > best or v != v
                    best, at = (v, np.uint16(2)) if take else (best, at)
                    v = bottom[2 * j + 1]
                    take = v > best or v != v
                    best, at = (v, np.uint16(3)) if take else (best, at)
                    dst[i, j], where[i, j] = best, at
                continue
            for j in range(Wo):
                best, at = src[i * k, j * k], 0
                for t in range(1, k * k):
                    v = src[i * k + t // k, j * k + t % k]
                    if v > best or v != v:
                        best, at = v, t
                dst[i, j], where[i, j] = best, at


def _unpool_row(dst, top, grad, where, at, Wo):
    """dst[top + a W + 2 j + b] = grad[at + j] if where[at + j] == 2 a + b, else 0, for j < Wo
    and a, b in 0, 1 (W = 2 Wo): a row of 2 x 2 windows' gradients back to their rows of the
    map, dst and grad flat.  What Numba compiles is _unpool_row_in_vectors; this is its
    stand-in for NUMBA_DISABLE_JIT."""
    W = 2 * Wo
    for j in range(Wo):
        for a in range(2):
            for b in range(2):
                hit = where[at + j] == 2 * a + b
                dst[top + a * W + 2 * j + b] = grad[at + j] if hit else 0


@intrinsic
def _unpool_row_in_vectors(typingctx, dst, top, grad, where, at, Wo):
    """_unpool_row in LLVM IR, a vector of windows at a time, the last one masked: each
    window's four outputs are picked by comparing its argmax, and two rows' of them
    interleaved, as a map's short rows leave LLVM's loops mostly scalar (see copy_span)."""
    check_arrays("_unpool_row_in_vectors", (dst, grad), (1, 1))
    if not (isinstance(where, types.Array) and where.dtype == types.uint16 and where.ndim == 1):
        raise errors.TypingError(f"_unpool_row_in_vectors takes uint16 argmaxes, got {where}")
    sig = types.void(dst, types.intp, grad, where, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        dst_a, grad_a, where_a = array_args(context, builder, signature, args, (0, 2, 3))
        top, at, Wo = args[1], args[4], args[5]
        real = context.get_value_type(signature.args[0].dtype)
        size = context.get_abi_sizeof(real)
        lanes = vector_bytes(context) // size
        i64, i32, i16 = ir.IntType(64), ir.IntType(32), ir.IntType(16)
        vector, pair, indices = (
            ir.VectorType(real, lanes),
            ir.VectorType(real, 2 * lanes),
            ir.VectorType(i16, lanes),
        )
        load, load_index = masked(builder, "load", vector), masked(builder, "load", indices)
        store = masked(builder, "store", pair)
        zeros = ir.Constant(vector, [0.0] * lanes)
        align, index_align = ir.Constant(i32, size), ir.Constant(i32, 2)
        interleave = ir.Constant(
            ir.VectorType(i32, 2 * lanes), [i // 2 + lanes * (i % 2) for i in range(2 * lanes)]
        )
        W = builder.mul(Wo, ir.Constant(i64, 2))
        with vector_starts(builder, Wo, lanes) as j:
            reads = lanes_below(builder, j, Wo, lanes)
            source = builder.add(at, j)
            values = builder.call(
                load, [vector_at(builder, grad_a, source, vector), align, reads, zeros]
            )
            argmax = builder.call(
                load_index,
                [
                    vector_at(builder, where_a, source, indices),
                    index_align,
                    reads,
                    ir.Constant(indices, [0] * lanes),
                ],
            )
            picked = [
                builder.select(
                    builder.icmp_unsigned("==", argmax, ir.Constant(indices, [t] * lanes)),
                    values,
                    zeros,
                )
                for t in range(4)
            ]
            twice = builder.mul(j, ir.Constant(i64, 2))
            writes = lanes_below(builder, twice, W, 2 * lanes)
            for a in range(2):  # the windows' top row, then their bottom row: 2 j + b
                row = builder.shuffle_vector(picked[2 * a], picked[2 * a + 1], interleave)
                start = builder.add(top, builder.mul(W, ir.Constant(i64, a)))
                target = vector_at(builder, dst_a, builder.add(start, twice), pair)
                builder.call(store, [row, target, align, writes])
        return context.get_dummy_value()

    return sig, codegen


@overload(_unpool_row)
def _unpool_row_jit(dst, top, grad, where, at, Wo):
    def compiled(dst, top, grad, where, at, Wo):
        _unpool_row_in_vectors(dst, top, grad, where, at, Wo)

    return compiled


@njit(cache=True, parallel=True)
def maxpool_backward(dx, dout, argmax, k):
    """dx (C, B, H, W): each window's gradient to its argmax, zeros elsewhere."""
    C, B, Ho, Wo = dout.shape
    for m in prange(C * B):
        c, n = m // B, m % B
        dst, src, where = dx[c, n], dout[c, n], argmax[c, n]
        if k == 2 and dst.shape == (2 * Ho, 2 * Wo):  # the common case: each row written
            # once, in order, in vectors; windows that do not tile the map go the general way
            image = dst.reshape(4 * Ho * Wo)
            grads, argmaxes = src.reshape(Ho * Wo), where.reshape(Ho * Wo)
            for i in range(Ho):
                _unpool_row(image, 4 * i * Wo, grads, argmaxes, i * Wo, Wo)
            continue
        dst[:] = 0
        for i in range(Ho):
            for j in range(Wo):
                t = where[i, j]
                dst[i * k + t // k, j * k + t % k] = src[i, j]


@njit(cache=True, parallel=True)
def gap_forward(out, x):
    """out (B, C) = the mean of each map of x (C, B, H, W): its sum, in order, over H W."""
    C, B, H, W = x.shape
    for n in prange(B):
        for c in range(C):
            row, total = x[c, n].reshape(H * W), x.dtype.type(0)
            for q in range(H * W):
                total += row[q]
            out[n, c] = total / (H * W)


@njit(cache=True, parallel=True)
def gap_backward(dx, dout):
    """dx (C, B, H, W) = dout (B, C) / (H W), spread over each map."""
    C, B, H, W = dx.shape
    for n in prange(B):
        for c in range(C):
            dx[c, n] = dout[n, c] / (H * W)


# --------------------------------------------------------------------------- layout


@njit(cache=True, parallel=True)
def maps_to_rows(rows, x):
    """rows (B, C H W) = x (C, B, H, W), each sample's maps flattened in (c, y, x) order."""
    C, B, H, W = x.shape
    for n in prange(B):
        for c in range(C):
            rows[n, c * H * W : (c + 1) * H * W] = x[c, n].reshape(H * W)


@njit(cache=True, parallel=True)
def rows_to_maps(x, rows):
    """x (C, B, H, W) = rows (B, C H W): maps_to_rows undone."""
    C, B, H, W = x.shape
    for n in prange(B):
        for c in range(C):
            x[c, n] = rows[n, c * H * W : (c + 1) * H * W].reshape(H, W)
