"""jitprop's own elementary functions (kernels/elementary.py) against correctly rounded values
from the decimal module, their special values, the interpreter's versions against the compiled
ones, and the kernels' code: no kernel calls a C library's transcendental, so no C library (and
no SVML, which Numba would call in their place) can change a bit."""

import ast
import decimal
import math

import numpy as np
import pytest

from jitprop import provenance
from jitprop.kernels import elementary
from jitprop.kernels.elementary import cos, exp, expm1, log, sin, tanh

from conftest import ROOT

CONTEXT = decimal.Context(prec=60, Emin=-99999, Emax=99999)


def _exp(d):
    return d.exp()


def _series(d, first):
    """sin (first = 1) or cos (first = 0) of the Decimal d by its Taylor series."""
    total, term, k = decimal.Decimal(0), decimal.Decimal(1), 0
    for n in range(1, first + 1):
        term *= d / n
    k = first
    while True:
        total += term
        term *= -d * d / ((k + 1) * (k + 2))
        k += 2
        if abs(term) < decimal.Decimal(10) ** -70:
            return total


def _expm1(d):
    """e ** d - 1 by its series where it is small (d.exp() - 1 would cancel every digit)."""
    if abs(d) > decimal.Decimal("1e-3"):
        return d.exp() - 1
    total, term, k = decimal.Decimal(0), d, 1
    while abs(term) > abs(d) * decimal.Decimal(10) ** -70:
        total += term
        k += 1
        term *= d / k
    return total


def _tanh(d):
    t = _expm1(2 * d)
    return t / (t + 2)


EXACT = {
    exp: _exp,
    expm1: _expm1,
    log: lambda d: d.ln(),
    tanh: _tanh,
    sin: lambda d: _series(d, 1),
    cos: lambda d: _series(d, 0),
}


def correctly_rounded(function, x):
    with decimal.localcontext(CONTEXT):
        return float(EXACT[function](decimal.Decimal(x)))


def sample(function, rng):
    """Arguments where each function is used, and where it is hard."""
    if function is exp:
        special = [0.0, -0.0, 1.0, -1.0, 0.5 * math.log(2)]
        return [rng.uniform(-1, 1, 2000), rng.uniform(-40, 40, 2000),
                rng.uniform(-708, 709.78, 2000), special]  # fmt: skip
    if function is expm1:
        tiny = 10.0 ** rng.uniform(-300, -1, 500)
        return [rng.uniform(-1, 1, 2000), rng.uniform(-45, 45, 2000), tiny, -tiny]
    if function is log:
        return [rng.uniform(0.5, 2, 2000), 10.0 ** rng.uniform(-300, 300, 2000),
                rng.uniform(0, 1e-308, 200), [1.0, 2.0, 0.5, math.sqrt(2), 1e-320]]  # fmt: skip
    if function is tanh:
        return [rng.uniform(-1, 1, 2000), rng.uniform(-25, 25, 2000),
                10.0 ** rng.uniform(-12, 0, 500), [0.0, 1.0, -1.0, 22.0, 0.5493]]  # fmt: skip
    return [rng.uniform(-7, 7, 4000), rng.uniform(-0.8, 0.8, 1000)]  # sin, cos: angles to 2 pi


# The worst error each function is allowed, in units in the last place of the exact value.
BOUNDS = {exp: 1, expm1: 2, log: 1, tanh: 2, sin: 1, cos: 1}


@pytest.mark.kernel
@pytest.mark.parametrize("function", list(EXACT), ids=lambda f: f.__name__)
def test_within_a_few_ulp_of_correctly_rounded(function):
    x = np.concatenate(sample(function, np.random.default_rng(7)))
    got = np.array([function(v) for v in x])
    expected = np.array([correctly_rounded(function, v) for v in x])
    normal = np.abs(expected) >= np.finfo(float).tiny
    if function in (sin, cos):  # near their zeros, what counts is the absolute error
        normal &= np.abs(expected) > 1e-3
        assert np.abs(got - expected).max() <= 2**-53
    ulps = np.abs(got - expected)[normal] / np.spacing(np.abs(expected[normal]))
    worst = ulps.argmax()
    assert ulps.max() <= BOUNDS[function], (
        f"{function.__name__}: {ulps.max()} ulp at x = {x[normal][worst]!r}"
    )
    # Where the exact value is subnormal: within the smallest subnormal.
    assert (np.abs(got - expected)[~normal] <= np.finfo(float).smallest_subnormal).all() or (
        function in (sin, cos)
    )
    # The interpreter's version (struct and math.ldexp for the bit operations) gives the
    # compiled one's bits.  Under NUMBA_DISABLE_JIT=1 there is only the interpreted one.
    if hasattr(function, "py_func"):
        np.testing.assert_array_equal([function.py_func(v) for v in x[::40]], got[::40])


@pytest.mark.kernel
def test_special_values():
    inf, nan = math.inf, math.nan
    assert (exp(800.0), exp(-800.0), exp(inf), exp(-inf)) == (inf, 0.0, inf, 0.0)
    assert (expm1(800.0), expm1(-800.0), expm1(0.0)) == (inf, -1.0, 0.0)
    assert (log(0.0), log(inf), log(1.0)) == (-inf, inf, 0.0)
    assert (tanh(30.0), tanh(-30.0), tanh(inf), tanh(-inf)) == (1.0, -1.0, 1.0, -1.0)
    assert math.copysign(1.0, tanh(-0.0)) == -1.0
    assert (sin(0.0), cos(0.0)) == (0.0, 1.0)
    for function in (exp, expm1, log, tanh, sin, cos):
        assert math.isnan(function(nan)), function.__name__
    assert math.isnan(log(-1.0))
    assert math.isnan(sin(inf))
    assert math.isnan(cos(-inf))


@pytest.mark.kernel
def test_normals_are_standard_normal():
    rng = np.random.default_rng(0)
    u = rng.random((2, 200_000))
    z = elementary.normals(u[0], u[1])
    assert abs(z.mean()) < 0.01
    assert abs(z.std() - 1) < 0.01
    assert abs(np.mean(np.abs(z) < 1) - 0.6827) < 0.005  # within one sigma
    assert np.isfinite(z).all()


# The transcendentals of the C library (math's, NumPy's), as the kernels' source could call them.
TRANSCENDENTAL = {"exp", "expm1", "exp2", "log", "log1p", "log2", "log10", "tanh", "sinh", "cosh",
                  "sin", "cos", "tan", "arctan", "atan", "pow", "power", "erf"}  # fmt: skip


def test_no_kernel_module_calls_a_c_library_transcendental():
    """In the source of every module that has kernels: no math.exp, np.log, ... (The compiled
    kernels' LLVM IR is checked too, by tests/test_targets.py, which compiles them afresh.)"""
    package = ROOT / "src" / "jitprop"
    for path in provenance.source_files(package):
        if path.suffix != ".py" or "njit" not in path.read_text():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                called = node.value.id in ("math", "np", "numpy") and node.attr in TRANSCENDENTAL
                assert not called, (
                    f"{path.relative_to(package)}:{node.lineno} {node.value.id}.{node.attr}"
                )
