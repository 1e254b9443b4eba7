"""Random initial weights, drawn from a numpy Generator: uniform ones as NumPy draws them, normal
ones by Box and Muller from uniform ones with jitprop's own log and cos, so that no initial
weight depends on the C library (NumPy's own normal sampler calls libm's exp and log)."""

import math

from jitprop.kernels.elementary import normals


def normal(rng, std, shape):
    """Normal numbers of mean 0 and standard deviation `std` (float64, `shape`): two uniform
    draws of rng per number."""
    size = math.prod(shape)
    u = rng.random((2, size))
    return (std * normals(u[0], u[1])).reshape(shape)


def uniform(rng, limit, shape):
    """Uniform numbers in [-limit, limit) (float64, `shape`), as rng.uniform draws them."""
    return rng.uniform(-limit, limit, shape)
