"""What the kernels share beneath them: LLVM-IR helpers (numba.extending.intrinsic) for the
loops that Numba cannot write itself, the row copy they give, buffers that start on a cache line,
and sums in a fixed order.  See docs/kernels.md for why each exists and what it buys.
"""

import contextlib
import math

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils, errors
from numba.extending import intrinsic, overload

from jitprop.jit import njit

# Multiply-adds are fused (FMA, the only fastmath flag the kernels use): the same bits on every
# machine with FMA (Intel Core and Xeon since 2013, AMD since 2012, every ARM64), whatever its
# vector width (tests/test_targets.py).
FMA = {"contract"}


# --------------------------------------------------------------------------- sums in registers
# Numba cannot keep a vector of sums in registers across a loop: a sum carried by a loop is a
# reduction, which LLVM vectorizes only if allowed to regroup its terms.  The two loops that
# need it are written in LLVM IR (numba.extending.intrinsic), each lane of a vector one sum,
# its terms in order, each multiply-add fused as the memory loops' `contract` lets LLVM fuse
# them: with llvm.fma where the target has FMA (every ARM64; x86 with +fma), else a multiply
# and an add.  So how wide the vectors are changes the speed only, never the bits.
X86 = llvm.get_process_triple().startswith(("x86_64", "i386", "i686"))


def target_features(context):
    """The features Numba compiles for (the host's, or NUMBA_CPU_FEATURES), as a set: a private
    attribute, but the only place that says which vectors and instructions the target has."""
    return set(context.codegen()._tm_features.split(","))


def vector_bytes(context):
    """The width of the widest vectors Numba compiles for: 64 bytes with AVX-512, 32 with AVX,
    else 16."""
    features = target_features(context)
    return 64 if "+avx512f" in features else 32 if "+avx" in features else 16


def multiply_add(context, builder, vector, lanes, size):
    """(a, b, c) -> a b + c on `vector`s, rounded as the memory loops round it (see above)."""
    if X86 and "+fma" not in target_features(context):
        return lambda a, b, c: builder.fadd(c, builder.fmul(a, b))
    name = f"llvm.fma.v{lanes}f{8 * size}"
    fma = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vector, [vector] * 3), name
    )
    return lambda a, b, c: builder.call(fma, [a, b, c])


def check_arrays(name, arrays, ndims):
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


def vector_at(builder, array, index, vector):
    """A pointer to the (unaligned) vector at element `index` of array's data."""
    return builder.bitcast(builder.gep(array.data, [index]), vector.as_pointer())


def array_args(context, builder, signature, args, positions):
    """The intrinsic's arguments at `positions`, as arrays (data, shape, strides)."""
    return [context.make_array(signature.args[n])(context, builder, args[n]) for n in positions]


def element_strides(builder, array, ndim, size):
    """array's strides in elements of `size` bytes."""
    strides = cgutils.unpack_tuple(builder, array.strides, ndim)
    return [builder.udiv(stride, ir.Constant(stride.type, size)) for stride in strides]


def masked(builder, operation, vector):
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


def lanes_below(builder, first, limit, lanes):
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
def vector_starts(builder, n, lanes):
    """A loop over the vectors of `lanes` that cover n (i64) values, the last one partly:
    yields the index of each one's first value."""
    i64 = ir.IntType(64)
    steps = builder.udiv(builder.add(n, ir.Constant(i64, lanes - 1)), ir.Constant(i64, lanes))
    with cgutils.for_range(builder, steps) as loop:
        yield builder.mul(loop.index, ir.Constant(i64, lanes))


def copy_span(dst, dst_at, src, src_at, width, span):
    """dst[dst_at + i] = src[src_at + i] for i < width, then zeros up to span; 1-D arrays.
    What Numba compiles is _copy_span_in_vectors; this is its stand-in for NUMBA_DISABLE_JIT."""
    for i in range(span):
        dst[dst_at + i] = src[src_at + i] if i < width else 0


@intrinsic
def _copy_span_in_vectors(typingctx, dst, dst_at, src, src_at, width, span):
    """copy_span in LLVM IR, a vector at a time, the last one masked (masked lanes are not
    read).  A map's rows are 6 to 28 positions, short for the loops LLVM vectorizes, which
    leave the rest of a few vectors' worth to scalar code: the convolutions' row copies ran
    2-4x slower (the default network's copies into dW's rows, 1.1 ms a batch against 0.44)."""
    check_arrays("_copy_span_in_vectors", (dst, src), (1, 1))
    sig = types.void(dst, types.intp, src, types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        dst_a, src_a = array_args(context, builder, signature, args, (0, 2))
        dst_at, src_at, width, span = args[1], args[3], args[4], args[5]
        real = context.get_value_type(signature.args[0].dtype)
        size = context.get_abi_sizeof(real)
        lanes = vector_bytes(context) // size
        vector = ir.VectorType(real, lanes)
        load, store = masked(builder, "load", vector), masked(builder, "store", vector)
        zeros, align = ir.Constant(vector, [0.0] * lanes), ir.Constant(ir.IntType(32), size)
        with vector_starts(builder, span, lanes) as i:
            source = vector_at(builder, src_a, builder.add(src_at, i), vector)
            reads = lanes_below(builder, i, width, lanes)
            values = builder.call(load, [source, align, reads, zeros])
            target = vector_at(builder, dst_a, builder.add(dst_at, i), vector)
            builder.call(store, [values, target, align, lanes_below(builder, i, span, lanes)])
        return context.get_dummy_value()

    return sig, codegen


@overload(copy_span)
def _copy_span_jit(dst, dst_at, src, src_at, width, span):
    def compiled(dst, dst_at, src, src_at, width, span):
        _copy_span_in_vectors(dst, dst_at, src, src_at, width, span)

    return compiled


# one crosses two cache lines (dW on such rows took up to 1.15x as long).
ALIGN = 64


def aligned_zeros(shape, dtype):
    """np.zeros(shape, dtype), its data starting at a multiple of ALIGN bytes."""
    dtype = np.dtype(dtype)
    size = math.prod(shape) * dtype.itemsize
    raw = np.zeros(size + ALIGN, np.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start : start + size].view(dtype).reshape(shape)


# --------------------------------------------------------------------------- sums
# A long sum vectorizes only if its terms may be regrouped.  These regroup them the same way on
# every machine and thread count: terms are first added elementwise across rows (each position's
# column in order), then a row is summed as a balanced tree, pairs of halves, which is also more
# accurate than a running sum.


@njit(cache=True)
def tree_sum(v):
    """The sum of v (1-D), adding its second half onto its first until one value is left;
    destroys v."""
    n = v.size
    while n > 1:
        half = (n + 1) // 2
        for i in range(n - half):
            v[i] += v[i + half]
        n = half
    return v[0] if v.size else v.dtype.type(0)
