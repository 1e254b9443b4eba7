"""The same bits whatever x86-64 CPU with FMA Numba compiles for: short CNN, MLP and toy runs
compiled for this machine and for a Haswell (AVX2 and FMA, no AVX-512: 256-bit vectors, where
LLVM gives an AVX-512 Zen 4 512-bit ones) train to the same bytes.  The kernels reassociate
nothing and fuse only multiply-adds, so neither the vector width nor the CPU's tuning may
show in the results: a laptop and a cluster node give the same tables.  (Compiled without
FMA, NUMBA_CPU_NAME=generic, the CNN trains to other bits: FMA is what the claim needs.)"""

import os
import platform
import subprocess
import sys

import llvmlite.binding as llvm
import pytest

# Prints the CPU Numba compiles for and whether it may use AVX-512, then a SHA-256 of
# everything the three runs trained.
RUNS = """
import hashlib, sys
import llvmlite.binding, numba, numpy as np
from jitprop import cnn, config, data, mlp, toy

features = numba.config.CPU_FEATURES or llvmlite.binding.get_host_cpu_features().flatten()
print(numba.config.CPU_NAME or llvmlite.binding.get_host_cpu_name(), "+avx512f" in features)
train, test = data.load_split(sys.argv[1], "train", 256), data.load_split(sys.argv[1], "test", 64)
digest = hashlib.sha256()
run = cnn.train(train, test, lr=0.1, seed=0, epochs=1, batch_size=64,
                augment={"rotation": 7.0, "shift": 1.0})
for layer in run["params"]:
    for key in sorted(layer):
        digest.update(np.ascontiguousarray(layer[key]).tobytes())
for stat in run["stats"]:
    for array in stat:
        digest.update(np.asarray(array).tobytes())
run = mlp.train(train, test, lr=0.05, seed=0, epochs=1, batch_size=32, layers=[784, 32, 10])
for W, b in run["params"]:
    digest.update(W.tobytes() + b.tobytes())
t = config.defaults("toy")
history = toy.train(t["weights"], t["inputs"], t["targets"], 0.5, 100)
digest.update(history.to_numpy(float).tobytes())
print(digest.hexdigest())
"""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="compares x86-64 targets")
def test_another_cpu_target_trains_to_the_same_bits(mnist_dir, tmp_path):
    host = llvm.get_host_cpu_name()
    features = llvm.get_host_cpu_features().flatten()  # without AVX-512 below: a Haswell's
    target = "haswell" if host != "haswell" else "skylake"
    # Both at once, a thread each, each compiling into a cache of its own.
    base = {**os.environ, "NUMBA_NUM_THREADS": "1"}
    envs = {
        host: {**base, "NUMBA_CACHE_DIR": str(tmp_path / "host")},
        target: {
            **base,
            "NUMBA_CPU_NAME": target,
            "NUMBA_CPU_FEATURES": features.replace("+avx512", "-avx512"),
            "NUMBA_CACHE_DIR": str(tmp_path / target),
        },
    }
    jobs = {
        name: subprocess.Popen(
            [sys.executable, "-c", RUNS, str(mnist_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name, env in envs.items()
    }
    printed = {}
    for name, job in jobs.items():
        out, err = job.communicate(timeout=600)
        assert job.returncode == 0, err[-3000:]
        printed[name] = out.split()
    assert printed[host][0] == host
    assert printed[target][:2] == [target, "False"]  # Numba compiled for the other CPU
    assert printed[target][2] == printed[host][2], f"{target} and {host} trained different bits"
