"""Kernels of the convolutional network's layers, each forward beside its backward: convolution,
relu, batch normalization, dropout, max pooling and global average pooling.  Internal: jitprop.cnn
calls them (its linear layer and loss are jitprop.layers').

Layout: feature maps are channel-major, (C, B, H, W), so that one channel of the whole batch is
one contiguous "tall" image of B H rows (see convolution); vectors are (B, F).  Shapes: B batch,
C channels (Ci in, Co out), H x W a map (Hp x Wp zero-padded), k the kernel size.  Every kernel
spreads independent outputs over the threads and sums each one in a fixed order, so the bits do
not depend on the number of threads.
"""

import contextlib
import math

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils, errors
from numba.extending import intrinsic, overload

from jitprop.jit import calls_parallel, njit

# --------------------------------------------------------------------------- convolution
# Cross-correlation, as PyTorch's Conv2d: out[co, n, y, x] = b[co] + the sum over ci, ky, kx, in
# that order, of W[co, ci, ky, kx] * xp[ci, n, y + ky, x + kx], xp the input zero-padded by p.
#
# The "wide row" trick on tall images: a padded channel of the whole batch, flattened, is one
# image of B Hp rows of Wp.  Output (n, y, x) is the flat position q = (n Hp + y) Wp + x, and
# every term of every output is flat[q + ky Wp + kx].  So a tap is a pass over a contiguous range
# of q, a loop that vectorizes with no gather, as long as the batch; the positions past each
# image's output (x >= Wo, or y >= Ho, which straddle two images) are computed and dropped.
# A 3 x 3 kernel's sums of two vectors of positions (32 in float32 with AVX-512) for four
# output channels stay in vector registers while every input channel's nine taps are added
# (_forward_taps, "sums in registers"); another kernel adds one tap a pass for four output
# channels to rows of sums in memory (_one_tap).
# Either way the terms go left to right, so the result is the plain loop's.  It buys 22-27x the
# plain loop's speed per layer of the default network (8x on the first, one input channel), and
# conv_backward_params 15-28x (benchmarks/cnn_conv.py, one thread, AVX-512;
# tests/test_benchmarks.py checks its plain loops).
# Multiply-adds are fused (FMA, the only fastmath flag here): the same bits on every machine
# with FMA (Intel Core and Xeon since 2013, AMD since 2012, every ARM64), whatever its vector
# width (tests/test_targets.py).
FMA = {"contract"}
BLOCK = 4  # output channels per pass
# Positions a job of conv_forward covers, about: fewer, longer jobs cost less to set up (2048
# took the largest layer from 3.3 to 2.8 ms a batch, benchmarks/cnn_epoch.py --stages), and its
# four accumulators still fit the L2 cache.
SPAN = 2048
# Positions a stretch of conv_backward_params covers, chosen when its parts were summed in
# memory (512 beat 128, 256, 1024 and 2048).  It decides which terms each part adds, and so
# the trained bits: changing it would redraw every documented CNN result.
ROWS = 512


@njit(cache=True, fastmath=FMA)
def _nine_taps(a0, a1, a2, a3, src, at, Wp, w):
    """a_j[q] += the sum over t < 9 of w[j, t] src[at + (t // 3) Wp + t % 3 + q], for the four
    output channels j of a block and one input channel of a 3 x 3 kernel; w (4, 9)."""
    L = a0.size
    r0, r1, r2 = at, at + Wp, at + 2 * Wp
    s0, s1, s2 = src[r0 : r0 + L], src[r0 + 1 : r0 + 1 + L], src[r0 + 2 : r0 + 2 + L]
    s3, s4, s5 = src[r1 : r1 + L], src[r1 + 1 : r1 + 1 + L], src[r1 + 2 : r1 + 2 + L]
    s6, s7, s8 = src[r2 : r2 + L], src[r2 + 1 : r2 + 1 + L], src[r2 + 2 : r2 + 2 + L]
    u0, u1, u2, u3, u4, u5, u6, u7, u8 = w[0]
    v0, v1, v2, v3, v4, v5, v6, v7, v8 = w[1]
    x0, x1, x2, x3, x4, x5, x6, x7, x8 = w[2]
    y0, y1, y2, y3, y4, y5, y6, y7, y8 = w[3]
    for q in range(L):
        t0, t1, t2, t3, t4, t5, t6, t7, t8 = (
            s0[q],
            s1[q],
            s2[q],
            s3[q],
            s4[q],
            s5[q],
            s6[q],
            s7[q],
            s8[q],
        )
        a0[q] = (
            a0[q]
            + u0 * t0
            + u1 * t1
            + u2 * t2
            + u3 * t3
            + u4 * t4
            + u5 * t5
            + u6 * t6
            + u7 * t7
            + u8 * t8
        )
        a1[q] = (
            a1[q]
            + v0 * t0
            + v1 * t1
            + v2 * t2
            + v3 * t3
            + v4 * t4
            + v5 * t5
            + v6 * t6
            + v7 * t7
            + v8 * t8
        )
        a2[q] = (
            a2[q]
            + x0 * t0
            + x1 * t1
            + x2 * t2
            + x3 * t3
            + x4 * t4
            + x5 * t5
            + x6 * t6
            + x7 * t7
            + x8 * t8
        )
        a3[q] = (
            a3[q]
            + y0 * t0
            + y1 * t1
            + y2 * t2
            + y3 * t3
            + y4 * t4
            + y5 * t5
            + y6 * t6
            + y7 * t7
            + y8 * t8
        )


