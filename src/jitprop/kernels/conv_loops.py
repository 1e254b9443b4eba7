"""The convolution's inner loops (kernels/conv.py runs them): the taps of a 3 x 3 or any other
kernel added to rows of sums, for the forward pass (and so dX) and for dW.  The two hot ones are
written in LLVM IR so that their sums stay in vector registers (see "Sums in registers" in
docs/kernels.md); each keeps beside it a plain stand-in, the loop NUMBA_DISABLE_JIT runs, which
adds the same terms in the same order.

Shapes: L positions of a row of sums, Ci input channels, Wp the padded width, w weights.
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from jitprop.jit import njit
from jitprop.kernels.vectors import (
    FMA,
    array_args,
    check_arrays,
    element_strides,
    multiply_add,
    vector_at,
    vector_bytes,
)

# Output channels a pass of the forward loops covers: four, fixed (not a tuning knob), since
# nine_taps, one_tap and the IR keep four channels' sums in named accumulators (a0..a3).
CHANNELS_PER_PASS = 4
# Vectors of positions the forward pass's IR sums at once, for each of a pass's channels.
VECTORS = 2
# Positions of a stretch of dW's sums (a row of parts): chosen when its parts were summed in
# memory (512 beat 128, 256, 1024 and 2048).  It decides which terms each part adds, and so the
# trained bits: changing it would redraw every documented CNN result.
STRETCH = 512


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
def one_tap(a0, a1, a2, a3, src, at, w):
    """a_j[q] += w[j] src[at + q] for the four output channels j of a block; w (4,)."""
    s = src[at : at + a0.size]
    w0, w1, w2, w3 = w[0], w[1], w[2], w[3]
    for q in range(a0.size):
        t = s[q]
        a0[q] = a0[q] + w0 * t
        a1[q] = a1[q] + w1 * t
        a2[q] = a2[q] + w2 * t
        a3[q] = a3[q] + w3 * t


def forward_taps(sums, flat, w, start, Wp):
    """sums[j, q] += w[j, ci, ky, kx] flat[ci, start + ky Wp + kx + q] over ci, then ky, kx, in
    that order, each term fused into the sum; sums (4, L), flat (Ci, N), w (4, Ci, 3, 3): a
    pass's CHANNELS_PER_PASS channels.
    What Numba compiles is _forward_taps_in_registers, and _nine_taps past its last whole step;
    this is their stand-in for NUMBA_DISABLE_JIT, with the same terms, but rounded twice each."""
    L = sums.shape[1]
    for ci in range(flat.shape[0]):
        for ky in range(3):
            for kx in range(3):
                tap = flat[ci, start + ky * Wp + kx : start + ky * Wp + kx + L]
                for j in range(CHANNELS_PER_PASS):
                    sums[j] += w[j, ci, ky, kx] * tap


@intrinsic
def _forward_taps_in_registers(typingctx, sums, flat, w, start, Wp):
    """forward_taps in LLVM IR (see "sums in registers") for the positions of whole steps of
    VECTORS vectors: the block's sums of a step's positions stay in registers while the loop
    runs over every input channel and tap, the same terms in the same order as _nine_taps adds
    them.  Returns the positions done."""
    check_arrays("_forward_taps_in_registers", (sums, flat, w), (2, 2, 4))
    sig = types.intp(sums, flat, w, start, Wp)

    def codegen(context, builder, signature, args):
        sums_a, flat_a, w_a = array_args(context, builder, signature, args, range(3))
        start, Wp = args[3:]
        real = context.get_value_type(signature.args[0].dtype)
        size = context.get_abi_sizeof(real)
        lanes = vector_bytes(context) // size
        vector, i64, i32 = ir.VectorType(real, lanes), ir.IntType(64), ir.IntType(32)
        fused = multiply_add(context, builder, vector, lanes, size)

        def const(n):
            return ir.Constant(i64, n)

        sums_j = element_strides(builder, sums_a, 2, size)[0]
        flat_ci = element_strides(builder, flat_a, 2, size)[0]
        w_j, w_ci = element_strides(builder, w_a, 4, size)[:2]
        L = cgutils.unpack_tuple(builder, sums_a.shape, 2)[1]
        Ci = cgutils.unpack_tuple(builder, flat_a.shape, 2)[0]
        step = lanes * VECTORS
        steps = builder.udiv(L, const(step))
        offsets = [builder.add(builder.mul(Wp, const(t // 3)), const(t % 3)) for t in range(9)]
        accs = {
            (j, v): cgutils.alloca_once(builder, vector)
            for j in range(CHANNELS_PER_PASS)
            for v in range(VECTORS)
        }
        undef = ir.Constant(vector, ir.Undefined)
        splat = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
        with cgutils.for_range(builder, steps) as loop:
            q = builder.mul(loop.index, const(step))
            places = {
                (j, v): vector_at(
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
                            vector_at(
                                builder,
                                flat_a,
                                builder.add(row, builder.add(offsets[t], const(v * lanes))),
                                vector,
                            ),
                            align=size,
                        )
                        for v in range(VECTORS)
                    ]
                    for j in range(CHANNELS_PER_PASS):
                        at = builder.add(
                            builder.add(builder.mul(w_j, const(j)), builder.mul(w_ci, ci)), const(t)
                        )
                        weight = builder.load(builder.gep(w_a.data, [at]))
                        weights = builder.shuffle_vector(
                            builder.insert_element(undef, weight, ir.Constant(i32, 0)), undef, splat
                        )
                        for v in range(VECTORS):
                            acc = accs[j, v]
                            builder.store(fused(weights, xs[v], builder.load(acc)), acc)
            for key, acc in accs.items():
                builder.store(builder.load(acc), places[key], align=size)
        return builder.mul(steps, const(step))

    return sig, codegen


@overload(forward_taps)
def _forward_taps_jit(sums, flat, w, start, Wp):
    def compiled(sums, flat, w, start, Wp):
        done = _forward_taps_in_registers(sums, flat, w, start, Wp)
        if done < sums.shape[1]:
            a0, a1, a2, a3 = sums[0, done:], sums[1, done:], sums[2, done:], sums[3, done:]
            w9 = np.empty((CHANNELS_PER_PASS, 9), w.dtype)
            for ci in range(flat.shape[0]):
                for j in range(CHANNELS_PER_PASS):
                    for t in range(9):
                        w9[j, t] = w[j, ci, t // 3, t % 3]
                _nine_taps(a0, a1, a2, a3, flat[ci], start + done, Wp, w9)

    return compiled


@njit(cache=True, fastmath=FMA)
def block_parts(parts, d, src, first, Wp):
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


def taps_sums(parts, d, src, Wp, s0, s1):
    """parts[j, ky, kx, q] += d[j, s S + q] src[s S + ky Wp + kx + q] for stretches s0 <= s < s1
    of S = STRETCH positions, in order, each term fused into the sum; parts (2, 3, 3, S), d (2,
    N), src flat.
    What Numba compiles is _taps_sums_in_registers; this is its stand-in for NUMBA_DISABLE_JIT,
    with the same terms, but rounded twice each."""
    for s in range(s0, s1):
        at = s * STRETCH
        for ky in range(3):
            for kx in range(3):
                tap = src[at + ky * Wp + kx : at + ky * Wp + kx + STRETCH]
                for j in range(2):
                    parts[j, ky, kx] += d[j, at : at + STRETCH] * tap


@intrinsic
def _taps_sums_in_registers(typingctx, parts, d, src, Wp, s0, s1):
    """taps_sums in LLVM IR (see "sums in registers"): a vector of lanes of parts per tap and
    output channel stays in registers while the loop runs over every stretch, s0 to s1, so that
    no part is loaded or stored inside the loop.  The two channels go together with AVX-512's
    32 registers (each load of the input then feeds two multiply-adds), else one after the
    other; either way each part gets the same terms in the same order as block_parts adds
    them.  d's second row is read even when the caller drops its sums (a lone last channel):
    backward_params_scratch gives d an even number of rows."""
    check_arrays("_taps_sums_in_registers", (parts, d, src), (4, 2, 1))
    sig = types.void(parts, d, src, Wp, s0, s1)

    def codegen(context, builder, signature, args):
        parts_a, d_a, src_a = array_args(context, builder, signature, args, range(3))
        Wp, s0, s1 = args[3:]
        real = context.get_value_type(signature.args[0].dtype)
        size = context.get_abi_sizeof(real)
        width = vector_bytes(context)
        wide, lanes = width == 64, width // size
        vector, i64 = ir.VectorType(real, lanes), ir.IntType(64)
        fused = multiply_add(context, builder, vector, lanes, size)

        def const(n):
            return ir.Constant(i64, n)

        def at(array, index):
            return vector_at(builder, array, index, vector)

        d_row = element_strides(builder, d_a, 2, size)[0]
        parts_j = element_strides(builder, parts_a, 4, size)[0]
        taps = [(ky, kx) for ky in range(3) for kx in range(3)]
        offsets = [builder.add(builder.mul(Wp, const(ky)), const(kx)) for ky, kx in taps]
        for channels in [(0, 1)] if wide else [(0,), (1,)]:
            sums = {
                (j, t): cgutils.alloca_once(builder, vector) for j in channels for t in range(9)
            }
            with cgutils.for_range(builder, const(STRETCH // lanes)) as lane_block:
                q = builder.mul(lane_block.index, const(lanes))
                places = {
                    (j, t): at(
                        parts_a, builder.add(builder.mul(parts_j, const(j)), const(t * STRETCH))
                    )
                    for j, t in sums
                }
                places = {
                    key: builder.gep(place, [lane_block.index]) for key, place in places.items()
                }
                for key, acc in sums.items():
                    builder.store(builder.load(places[key], align=size), acc)
                with cgutils.for_range_slice(builder, s0, s1, const(1)) as (s, _):
                    first = builder.add(builder.mul(s, const(STRETCH)), q)
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
                            builder.store(fused(grads[j], x, builder.load(acc)), acc)
                for key, acc in sums.items():
                    builder.store(builder.load(acc), places[key], align=size)
        return context.get_dummy_value()

    return sig, codegen


@overload(taps_sums)
def _taps_sums_jit(parts, d, src, Wp, s0, s1):
    def compiled(parts, d, src, Wp, s0, s1):
        _taps_sums_in_registers(parts, d, src, Wp, s0, s1)

    return compiled
