"""Files that are either complete or absent: every output is written to a temporary file beside
its target and renamed into place, so an interrupted job never leaves a file that looks done."""

import contextlib
import glob
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in the target's directory; rename it to `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A writer killed with SIGKILL cannot clean up: its leftovers go when the output is redone.
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_csv(frame, path):
    """Write a DataFrame as CSV atomically.  Floats use the shortest repr that round-trips, so
    the same numbers give the same bytes and reading the file back gives the same numbers."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n")


def write_text(text, path):
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_figure(figure, path):
    """Save a matplotlib figure as PNG with no timestamp or software metadata, so the same data
    gives the same bytes."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, metadata={"Software": None})