@njit(cache=True, fastmath=FMA)
def _one_tap(a0, a1, a2, a3, src, at, w):
    """a_j[q] += w[j] src[at + q] for the four output channels j of a block; w (4,)."""
    s = src[at : at + a0.size]
    w0, w1, w2, w3 = w[0], w[1], w[2], w[3]
    for q in range(a0.size):
        t = s[q]
        a0[q] = a0[q] + w0 * t
        a1[q] = a1[q] + w1 * t
        a2[q] = a2[q] + w2 * t
        a3[q] = a3[q] + w3 * t


# --------------------------------------------------------------------------- sums in registers
# Numba cannot keep a vector of sums in registers across a loop: a sum carried by a loop is a
# reduction, which LLVM vectorizes only if allowed to regroup its terms.  The two loops that
# need it are written in LLVM IR (numba.extending.intrinsic), each lane of a vector one sum,
# its terms in order, each multiply-add fused as the memory loops' `contract` lets LLVM fuse
# them: with llvm.fma where the target has FMA (every ARM64; x86 with +fma), else a multiply
# and an add.  So how wide the vectors are changes the speed only, never the bits.
X86 = llvm.get_process_triple().startswith(("x86_64", "i386", "i686"))


def _target_features(context):
    """The features Numba compiles for (the host's, or NUMBA_CPU_FEATURES), as a set: a private
    attribute, but the only place that says which vectors and instructions the target has."""
    return set(context.codegen()._tm_features.split(","))


def _vector_bytes(context):
    """The width of the widest vectors Numba compiles for: 64 bytes with AVX-512, 32 with AVX,
    else 16."""
    features = _target_features(context)
    return 64 if "+avx512f" in features else 32 if "+avx" in features else 16


def _multiply_add(context, builder, vector, lanes, size):
    """(a, b, c) -> a b + c on `vector`s, rounded as the memory loops round it (see above)."""
    if X86 and "+fma" not in _target_features(context):
        return lambda a, b, c: builder.fadd(c, builder.fmul(a, b))
    name = f"llvm.fma.v{lanes}f{8 * size}"
    fma = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vector, [vector] * 3), name
    )
    return lambda a, b, c: builder.call(fma, [a, b, c])


def _check_arrays(name, arrays, ndims):
    """Raise a TypingError unless `arrays` are C-contiguous, of one dtype, float32 or float64,
    with `ndims` dimensions: the IR reads them as such."""
    dtype = arrays[0].dtype if isinstance(arrays[0], types.Array) else None
    for array, ndim in zip(arrays, ndims, strict=True):
        if not (
            isinstance(array, types.Array)
            and (array.layout, array.ndim, array.dtype) == ("C", ndim, dtype)
            and dtype in (types.float32, types.float64)
        ):
            raise errors.TypingError(
                f"{name} takes C-contiguous float32 or float64 arrays of one dtype with "
                f"{ndims} dimensions, got {arrays}"
            )


def _vector_at(builder, array, index, vector):
    """A pointer to the (unaligned) vector at element `index` of array's data."""
    return builder.bitcast(builder.gep(array.data, [index]), vector.as_pointer())


def _arrays(context, builder, signature, args, positions):
    """The intrinsic's arguments at `positions`, as arrays (data, shape, strides)."""
    return [context.make_array(signature.args[n])(context, builder, args[n]) for n in positions]


def _element_strides(builder, array, ndim, size):
    """array's strides in elements of `size` bytes."""
    strides = cgutils.unpack_tuple(builder, array.strides, ndim)
    return [builder.udiv(stride, ir.Constant(stride.type, size)) for stride in strides]


