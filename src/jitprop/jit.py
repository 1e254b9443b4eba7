"""Numba settings the kernel modules share, in one place: the cache stamp that covers all of
jitprop's source, and the decorator for functions that are parallel only because they call
parallel kernels (the numba/numba#8578 workaround).  Every kernel module takes `njit` from here,
so that the stamp is in place before its first kernel is decorated."""

import warnings
from pathlib import Path

from numba import njit
from numba.core import caching
from numba.core.errors import NumbaPerformanceWarning

from jitprop.provenance import source_hash

__all__ = ["calls_parallel", "njit"]

PACKAGE = Path(__file__).resolve().parent
SOURCE = source_hash(PACKAGE)


# Numba checks a cached function against its own file only.  A kernel that calls one of another
# module (mlp's training step calls layers' kernels, the toy's inline exp) holds a compiled copy
# of it, so editing layers.py would leave mlp's cached step running the old code.  So every
# jitprop kernel's cache entries are stamped with the hash of all of jitprop's source as well
# (the hash provenance.json records): any change to the package, in any of its subpackages,
# recompiles every kernel once.
class _WholePackageStamp:
    @classmethod
    def from_function(cls, py_func, py_file):
        if PACKAGE not in Path(py_file).resolve().parents:
            return None  # not jitprop's (at any depth): Numba's own locators take it
        return super().from_function(py_func, py_file)

    def get_source_stamp(self):
        return super().get_source_stamp(), SOURCE


# Numba's locators, in its order (NUMBA_CACHE_DIR, else beside the source, else the user's
# cache directory), each stamped with the whole package; ahead of Numba's, for jitprop's files.
caching.CacheImpl._locator_classes[:0] = [
    type(f"WholePackage{base.__name__}", (_WholePackageStamp, base), {})
    for base in (
        caching.UserProvidedCacheLocator,
        caching.InTreeCacheLocator,
        caching.UserWideCacheLocator,
    )
]

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
