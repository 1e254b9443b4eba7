"""The benchmarks' own kernels, which no pipeline step runs, still compute what they claim: each
script's check, run as a user runs it (tests import no benchmark script)."""

import subprocess
import sys

from conftest import ROOT


def test_toy_grid_kernel_is_bit_identical_to_single_runs():
    script = ROOT / "benchmarks" / "toy_kernel.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "32 grid nets checked against single runs: 0 differ" in result.stdout, result.stdout