def _masked(builder, operation, vector):
    """LLVM's masked load or store (`operation`) of `vector`s: lanes whose mask is off are not
    read (a load gives the pass-through's lane) or not written."""
    pointer = vector.as_pointer()
    masks = ir.VectorType(ir.IntType(1), vector.count)
    element = vector.element
    kind = {ir.FloatType: "f32", ir.DoubleType: "f64"}.get(type(element))
    name = f"llvm.masked.{operation}.v{vector.count}{kind or f'i{element.width}'}.p0"
    i32 = ir.IntType(32)
    if operation == "load":
        signature = ir.FunctionType(vector, [pointer, i32, masks, vector])
    else:
        signature = ir.FunctionType(ir.VoidType(), [vector, pointer, i32, masks])
    return cgutils.get_or_insert_function(builder.module, signature, name)


def _lanes_below(builder, first, limit, lanes):
    """The mask of lanes i with first + i < limit (i64 values)."""
    i32, indices = ir.IntType(32), ir.VectorType(ir.IntType(64), lanes)
    undef, zeros = (
        ir.Constant(indices, ir.Undefined),
        ir.Constant(ir.VectorType(i32, lanes), [0] * lanes),
    )

    def splat(value):
        return builder.shuffle_vector(
            builder.insert_element(undef, value, ir.Constant(i32, 0)), undef, zeros
        )

    at = builder.add(splat(first), ir.Constant(indices, list(range(lanes))))
    return builder.icmp_unsigned("<", at, splat(limit))


@contextlib.contextmanager
def _vector_starts(builder, n, lanes):
    """A loop over the vectors of `lanes` that cover n (i64) values, the last one partly:
    yields the index of each one's first value."""
    i64 = ir.IntType(64)
    steps = builder.udiv(builder.add(n, ir.Constant(i64, lanes - 1)), ir.Constant(i64, lanes))
    with cgutils.for_range(builder, steps) as loop:
        yield builder.mul(loop.index, ir.Constant(i64, lanes))


def _copy_span(dst, dst_at, src, src_at, width, span):
    """dst[dst_at + i] = src[src_at + i] for i < width, then zeros up to span; 1-D arrays.
    What Numba compiles is _copy_span_in_vectors; this is its stand-in for NUMBA_DISABLE_JIT."""
    for i in range(span):
        dst[dst_at + i] = src[src_at + i] if i < width else 0


