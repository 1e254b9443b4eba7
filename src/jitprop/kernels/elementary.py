"""The elementary functions every kernel uses, from IEEE adds, multiplies, divisions and bit
operations only: exp, expm1, log, tanh, sin and cos in float64, and normal random numbers from
uniform ones.  A C library's exp, log or tanh may differ from another's in the last bit (glibc's
from macOS's, or Intel's SVML where Numba finds it and vectorizes them); these give the same
bits on every machine, so no result depends on the C library.  Each is within a few ulp of the
correctly rounded value (tests/test_elementary.py measures it), and a loop of them vectorizes.

The algorithms are fdlibm's (Sun's freely distributable libm, the ancestor of most C
libraries'): Cody and Waite's range reductions, and a Taylor polynomial (exp) or fdlibm's
minimax polynomials (log, sin, cos).
"""

import math
import struct

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from jitprop.jit import njit

LOG2E = 1.4426950408889634
LN2_HI = 6.93147180369123816490e-01  # ln 2's leading 32 bits: n * LN2_HI is exact for |n| < 2^21
LN2_LO = 1.90821492927058770002e-10  # ln 2 - LN2_HI
TAYLOR = tuple(1 / math.factorial(k) for k in range(14))  # 1 / k!
OVERFLOW = 709.782712893384  # e ** x is above the largest float64 beyond this
UNDERFLOW = -745.1332191019412  # and rounds to 0 below this


def pow2(n):
    """2.0 ** n, exactly, for a whole n in -1022..1023 (the interpreter's version)."""
    return math.ldexp(1.0, n)


@intrinsic
def _pow2(typingctx, n):
    """The compiled pow2: n + 1023 shifted into a float64's exponent bits."""

    def codegen(context, builder, signature, args):
        exponent = builder.add(args[0], ir.Constant(ir.IntType(64), 1023))
        bits = builder.shl(exponent, ir.Constant(ir.IntType(64), 52))
        return builder.bitcast(bits, ir.DoubleType())

    return types.float64(types.int64), codegen


@overload(pow2)
def _pow2_compiled(n):
    return lambda n: _pow2(n)


def bits(x):
    """The IEEE bits of the float64 x as an int64 (the interpreter's version)."""
    return struct.unpack("<q", struct.pack("<d", x))[0]


