"""e ** x for the toy net's kernels, from IEEE adds and multiplies only: Cody and Waite's range
reduction (fdlibm's constants) and a Taylor polynomial.  Within 1 ulp of the correctly rounded
value, the same bits on every machine (libm's exp may differ between C libraries), and a loop
of them vectorizes, which a loop calling libm's exp does not."""

import math

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


@njit(cache=True, inline="always")
def exp(x):
    """e ** x in float64 (tests/test_toy.py checks it against correctly rounded values)."""
    if x != x:
        return x
    if x > OVERFLOW:
        return math.inf
    if x < UNDERFLOW:
        return 0.0
    n = math.floor(x * LOG2E + 0.5)
    r = (x - n * LN2_HI) - n * LN2_LO  # x = n ln 2 + r, |r| <= ln(2) / 2
    # e ** r - 1 by its Taylor series to r ** 13 (the next term is below 5e-18 relative), in
    # Estrin's order: short chains of dependent operations.  Adding the 1 last keeps the error
    # of the small terms below half an ulp of the result.
    c, r2 = TAYLOR, r * r
    r4 = r2 * r2
    p = (r + (c[2] + c[3] * r) * r2) + ((c[4] + c[5] * r) + (c[6] + c[7] * r) * r2) * r4
    q = ((c[8] + c[9] * r) + (c[10] + c[11] * r) * r2) + (c[12] + c[13] * r) * r4
    # e ** x = e ** r * 2 ** n, the power in two halves so that each stays a normal number
    # (n is -1075..1024); only the last product rounds, when the result is subnormal.
    half = int(n) >> 1
    return (1.0 + (p + q * (r4 * r4))) * pow2(half) * pow2(int(n) - half)
