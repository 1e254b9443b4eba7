"""Numba's on-disk cache: NUMBA_CACHE_DIR is honoured, an edit anywhere in the package reaches
every kernel, and every kernel is stamped with the whole package.  (A cache filled by many jobs
at once, and in the order that once crashed Numba, is tests/test_workflow.py's.)"""

import concurrent.futures
import os
import subprocess
import sys

from jitprop import provenance

from helpers import package_copy


def toy_job(cache, out, **env):
    """One toy job on `cache` (with `env` added to the environment); returns the cache lines
    Numba printed (NUMBA_DEBUG_CACHE)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "NUMBA_DEBUG_CACHE": "1", **env}
    result = subprocess.run(
        [sys.executable, "-m", "jitprop", "toy", "--lr", "0.5", "--steps", "3", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.startswith("[cache]")]


def test_numba_cache_dir_is_honoured(tmp_path):
    cache = tmp_path / "cache"
    first = toy_job(cache, tmp_path / "a")
    assert any("data saved to" in line and str(cache) in line for line in first), first
    assert list(cache.rglob("*toy_train_kernel*.nbi")), "no index in NUMBA_CACHE_DIR"
    second = toy_job(cache, tmp_path / "b")
    assert any("data loaded from" in line and "toy_train_kernel" in line for line in second)
    assert not any("saved" in line for line in second), f"compiled again: {second}"


def test_an_edit_to_a_helper_in_a_subpackage_reaches_its_cached_callers(root, tmp_path):
    """The toy's training kernel inlines exp, from kernels/elementary.py, a module of a
    subpackage; Numba checks a cached kernel against its own file only.  In a copy of the
    package (first on PYTHONPATH), exp is changed after a toy job filled the cache: the source
    hash changes, and the next job on that cache computes what one on a cold cache does, not
    what it did before."""
    package = package_copy(root, tmp_path / "copy")

    def history(cache, out):
        toy_job(cache, out, PYTHONPATH=str(package.parent))
        return (out / "history.csv").read_text()

    before, hashed = history(tmp_path / "cache", tmp_path / "a"), provenance.source_hash(package)
    module = package / "kernels" / "elementary.py"
    source = module.read_text()
    result = "return (1.0 + (p + q * (r4 * r4))) * pow2(half)"
    assert source.count(result) == 1
    module.write_text(source.replace(result, result.replace("1.0 +", "2.0 +")))
    assert provenance.source_hash(package) != hashed
    after = history(tmp_path / "cache", tmp_path / "b")
    assert after == history(tmp_path / "cold", tmp_path / "c")
    assert after != before


def test_the_source_hash_covers_every_module_at_any_depth(root, tmp_path):
    package = package_copy(root, tmp_path)
    names = {path.relative_to(package).as_posix() for path in provenance.source_files(package)}
    assert {"config.schema.yaml", "mlp.py", "kernels/conv.py", "kernels/__init__.py"} <= names
    before = provenance.source_hash(package)
    deeper = package / "kernels" / "more"
    deeper.mkdir()
    (deeper / "new.py").write_text("# a module two levels down\n")
    assert provenance.source_hash(package) != before


def test_the_source_hash_skips_an_editors_lock_file(root, tmp_path):
    """While a buffer is unsaved, emacs leaves .#NAME.py, a link to nowhere, beside the file:
    every kernel import hashes the package, and must neither fail nor change on it."""
    package = package_copy(root, tmp_path)
    before = provenance.source_hash(package)
    (package / ".#mlp.py").symlink_to("user@host.1234:1700000000")
    (package / "kernels" / ".#dense.py").symlink_to("user@host.1234:1700000000")
    assert provenance.source_hash(package) == before


# Imports one module alone, then lists every kernel of jitprop now loaded and whether its cache
# is stamped with the whole package.
STAMPS = """
import importlib, sys
from numba.core.dispatcher import Dispatcher
importlib.import_module(sys.argv[1])
from jitprop import jit
for name, module in list(sys.modules.items()):
    for key, value in vars(module).items():
        if isinstance(value, Dispatcher) and value.py_func.__module__ == name == module.__name__:
            print(f"{name}.{key}", isinstance(value._cache._impl.locator, jit._WholePackageStamp))
"""


def test_every_cached_kernel_is_stamped_with_the_whole_package(root):
    """The stamp is installed when jitprop.jit is imported, so a module that decorated kernels
    before importing it would leave them unstamped: each kernel module is imported alone, in a
    fresh process, first of all jitprop."""
    package = root / "src/jitprop"
    modules = [
        ".".join(["jitprop", *path.relative_to(package).with_suffix("").parts])
        for path in sorted(provenance.source_files(package))
        if path.suffix == ".py" and "njit" in path.read_text()
    ]

    def imported_alone(module):
        command = [sys.executable, "-c", STAMPS, module]
        return subprocess.run(command, capture_output=True, text=True)

    stamped = {}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # two processes at a time
        for result in pool.map(imported_alone, modules):
            assert result.returncode == 0, result.stderr
            stamped.update(line.split() for line in result.stdout.splitlines())
    unstamped = [kernel for kernel, ok in stamped.items() if ok != "True"]
    assert not unstamped, f"cached without the package's stamp: {unstamped}"
    assert {"jitprop.kernels.dense.dense_forward", "jitprop.mlp._train_batches"} <= set(stamped)
    assert {"jitprop.toy._toy_train_kernel", "jitprop.kernels.conv.conv_forward"} <= set(stamped)
