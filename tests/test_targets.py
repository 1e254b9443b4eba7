"""The same bits whatever x86-64 CPU with FMA Numba compiles for: short CNN, MLP and toy runs
compiled for this machine with 512-bit vectors (where it has AVX-512) and for a Haswell (AVX2
and FMA: 256-bit vectors) train to the same bytes.  The kernels reassociate nothing and fuse
only multiply-adds, so neither the vector width nor the CPU's tuning may show in the results:
a laptop and a cluster node give the same tables.  (Compiled without FMA, the CNN trains to
other bits: FMA is what the claim needs.)  And no compiled kernel calls a C library's
transcendental (exp, log, tanh, sin, cos): jitprop's own are in kernels/elementary.py."""

import os
import platform
import subprocess
import sys

import llvmlite.binding as llvm
import pytest

from conftest import started

# Prints the CPU Numba compiles for, a SHA-256 of everything the three runs trained, and the
# widest vector registers the convolution's inner loop was compiled to.
RUNS = """
import hashlib, sys
import llvmlite.binding, numba, numpy as np
from jitprop import cnn, config, data, mlp, toy

print(numba.config.CPU_NAME or llvmlite.binding.get_host_cpu_name())
train, test = data.load_split(sys.argv[1], "train", 256), data.load_split(sys.argv[1], "test", 64)
digest = hashlib.sha256()
run = cnn.train(train, test, lr=0.1, seed=0, epochs=1, batch_size=64,
                augment={"rotation": 7.0, "shift": 1.0})
for layer in run["params"]:
    for key in sorted(layer):
        digest.update(np.ascontiguousarray(layer[key]).tobytes())
for stat in run["stats"]:
    for key in sorted(stat):
        digest.update(np.asarray(stat[key]).tobytes())
digest.update(repr([run["history"], run["steps"], run["misclassified"]]).encode())
run = mlp.train(train, test, lr=0.05, seed=0, epochs=1, batch_size=32, layers=[784, 32, 10])
for W, b in run["params"]:
    digest.update(W.tobytes() + b.tobytes())
t = config.defaults("toy")
history = toy.train(t["weights"], t["inputs"], t["targets"], 0.5, 100)
digest.update(history.to_numpy(float).tobytes())
print(digest.hexdigest())
# The widest vectors of the convolution's inner loop, as compiled here (a fresh cache).
from jitprop.kernels import conv_loops
assembly = "".join(conv_loops._nine_taps.inspect_asm().values())
print(next(width for width in ("zmm", "ymm", "xmm") if width in assembly))
# Every function a compiled kernel declares in its LLVM IR that is a C library's (or SVML's)
# transcendental: libm's names and their float versions, LLVM's intrinsics that lower to them,
# SVML's vector functions.  (The training loops above inline every kernel; the MLP's take every
# activation and loss by a code at run time, so all of their paths are compiled.)
import importlib, pathlib
from numba.core.dispatcher import Dispatcher
from jitprop import provenance
libm = {name + suffix for name in ("exp", "expm1", "log", "log1p", "tanh", "sin", "cos", "pow")
        for suffix in ("", "f")}
prefixes = ("llvm.exp.", "llvm.log.", "llvm.sin.", "llvm.cos.", "llvm.pow.", "__svml_")
package, calls, kernels = pathlib.Path(provenance.__file__).parent, set(), 0
for path in provenance.source_files(package):
    if path.suffix == ".py" and "njit" in path.read_text():
        module = importlib.import_module(
            ".".join(["jitprop", *path.relative_to(package).with_suffix("").parts]))
        for kernel in [v for v in vars(module).values() if isinstance(v, Dispatcher)]:
            kernels += bool(kernel.signatures)
            for ir in kernel.inspect_llvm().values() if kernel.signatures else ():
                for line in ir.splitlines():
                    if line.startswith("declare"):
                        name = line.split("@", 1)[1].split("(", 1)[0].strip('"')
                        if name in libm or name.startswith(prefixes):
                            calls.add(f"{module.__name__}.{kernel.__name__}:{name}")
print(kernels, "kernels, C library transcendentals:", ",".join(sorted(calls)) or "none")
"""


def start_runs(mnist, folder):
    """{target: process} of RUNS compiled for this machine with 512-bit vectors (where it has
    AVX-512: LLVM's tuning for Intel's prefers 256) and for a Haswell (this machine's features
    without AVX-512, nor AVX10), both at once, a thread each, each compiling into a cache of
    its own (started early: tests/conftest.py)."""
    host = llvm.get_host_cpu_name()
    features = llvm.get_host_cpu_features().flatten()
    avx512 = "+avx512f" in features
    target = "haswell" if host != "haswell" else "skylake"
    base = {key: value for key, value in os.environ.items() if not key.startswith("NUMBA_CPU")}
    base["NUMBA_NUM_THREADS"] = "1"
    haswell = features.replace("+avx512", "-avx512").replace("+avx10", "-avx10")
    envs = {
        host: {
            **base,
            "NUMBA_CPU_FEATURES": features + (",-prefer-256-bit" if avx512 else ""),
            "NUMBA_CACHE_DIR": str(folder / "host"),
        },
        target: {
            **base,
            "NUMBA_CPU_NAME": target,
            "NUMBA_CPU_FEATURES": haswell,
            "NUMBA_CACHE_DIR": str(folder / target),
        },
    }
    jobs = {}
    for name, env in envs.items():  # into files: nobody reads a pipe before the test waits
        with open(folder / f"{name}.out", "w") as out, open(folder / f"{name}.err", "w") as err:
            command = [sys.executable, "-c", RUNS, str(mnist)]
            jobs[name] = subprocess.Popen(command, stdout=out, stderr=err, env=env)
    return jobs


EARLY = {"target_runs": start_runs} if platform.machine() == "x86_64" else {}


@pytest.fixture(scope="module")
def target_runs(request):
    """{target: (exit status, what it printed, its errors)} of start_runs."""
    jobs, folder = started(request, "target_runs")
    return {
        name: (job.wait(timeout=900), (folder / f"{name}.out").read_text(),
               (folder / f"{name}.err").read_text())
        for name, job in jobs.items()
    }  # fmt: skip


@pytest.mark.skipif(platform.machine() != "x86_64", reason="compares x86-64 targets")
def test_another_cpu_target_trains_to_the_same_bits(target_runs):
    host = llvm.get_host_cpu_name()
    avx512 = "+avx512f" in llvm.get_host_cpu_features().flatten()
    target = "haswell" if host != "haswell" else "skylake"
    printed = {}
    for name, (status, out, err) in target_runs.items():
        assert status == 0, err[-3000:]
        printed[name] = out.split()
    # No kernel calls a C library's transcendental, so neither the C library nor SVML (which
    # Numba uses only to vectorize such calls) can change a bit.
    for name, words in printed.items():
        assert int(words[3]) >= 40, words
        assert words[4:] == ["kernels,", "C", "library", "transcendentals:", "none"], (name, words)
    # What each was compiled for: the CPU, and the vectors its convolution uses.
    assert (printed[host][0], printed[host][2]) == (host, "zmm" if avx512 else "ymm")
    assert (printed[target][0], printed[target][2]) == (target, "ymm")
    assert printed[target][1] == printed[host][1], f"{target} and {host} trained different bits"
