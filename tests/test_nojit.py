"""The kernel tests (marked `kernel`) once more with NUMBA_DISABLE_JIT=1: the kernels run as plain
Python, so coverage sees their lines, and the compiled and interpreted versions must agree with
the same references."""

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET


def pytest_kernel_tests(root, *args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "kernel", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_kernel_tests_pass_without_jit(root, tmp_path):
    listing = pytest_kernel_tests(root, "--collect-only").stdout
    collected = int(re.search(r"(\d+)/\d+ tests collected", listing).group(1))
    assert collected >= 40, listing[-2000:]
    report = tmp_path / "nojit.xml"
    result = pytest_kernel_tests(root, f"--junitxml={report}", env={"NUMBA_DISABLE_JIT": "1"})
    counts = ET.parse(report).getroot().find("testsuite").attrib
    # Every kernel test ran, and passed: none failed, errored or was skipped.
    assert int(counts["tests"]) == collected, result.stdout[-3000:]
    failed = (counts["failures"], counts["errors"], counts["skipped"])
    assert failed == ("0", "0", "0"), result.stdout[-5000:]
