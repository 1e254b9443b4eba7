"""Files that are either complete or absent: every output is written to a temporary file beside
its target and renamed into place, so an interrupted job never leaves a file that looks done."""

import contextlib
import glob
import os
import socket
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in the target's directory; on success, make it durable and rename
    it to `path`.  The temporary file is named for its writer (.NAME~HOST~PID~RANDOM.tmp)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    prefix = f".{path.name}~{socket.gethostname()}~{os.getpid()}~"
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    os.close(handle)
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        _fsync(tmp, os.O_RDONLY)  # its data on disk before its name: never a done-looking stub
        os.replace(tmp, path)
        _fsync(path.parent, os.O_RDONLY | os.O_DIRECTORY)  # and the rename itself
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _remove_stale(path):
    """Delete the temporary files of `path` whose writers are dead: a writer killed with
    SIGKILL cannot clean up.  Those of a live process, or of another host, are its own."""
    here = socket.gethostname()
    for stale in path.parent.glob(f".{glob.escape(path.name)}~*~*~*.tmp"):
        host, pid, _ = stale.name[len(path.name) + 2 :].split("~", 2)
        if host == here and pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def _fsync(path, flags):
    handle = os.open(path, flags)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _umask():
    """The process's umask, read without changing it (os.umask would, for a moment, for every
    thread)."""
    with contextlib.suppress(OSError, StopIteration, ValueError):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
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