@intrinsic
def _copy_span_in_vectors(typingctx, dst, dst_at, src, src_at, width, span):
    """_copy_span in LLVM IR, a vector at a time, the last one masked (masked lanes are not
    read).  A map's rows are 6 to 28 positions, short for the loops LLVM vectorizes, which
    leave the rest of a few vectors' worth to scalar code: the convolutions' row copies ran
    2-4x slower (the default network's copies into dW's rows, 1.1 ms a batch against 0.44)."""
    _check_arrays("_copy_span_in_vectors", (dst, src), (1, 1))
    sig = types.void(dst, types.intp, src, types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        dst_a, src_a = _arrays(context, builder, signature, args, (0, 2))
        dst_at, src_at, width, span = args[1], args[3], args[4], args[5]
        real = context.get_value_type(signature.args[0].dtype)
        size = context.get_abi_sizeof(real)
        lanes = _vector_bytes(context) // size
        vector = ir.VectorType(real, lanes)
        load, store = _masked(builder, "load", vector), _masked(builder, "store", vector)
        zeros, align = ir.Constant(vector, [0.0] * lanes), ir.Constant(ir.IntType(32), size)
        with _vector_starts(builder, span, lanes) as i:
            source = _vector_at(builder, src_a, builder.add(src_at, i), vector)
            reads = _lanes_below(builder, i, width, lanes)
            values = builder.call(load, [source, align, reads, zeros])
            target = _vector_at(builder, dst_a, builder.add(dst_at, i), vector)
            builder.call(store, [values, target, align, _lanes_below(builder, i, span, lanes)])
        return context.get_dummy_value()

    return sig, codegen


@overload(_copy_span)
def _copy_span_jit(dst, dst_at, src, src_at, width, span):
    def compiled(dst, dst_at, src, src_at, width, span):
        _copy_span_in_vectors(dst, dst_at, src, src_at, width, span)

    return compiled


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
    interleaved, as a map's short rows leave LLVM's loops mostly scalar (see _copy_span)."""
    _check_arrays("_unpool_row_in_vectors", (dst, grad), (1, 1))
    if not (isinstance(where, types.Array) and where.dtype == types.uint16 and where.ndim == 1):
        raise errors.TypingError(f"_unpool_row_in_vectors takes uint16 argmaxes, got {where}")
    sig = types.void(dst, types.intp, grad, where, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        dst_a, grad_a, where_a = _arrays(context, builder, signature, args, (0, 2, 3))
        top, at, Wo = args[1], args[4], args[5]
        real = context.get_value_type(signature.args[0].dtype)
        size = context.get_abi_sizeof(real)
        lanes = _vector_bytes(context) // size
        i64, i32, i16 = ir.IntType(64), ir.IntType(32), ir.IntType(16)
        vector, pair, indices = (
            ir.VectorType(real, lanes),
            ir.VectorType(real, 2 * lanes),
            ir.VectorType(i16, lanes),
        )
        load, load_index = _masked(builder, "load", vector), _masked(builder, "load", indices)
        store = _masked(builder, "store", pair)
        zeros = ir.Constant(vector, [0.0] * lanes)
        align, index_align = ir.Constant(i32, size), ir.Constant(i32, 2)
        interleave = ir.Constant(
            ir.VectorType(i32, 2 * lanes), [i // 2 + lanes * (i % 2) for i in range(2 * lanes)]
        )
        W = builder.mul(Wo, ir.Constant(i64, 2))
        with _vector_starts(builder, Wo, lanes) as j:
            reads = _lanes_below(builder, j, Wo, lanes)
            source = builder.add(at, j)
            values = builder.call(
                load, [_vector_at(builder, grad_a, source, vector), align, reads, zeros]
            )
            argmax = builder.call(
                load_index,
                [
                    _vector_at(builder, where_a, source, indices),
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
            writes = _lanes_below(builder, twice, W, 2 * lanes)
            for a in range(2):  # the windows' top row, then their bottom row: 2 j + b
                row = builder.shuffle_vector(picked[2 * a], picked[2 * a + 1], interleave)
                start = builder.add(top, builder.mul(W, ir.Constant(i64, a)))
                target = _vector_at(builder, dst_a, builder.add(start, twice), pair)
                builder.call(store, [row, target, align, writes])
        return context.get_dummy_value()

    return sig, codegen


@overload(_unpool_row)
def _unpool_row_jit(dst, top, grad, where, at, Wo):
    def compiled(dst, top, grad, where, at, Wo):
        _unpool_row_in_vectors(dst, top, grad, where, at, Wo)

    return compiled


# Vectors of positions _forward_taps_in_registers sums at once, for each of a block's channels.
VECTORS = 2


def _forward_taps(sums, flat, w, start, Wp):
    """sums[j, q] += w[j, ci, ky, kx] flat[ci, start + ky Wp + kx + q] over ci, then ky, kx, in
    that order, each term fused into the sum; sums (BLOCK, L), flat (Ci, N), w (BLOCK, Ci, 3, 3).
    What Numba compiles is _forward_taps_in_registers, and _nine_taps past its last whole step;
    this is their stand-in for NUMBA_DISABLE_JIT, with the same terms, but rounded twice each."""
    L = sums.shape[1]
    for ci in range(flat.shape[0]):
        for ky in range(3):
            for kx in range(3):
                tap = flat[ci, start + ky * Wp + kx : start + ky * Wp + kx + L]
                for j in range(BLOCK):
                    sums[j] += w[j, ci, ky, kx] * tap


@intrinsic
def _forward_taps_in_registers(typingctx, sums, flat, w, start, Wp):
    """_forward_taps in LLVM IR (see "sums in registers") for the positions of whole steps of
    VECTORS vectors: the block's sums of a step's positions stay in registers while the loop
    runs over every input channel and tap, the same terms in the same order as _nine_taps adds
    them.  Returns the positions done."""
    _check_arrays("_forward_taps_in_registers", (sums, flat, w), (2, 2, 4))
    sig = types.intp(sums, flat, w, start, Wp)

    def codegen(context, builder, signature, args):
        sums_a, flat_a, w_a = _arrays(context, builder, signature, args, range(3))
        start, Wp = args[3:]
        real = context.get_value_type(signature.args[0].dtype)
        size = context.get_abi_sizeof(real)
        lanes = _vector_bytes(context) // size
        vector, i64, i32 = ir.VectorType(real, lanes), ir.IntType(64), ir.IntType(32)
        multiply_add = _multiply_add(context, builder, vector, lanes, size)

        def const(n):
            return ir.Constant(i64, n)

        sums_j = _element_strides(builder, sums_a, 2, size)[0]
        flat_ci = _element_strides(builder, flat_a, 2, size)[0]
        w_j, w_ci = _element_strides(builder, w_a, 4, size)[:2]
        L = cgutils.unpack_tuple(builder, sums_a.shape, 2)[1]
        Ci = cgutils.unpack_tuple(builder, flat_a.shape, 2)[0]
        step = lanes * VECTORS
        steps = builder.udiv(L, const(step))
        offsets = [builder.add(builder.mul(Wp, const(t // 3)), const(t % 3)) for t in range(9)]
        accs = {
            (j, v): cgutils.alloca_once(builder, vector)
            for j in range(BLOCK)
            for v in range(VECTORS)
        }
        undef = ir.Constant(vector, ir.Undefined)
        splat = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
        with cgutils.for_range(builder, steps) as loop:
            q = builder.mul(loop.index, const(step))
            places = {
                (j, v): _vector_at(
                    builder,
                    sums_a,
                    builder.add(builder.mul(sums_j, const(j)), builder.add(q, const(v * lanes))),
                    vector,
                )
                for j, v in accs
            }
            for key, acc in accs.items():
                builder.store(builder.load(places[key], align=size), acc)
            with cgutils.for_range(builder, Ci) as inputs:
                ci = inputs.index
                row = builder.add(builder.add(builder.mul(ci, flat_ci), start), q)
                for t in range(9):
                    xs = [
                        builder.load(
                            _vector_at(
                                builder,
                                flat_a,
                                builder.add(row, builder.add(offsets[t], const(v * lanes))),
                                vector,
                            ),
                            align=size,
                        )
                        for v in range(VECTORS)
                    ]
                    for j in range(BLOCK):
                        at = builder.add(
                            builder.add(builder.mul(w_j, const(j)), builder.mul(w_ci, ci)), const(t)
                        )
                        weight = builder.load(builder.gep(w_a.data, [at]))
                        weights = builder.shuffle_vector(
                            builder.insert_element(undef, weight, ir.Constant(i32, 0)), undef, splat
                        )
                        for v in range(VECTORS):
                            acc = accs[j, v]
                            builder.store(multiply_add(weights, xs[v], builder.load(acc)), acc)
            for key, acc in accs.items():
                builder.store(builder.load(acc), places[key], align=size)
        return builder.mul(steps, const(step))

    return sig, codegen


@overload(_forward_taps)
def _forward_taps_jit(sums, flat, w, start, Wp):
    def compiled(sums, flat, w, start, Wp):
        done = _forward_taps_in_registers(sums, flat, w, start, Wp)
        if done < sums.shape[1]:
            a0, a1, a2, a3 = sums[0, done:], sums[1, done:], sums[2, done:], sums[3, done:]
            w9 = np.empty((BLOCK, 9), w.dtype)
            for ci in range(flat.shape[0]):
                for j in range(BLOCK):
                    for t in range(9):
                        w9[j, t] = w[j, ci, t // 3, t % 3]
                _nine_taps(a0, a1, a2, a3, flat[ci], start + done, Wp, w9)

    return compiled


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
    blocks = -(-Co // BLOCK)
    # A block's missing output channels have zero weights; they are computed and dropped.
    Wb = np.zeros((blocks * BLOCK, Ci, k, k), W.dtype)
    Wb[:Co] = W
    bb = np.zeros(blocks * BLOCK, out.dtype)
    bb[:Co] = b
    for job in prange(blocks * jobs):
        block, part = job // jobs, job % jobs
        first, row0 = block * BLOCK, part * rows
        start = row0 * Wp
        L = min(rows * Wp, end - start)
        sums = np.empty((BLOCK, L), out.dtype)
        for j in range(BLOCK):
            sums[j] = bb[first + j]
        if k == 3:
            _forward_taps(sums, flat, Wb[first : first + BLOCK], origin + start, Wp)
        else:
            a0, a1, a2, a3 = sums[0], sums[1], sums[2], sums[3]
            for ci in range(Ci):
                for ky in range(k):
                    for kx in range(k):
                        w = Wb[first : first + BLOCK, ci, ky, kx].copy()
                        _one_tap(a0, a1, a2, a3, flat[ci], origin + start + ky * Wp + kx, w)
        # Keep the positions that are outputs: rows y < Ho of an image, columns x < Wo.
        flat_out = out.reshape(Co * B * Ho * Wo)
        for r in range(-(-L // Wp)):
            n, y = (row0 + r) // Hp, (row0 + r) % Hp
            if y < Ho:
                width = min(Wo, L - r * Wp)
                for j in range(min(BLOCK, Co - first)):
                    at = ((first + j) * B + n) * Ho * Wo + y * Wo
                    _copy_span(flat_out, at, sums[j], r * Wp, width, width)


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


@njit(cache=True, fastmath=FMA)
def _block_parts(parts, d, src, first, Wp):
    """parts[ky, kx, q] += the sum over four stretches i of d[first + i L + q] src[first + i L +
    ky Wp + kx + q], L = parts.shape[2]: four stretches of positions added to every tap's parts,
    in order; three taps of a row a pass, so that each gradient load feeds three multiply-adds.
    parts (k, 3 groups, L); d, src flat (the output gradient as tall wide rows, the input)."""
    L = parts.shape[2]
    i0, i1, i2, i3 = first, first + L, first + 2 * L, first + 3 * L
    d0, d1, d2, d3 = d[i0 : i0 + L], d[i1 : i1 + L], d[i2 : i2 + L], d[i3 : i3 + L]
    for ky in range(parts.shape[0]):
        for g in range(parts.shape[1] // 3):
            at = ky * Wp + 3 * g
            p0, p1, p2 = parts[ky, 3 * g], parts[ky, 3 * g + 1], parts[ky, 3 * g + 2]
            j0, j1, j2, j3 = i0 + at, i1 + at, i2 + at, i3 + at
            e0, f0, g0 = src[j0 : j0 + L], src[j0 + 1 : j0 + 1 + L], src[j0 + 2 : j0 + 2 + L]
            e1, f1, g1 = src[j1 : j1 + L], src[j1 + 1 : j1 + 1 + L], src[j1 + 2 : j1 + 2 + L]
            e2, f2, g2 = src[j2 : j2 + L], src[j2 + 1 : j2 + 1 + L], src[j2 + 2 : j2 + 2 + L]
            e3, f3, g3 = src[j3 : j3 + L], src[j3 + 1 : j3 + 1 + L], src[j3 + 2 : j3 + 2 + L]
            for q in range(L):
                c0, c1, c2, c3 = d0[q], d1[q], d2[q], d3[q]
                p0[q] = p0[q] + c0 * e0[q] + c1 * e1[q] + c2 * e2[q] + c3 * e3[q]
                p1[q] = p1[q] + c0 * f0[q] + c1 * f1[q] + c2 * f2[q] + c3 * f3[q]
                p2[q] = p2[q] + c0 * g0[q] + c1 * g1[q] + c2 * g2[q] + c3 * g3[q]


# Stretches of ROWS positions _taps_sums takes a call: its inputs (32 stretches of two gradient
# rows and an input row, 192 KB in float32) stay in the L2 cache while it sweeps them once per
# vector of parts, whose loads and stores fewer, longer calls save (32 and 64 took 0.97-0.985
# of 16's epoch, benchmarks/cnn_kernels_ab.py; 4 and 8 were slower).
TILE = 32


def _taps_sums(parts, d, src, Wp, s0, s1):
    """parts[j, ky, kx, q] += d[j, s ROWS + q] src[s ROWS + ky Wp + kx + q] for stretches s0 <=
    s < s1 in order, each term fused into the sum; parts (2, 3, 3, ROWS), d (2, N), src flat.
    What Numba compiles is _taps_sums_in_registers; this is its stand-in for NUMBA_DISABLE_JIT,
    with the same terms, but rounded twice each."""
    for s in range(s0, s1):
        at = s * ROWS
        for ky in range(3):
            for kx in range(3):
                tap = src[at + ky * Wp + kx : at + ky * Wp + kx + ROWS]
                for j in range(2):
                    parts[j, ky, kx] += d[j, at : at + ROWS] * tap


@intrinsic
def _taps_sums_in_registers(typingctx, parts, d, src, Wp, s0, s1):
    """_taps_sums in LLVM IR (see "sums in registers"): a vector of lanes of parts per tap and
    output channel stays in registers while the loop runs over every stretch, s0 to s1, so that
    no part is loaded or stored inside the loop.  The two channels go together with AVX-512's
    32 registers (each load of the input then feeds two multiply-adds), else one after the
    other; either way each part gets the same terms in the same order as _block_parts adds
    them.  d's second row is read even when the caller drops its sums (a lone last channel):
    backward_params_scratch gives d an even number of rows."""
    _check_arrays("_taps_sums_in_registers", (parts, d, src), (4, 2, 1))
    sig = types.void(parts, d, src, Wp, s0, s1)

    def codegen(context, builder, signature, args):
        parts_a, d_a, src_a = _arrays(context, builder, signature, args, range(3))
        Wp, s0, s1 = args[3:]
        real = context.get_value_type(signature.args[0].dtype)
        size = context.get_abi_sizeof(real)
        width = _vector_bytes(context)
        wide, lanes = width == 64, width // size
        vector, i64 = ir.VectorType(real, lanes), ir.IntType(64)
        multiply_add = _multiply_add(context, builder, vector, lanes, size)

        def const(n):
            return ir.Constant(i64, n)

        def at(array, index):
            return _vector_at(builder, array, index, vector)

        d_row = _element_strides(builder, d_a, 2, size)[0]
        parts_j = _element_strides(builder, parts_a, 4, size)[0]
        taps = [(ky, kx) for ky in range(3) for kx in range(3)]
        offsets = [builder.add(builder.mul(Wp, const(ky)), const(kx)) for ky, kx in taps]
        for channels in [(0, 1)] if wide else [(0,), (1,)]:
            sums = {
                (j, t): cgutils.alloca_once(builder, vector) for j in channels for t in range(9)
            }
            with cgutils.for_range(builder, const(ROWS // lanes)) as lane_block:
                q = builder.mul(lane_block.index, const(lanes))
                places = {
                    (j, t): at(
                        parts_a, builder.add(builder.mul(parts_j, const(j)), const(t * ROWS))
                    )
                    for j, t in sums
                }
                places = {
                    key: builder.gep(place, [lane_block.index]) for key, place in places.items()
                }
                for key, acc in sums.items():
                    builder.store(builder.load(places[key], align=size), acc)
                with cgutils.for_range_slice(builder, s0, s1, const(1)) as (s, _):
                    first = builder.add(builder.mul(s, const(ROWS)), q)
                    grads = {
                        j: builder.load(
                            at(d_a, builder.add(first, builder.mul(d_row, const(j)))), align=size
                        )
                        for j in channels
                    }
                    for t, offset in enumerate(offsets):
                        x = builder.load(at(src_a, builder.add(first, offset)), align=size)
                        for j in channels:
                            acc = sums[j, t]
                            builder.store(multiply_add(grads[j], x, builder.load(acc)), acc)
                for key, acc in sums.items():
                    builder.store(builder.load(acc), places[key], align=size)
        return context.get_dummy_value()

    return sig, codegen


@overload(_taps_sums)
def _taps_sums_jit(parts, d, src, Wp, s0, s1):
    def compiled(parts, d, src, Wp, s0, s1):
        _taps_sums_in_registers(parts, d, src, Wp, s0, s1)

    return compiled


@njit(cache=True)
def _margin(k, Wp):
    """The zeros before the data of conv_backward_params' scratch rows: room for the taps of
    conv_backward_input's first outputs, (k - 1) rows and columns back, in whole stretches of
    ROWS, so that a position's stretch and lane (and so the trained bits) stay the same."""
    return -(-(k - 1) * (Wp + 1) // ROWS) * ROWS


# Bytes the kernels' large arrays start at a multiple of: a cache line, and an AVX-512 vector.
# NumPy's large arrays start 16 bytes into a page, so that every vector the kernels load from
# one crosses two cache lines (dW on such rows took up to 1.15x as long).
ALIGN = 64


def aligned_zeros(shape, dtype):
    """np.zeros(shape, dtype), its data starting at a multiple of ALIGN bytes."""
    dtype = np.dtype(dtype)
    size = math.prod(shape) * dtype.itemsize
    raw = np.zeros(size + ALIGN, np.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start : start + size].view(dtype).reshape(shape)


def backward_params_scratch(Co, xp_shape, k, dtype):
    """The scratch arrays conv_backward_params needs (d, flats), allocated once for batches of
    up to B: fresh pages for megabytes of them at every call would cost as much as the sums.
    Each row has zeros before its data (_margin), and flats room past the batch for the taps of
    the last stretch, dropped ones included; every row starts at a multiple of ALIGN bytes."""
    Ci, B, Hp, Wp = xp_shape
    size = _margin(k, Wp) + -(-(B * Hp * Wp) // (4 * ROWS)) * 4 * ROWS
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
    first added up elementwise, stretch after stretch of ROWS positions, into ROWS parts per
    tap; then each tap's parts are summed as a tree (_tree_sum).  A 3 x 3 kernel's parts are
    added in vector registers (_taps_sums, two output channels at a time); another kernel's in
    memory, four stretches a pass (_block_parts), taps three of a row at a time, a kernel whose
    size is not a multiple of 3 with dropped taps, which read past its rows into spare zeros.
    Both add the same terms in the same order."""
    Co, B, Ho, Wo = dout.shape
    Ci, _, Hp, Wp = xp.shape
    k = dW.shape[2]
    groups = -(-k // 3)
    N, M = B * Hp * Wp, _margin(k, Wp)
    used = ((N + 4 * ROWS - 1) // (4 * ROWS)) * 4 * ROWS
    grads = dout.reshape(Co * B * Ho * Wo)
    for m in prange(Co * B):
        co, n = m // B, m % B
        at = M + n * Hp * Wp
        for y in range(Ho):
            _copy_span(d[co], at + y * Wp, grads, (m * Ho + y) * Wo, Wo, Wp)
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
            rows = np.zeros(ROWS)
            row_d = d[co]
            for first in range(M, M + used, ROWS):
                for q in range(ROWS):
                    rows[q] += row_d[first + q]
            db[co] = _tree_sum(rows)
    if k == 3:
        s0, s1 = M // ROWS, (M + used) // ROWS
        for pair in prange((Co + 1) // 2 * Ci):
            co, ci = 2 * (pair // Ci), pair % Ci
            parts = np.zeros((2, 3, 3, ROWS), dW.dtype)
            for s in range(s0, s1, TILE):
                _taps_sums(parts, d[co : co + 2], flats[ci], Wp, s, min(s1, s + TILE))
            for j in range(min(2, Co - co)):
                for ky in range(3):
                    for kx in range(3):
                        dW[co + j, ci, ky, kx] = _tree_sum(parts[j, ky, kx])
        return
    for pair in prange(Co * Ci):
        co, ci = pair // Ci, pair % Ci
        parts = np.zeros((k, 3 * groups, ROWS), dW.dtype)
        for first in range(M, M + used, 4 * ROWS):
            _block_parts(parts, d[co], flats[ci], first, Wp)
        for ky in range(k):
            for kx in range(k):
                dW[co, ci, ky, kx] = _tree_sum(parts[ky, kx])


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


# --------------------------------------------------------------------------- sums
# A long sum vectorizes only if its terms may be regrouped.  These regroup them the same way on
# every machine and thread count: terms are first added elementwise across rows (each position's
# column in order), then a row is summed as a balanced tree, pairs of halves, which is also more
# accurate than a running sum.


@njit(cache=True)
def _tree_sum(v):
    """The sum of v (1-D), adding its second half onto its first until one value is left;
    destroys v."""
    n = v.size
    while n > 1:
        half = (n + 1) // 2
        for i in range(n - half):
            v[i] += v[i + half]
        n = half
    return v[0] if v.size else v.dtype.type(0)


# --------------------------------------------------------------------------- relu
# On flat views of any activation, in place; parallel over stretches of it.
STRETCH = 1 << 14


@njit(cache=True, parallel=True)
def relu_forward(x):
    """x = max(x, 0), in place; x flat."""
    for part in prange(-(-x.size // STRETCH)):
        v = x[part * STRETCH : (part + 1) * STRETCH]
        zero = v.dtype.type(0)
        for i in range(v.size):
            v[i] = max(v[i], zero)


@njit(cache=True, parallel=True)
def relu_backward(dx, out):
    """dx = dx where the relu's output was positive, else 0, in place; flat."""
    for part in prange(-(-dx.size // STRETCH)):
        d, o = dx[part * STRETCH : (part + 1) * STRETCH], out[part * STRETCH : (part + 1) * STRETCH]
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
        mu = _tree_sum(sums) / M
        sums[:] = 0
        for n in range(B):
            for q in range(HW):
                sums[q] += (plane[n, q] - mu) ** 2
        var = _tree_sum(sums) / M
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
        sum_dy, sum_dy_xhat = _tree_sum(sums), _tree_sum(dots)
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
    for part in prange(-(-x.size // STRETCH)):
        v, kept = (
            x[part * STRETCH : (part + 1) * STRETCH],
            mask[part * STRETCH : (part + 1) * STRETCH],
        )
        first = np.uint32(part * STRETCH)
        for i in range(v.size):
            keep = _kept(first + np.uint32(i), key, threshold)
            kept[i] = keep
            v[i] = v[i] * scale if keep else zero


@njit(cache=True, parallel=True)
def dropout_backward(dx, mask, scale):
    """dx *= scale where the forward pass kept the element, else 0; in place, flat."""
    zero = dx.dtype.type(0)
    for part in prange(-(-dx.size // STRETCH)):
        v, kept = (
            dx[part * STRETCH : (part + 1) * STRETCH],
            mask[part * STRETCH : (part + 1) * STRETCH],
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
