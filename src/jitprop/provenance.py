"""What produced a family's tables: its resolved config section and its hash, package
versions, the git commit and the hash of jitprop's source, and the machine, written beside
them, to results/FAMILY/provenance.json.  (Not the thread settings: the record is written by a
one-thread job, and the tables' bytes do not depend on threads; each run's log names its own.)"""

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path

from jitprop.io import write_text

PACKAGES = ["jitprop", "numpy", "numba", "llvmlite", "pandas", "matplotlib", "snakemake"]


def config_hash(config):
    """SHA-256 of the config as canonical JSON (sorted keys), so equal configs hash equal."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def git_commit(directory):
    """The commit checked out at `directory`, with '+dirty' when tracked files differ from it
    ('+status-unknown' when git cannot tell); 'unknown' outside a git work tree."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    try:
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return result.stdout.strip() + "+status-unknown"
    return result.stdout.strip() + ("+dirty" if dirty.strip() else "")


def source_hash(package=Path(__file__).parent):
    """SHA-256 of jitprop's own files (its modules and its config schema, in the package and
    every subpackage), by path: the code every job runs.  Every rule that runs jitprop takes it
    as a parameter, so Snakemake reruns the jobs when the code changes.  Hidden files are not
    the package's: an editor's lock file (emacs' .#mlp.py, a dangling link while a buffer is
    unsaved) is skipped, and so is anything in a hidden folder."""
    digest = hashlib.sha256()
    for path in sorted(source_files(package)):
        name = path.relative_to(package).as_posix()
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def source_files(package=Path(__file__).parent):
    """The files source_hash covers: every .py and .yaml file below `package`, at any depth,
    but hidden ones and those in hidden folders."""
    return [
        path
        for pattern in ("*.py", "*.yaml")
        for path in package.rglob(pattern)
        if not any(part.startswith(".") for part in path.relative_to(package).parts)
    ]


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def collect(config, source_dir, source):
    """The record of a family's tables: `config` its section, {family: section}; `source`:
    source_hash(), as the workflow's rules took it."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "config": config,
        "config_sha256": config_hash(config),
        "git_commit": git_commit(source_dir),
        "source_sha256": source,
        "packages": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
    }


def write(config, source_dir, source, path):
    write_text(json.dumps(collect(config, source_dir, source), indent=2) + "\n", path)
