"""Numba settings the kernel modules share: the decorator for functions that are parallel only
because they call parallel kernels (the numba/numba#8578 workaround), in one place."""

import warnings

from numba import njit
from numba.core.errors import NumbaPerformanceWarning

# Numba can segfault when a cached function that was compiled against a cached parallel=True
# callee is later loaded from the cache (numba/numba#8578; reproduced here with two jobs sharing
# one cache, and replayed by tests/test_cache.py).  So every function that calls a parallel
# kernel is compiled parallel=True too, though it has no loop of its own to spread over threads,
# and Numba's warning that it found nothing to parallelize in such a function is silenced.
warnings.filterwarnings(
    "ignore",
    r"\s*The keyword argument 'parallel=True' was specified but no "
    "transformation for parallel execution was possible",
    NumbaPerformanceWarning,
)


def calls_parallel(function):
    """njit(cache=True, parallel=True) for a function whose only parallelism is in the parallel
    kernels it calls: parallel=True here only for numba/numba#8578."""
    return njit(cache=True, parallel=True)(function)
