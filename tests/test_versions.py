"""The installed packages the results' bytes depend on are the versions constraints.txt pins."""

import importlib.metadata

from conftest import ROOT

PINS = dict(
    line.split("==")
    for line in (ROOT / "constraints.txt").read_text().splitlines()
    if line and not line.startswith("#")
)


def test_installed_versions_are_the_constrained_ones():
    assert {"numpy", "numba", "llvmlite"} <= set(PINS)
    installed = {name: importlib.metadata.version(name) for name in PINS}
    assert installed == PINS, "install with: pip install -c constraints.txt -e '.[dev]'"
