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


def test_the_base_install_brings_what_the_report_needs():
    # `pip install -e .` (the README's first command) must let the third, --report, work:
    # Snakemake's report needs pygments, which it installs only with its "reports" extra.
    # (The dev extras bring pygments through pytest, so the report test alone cannot see this.)
    base = [r for r in importlib.metadata.requires("jitprop") if "extra ==" not in r]
    assert any(r.replace(" ", "").startswith("snakemake[reports]") for r in base), base
    importlib.metadata.version("pygments")