@intrinsic
def _bits(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@overload(bits)
def _bits_compiled(x):
    return lambda x: _bits(x)


def from_bits(i):
    """The float64 whose IEEE bits are the int64 i (the interpreter's version)."""
    return struct.unpack("<d", struct.pack("<q", i))[0]


@intrinsic
def _from_bits(typingctx, i):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@overload(from_bits)
def _from_bits_compiled(i):
    return lambda i: _from_bits(i)


@njit(cache=True, inline="always")
def _expm1_reduced(r):
    """e ** r - 1 for |r| <= ln(2) / 2 by its Taylor series to r ** 13 (the next term is below
    5e-18 relative), in Estrin's order: short chains of dependent operations."""
    c, r2 = TAYLOR, r * r
    r4 = r2 * r2
    p = (r + (c[2] + c[3] * r) * r2) + ((c[4] + c[5] * r) + (c[6] + c[7] * r) * r2) * r4
    q = ((c[8] + c[9] * r) + (c[10] + c[11] * r) * r2) + (c[12] + c[13] * r) * r4
    return p, q, r4


@njit(cache=True, inline="always")
def exp(x):
    """e ** x in float64, within 1 ulp of the correctly rounded value."""
    if x != x:
        return x
    if x > OVERFLOW:
        return math.inf
    if x < UNDERFLOW:
        return 0.0
    n = math.floor(x * LOG2E + 0.5)
    r = (x - n * LN2_HI) - n * LN2_LO  # x = n ln 2 + r, |r| <= ln(2) / 2
    # Adding the 1 to e ** r - 1 last keeps the error of the small terms below half an ulp.
    p, q, r4 = _expm1_reduced(r)
    # e ** x = e ** r * 2 ** n, the power in two halves so that each stays a normal number
    # (n is -1075..1024); only the last product rounds, when the result is subnormal.
    half = int(n) >> 1
    return (1.0 + (p + q * (r4 * r4))) * pow2(half) * pow2(int(n) - half)


@njit(cache=True, inline="always")
def expm1(x):
    """e ** x - 1 in float64, accurate for x near 0 too: e ** x = 2 ** n e ** r as in exp, then
    2 ** n (e ** r - 1) + (2 ** n - 1), the first product exact, one rounding in the sum."""
    if x != x:
        return x
    if x > 40.0:  # 1 is below half an ulp of e ** x
        return exp(x)
    if x < -40.0:  # e ** x is below half an ulp of 1
        return -1.0
    n = math.floor(x * LOG2E + 0.5)
    r = (x - n * LN2_HI) - n * LN2_LO
    p, q, r4 = _expm1_reduced(r)
    em = p + q * (r4 * r4)
    if n == 0:
        return em
    two = pow2(int(n))
    return two * em + (two - 1.0)


# log's polynomial in s = f / (2 + f): log(1 + f) = 2 s + s R(s ** 2) (fdlibm's e_log.c).
LG = (
    6.666666666666735130e-01,
    3.999999999940941908e-01,
    2.857142874366239149e-01,
    2.222219843214978396e-01,
    1.818357216161805012e-01,
    1.531383769920937332e-01,
    1.479819860511658591e-01,
)
SQRT_HALF_BITS = 0x3FE6A09E667F3BCD  # the bits of sqrt(2) / 2
TWO54 = 18014398509481984.0  # 2 ** 54: a subnormal times this is normal


@njit(cache=True, inline="always")
def log(x):
    """The natural logarithm in float64, within 1 ulp: x = 2 ** k (1 + f), sqrt(2) / 2 <= 1 +
    f < sqrt(2), and log x = k ln 2 + log(1 + f), with fdlibm's polynomial and its order of
    operations, which keeps the rounding of the small terms below the result's last bit."""
    if x != x or x == math.inf:
        return x
    if x < 0.0:
        return math.nan
    if x == 0.0:
        return -math.inf
    k = 0
    if x < 2.2250738585072014e-308:  # subnormal: make it normal first
        x *= TWO54
        k = -54
    b = bits(x)
    k += (b >> 52) - 1023
    b &= 0x000FFFFFFFFFFFFF  # the mantissa, as a number in [1, 2)
    b |= 0x3FF0000000000000
    if b >= SQRT_HALF_BITS + (1 << 52):  # the mantissa is at least sqrt(2): halve it
        b -= 1 << 52
        k += 1
    f = from_bits(b) - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (LG[1] + w * (LG[3] + w * LG[5]))
    t2 = z * (LG[0] + w * (LG[2] + w * (LG[4] + w * LG[6])))
    R = t2 + t1
    hfsq = 0.5 * f * f
    return k * LN2_HI - ((hfsq - (s * (hfsq + R) + k * LN2_LO)) - f)


@njit(cache=True, inline="always")
def tanh(x):
    """The hyperbolic tangent in float64 (fdlibm's s_tanh.c): from expm1, -t / (t + 2) with
    t = expm1(-2 |x|) below 1, 1 - 2 / (t + 2) with t = expm1(2 |x|) up to 22, 1 beyond."""
    if x != x:
        return x
    a = abs(x)
    if a < 3.725290298461914e-09:  # 2 ** -28: tanh x rounds to x
        return x
    if a < 1.0:
        t = expm1(-2.0 * a)
        z = -t / (t + 2.0)
    elif a < 22.0:
        t = expm1(2.0 * a)
        z = 1.0 - 2.0 / (t + 2.0)
    else:
        z = 1.0
    return z if x > 0 else -z


# pi / 2 in three parts for the reduction (fdlibm's): PIO2_1 has 33 bits, so n PIO2_1 is exact
# for |n| < 2 ** 20; sin and cos are meant for |x| below about 10 ** 5.
PIO2_1 = 1.57079632673412561417e00
PIO2_2 = 6.07710050630396597660e-11
PIO2_2T = 2.02226624879595063154e-21
INV_PIO2 = 6.36619772367581382433e-01
SIN = (
    -1.66666666666666324348e-01,
    8.33333333332248946124e-03,
    -1.98412698298579493134e-04,
    2.75573137070700676789e-06,
    -2.50507602534068634195e-08,
    1.58969099521155010221e-10,
)
COS = (
    4.16666666666666019037e-02,
    -1.38888888888741095749e-03,
    2.48015872894767294178e-05,
    -2.75573143513906633035e-07,
    2.08757232129817482790e-09,
    -1.13596475577881948265e-11,
)


@njit(cache=True, inline="always")
def _sin_cos(x):
    """(sin x, cos x) in float64: x = n pi / 2 + r, |r| <= pi / 4, then fdlibm's kernels of sin
    and cos on r, by the quadrant n mod 4."""
    if x != x or abs(x) == math.inf:
        return math.nan, math.nan
    n = math.floor(x * INV_PIO2 + 0.5)
    r = ((x - n * PIO2_1) - n * PIO2_2) - n * PIO2_2T
    z = r * r
    v = z * r
    sine = r + v * (SIN[0] + z * (SIN[1] + z * (SIN[2] + z * (SIN[3] + z * (SIN[4] + z * SIN[5])))))
    c = z * (COS[0] + z * (COS[1] + z * (COS[2] + z * (COS[3] + z * (COS[4] + z * COS[5])))))
    hz = 0.5 * z
    w = 1.0 - hz
    cosine = w + (((1.0 - w) - hz) + z * c)
    quadrant = int(n) & 3
    if quadrant == 0:
        return sine, cosine
    if quadrant == 1:
        return cosine, -sine
    if quadrant == 2:
        return -sine, -cosine
    return -cosine, sine


@njit(cache=True, inline="always")
def sin(x):
    """The sine of x in float64 (see _sin_cos)."""
    return _sin_cos(x)[0]


@njit(cache=True, inline="always")
def cos(x):
    """The cosine of x in float64 (see _sin_cos)."""
    return _sin_cos(x)[1]


@njit(cache=True)
def cos_of(x):
    """cos of every element of x (1-D, float64), as a new array."""
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = cos(x[i])
    return out


TWO_PI = 6.283185307179586


@njit(cache=True)
def normals(u1, u2):
    """Standard normal numbers from pairs of uniform ones in [0, 1) (Box and Muller, 1958):
    sqrt(-2 log(1 - u1)) cos(2 pi u2), one per pair; u1, u2 1-D float64 arrays of one size."""
    out = np.empty_like(u1)
    for i in range(u1.size):
        out[i] = math.sqrt(-2.0 * log(1.0 - u1[i])) * cos(TWO_PI * u2[i])
    return out
