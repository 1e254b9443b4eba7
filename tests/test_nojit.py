"""The kernels once more as plain Python (NUMBA_DISABLE_JIT=1): coverage sees their lines, and
the compiled and interpreted versions must agree with the same references."""

import os
import subprocess
import sys


def test_kernels_without_jit(root):
    selection = "reference or central or published or grid or training_step or bits or exp"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            selection,
            "tests/test_toy.py",
            "tests/test_mlp.py",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "NUMBA_DISABLE_JIT": "1"},
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
    assert " failed" not in result.stdout
