"""The style checks of .pre-commit-config.yaml, run here on every tracked file they select: ruff
(lint and format) over the package, tests and benchmarks, snakefmt over the rules."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HOOKS = [
    hook
    for repo in yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())["repos"]
    for hook in repo["hooks"]
]


def selected(hook):
    """Tracked files the hook runs on, as pre-commit chooses them (types: python, or files)."""
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    if hook.get("types") == ["python"]:
        return [name for name in tracked if name.endswith(".py")]
    return [name for name in tracked if re.search(hook["files"], name)]


@pytest.mark.parametrize("hook", HOOKS, ids=[hook["id"] for hook in HOOKS])
def test_pre_commit_hook(hook):
    files = selected(hook)
    assert files, f"hook {hook['id']} selects no file"
    command, *args = shlex.split(hook["entry"])
    result = subprocess.run(
        [str(BIN / command), *args, *files], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, f"{hook['entry']}:\n{result.stdout}\n{result.stderr}"
