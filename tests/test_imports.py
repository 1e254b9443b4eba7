"""How the package's modules depend on each other: imports run one way (no cycle, at module level
or inside a function), the pure modules import nothing of jitprop, and what the Snakefile imports
to read and validate a config loads no Numba (Snakemake reads it on every start and dry run)."""

import ast
import subprocess
import sys

import pytest

from jitprop import provenance

from conftest import ROOT

PACKAGE = ROOT / "src" / "jitprop"
# Modules that import nothing of jitprop: the checks, sweep expansion, the registry of model
# families, the CNN's layer specs, atomic files and the results lock.
PURE = {"checks", "sweep", "families", "cnn_spec", "io", "lock"}


def module_name(path):
    return ".".join(["jitprop", *path.relative_to(PACKAGE).with_suffix("").parts]).removesuffix(
        ".__init__"
    )


def imported(path, modules):
    """The jitprop modules that the module at `path` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in modules}


@pytest.fixture(scope="module")
def graph():
    paths = [path for path in provenance.source_files(PACKAGE) if path.suffix == ".py"]
    modules = {module_name(path): path for path in paths}
    return {name: imported(path, modules) - {name} for name, path in modules.items()}


def cycle(graph):
    """One import cycle of `graph` as a list of modules, or None."""
    state, stack = {}, []

    def visit(name):
        state[name] = "open"
        stack.append(name)
        for other in sorted(graph[name]):
            if state.get(other) == "open":
                return [*stack[stack.index(other) :], other]
            if other not in state and (found := visit(other)):
                return found
        state[name] = "done"
        stack.pop()
        return None

    for name in sorted(graph):
        if name not in state and (found := visit(name)):
            return found
    return None


def test_no_module_imports_itself_back(graph):
    assert "jitprop.kernels.conv" in graph["jitprop.cnn_net"]  # the graph sees subpackages
    assert cycle(graph) is None, " -> ".join(cycle(graph))


def test_the_cycle_finder_finds_one():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_pure_modules_import_nothing_of_jitprop(graph):
    for name in PURE:
        assert graph[f"jitprop.{name}"] == set(), name


def test_reading_and_validating_a_config_loads_no_numba():
    """What the Snakefile and its rule files import (they validate the config on every start,
    dry runs included)."""
    script = (
        "import sys\n"
        "from jitprop import config, data, families, lock, provenance, runs\n"
        "config.validate_config({})\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numba', 'llvmlite')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout
