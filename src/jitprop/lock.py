"""One run at a time per results directory: the Snakemake process that runs the jobs holds an
flock on RESULTS/.jitprop.lock, which the kernel drops the moment that process ends, however it
ends (SIGKILL, a lost machine), so a lock is never left behind to clear by hand."""

import datetime
import errno
import os
import socket
import sys
from pathlib import Path

NAME = ".jitprop.lock"


class Held(RuntimeError):
    """Another live run holds the results directory."""


def hold(directory):
    """Take the lock of `directory` for the rest of this process, or raise Held naming its
    holder.  Returns the open descriptor (kept open: closing it would release the lock); None
    where the filesystem takes no locks, after a warning."""
    import fcntl  # POSIX only, as Snakemake's cluster executors are

    path = Path(directory) / NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by the jobs
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 1024).decode(errors="replace").strip() or "a process"
        os.close(fd)
        raise Held(
            f"{directory}/ is in use by another run ({holder}): wait for it to finish, or give "
            "this run another `experiment` name"
        ) from None
    except OSError as error:
        if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        os.close(fd)
        print(
            f"jitprop: warning: {path}: this filesystem takes no locks ({error.strerror}); "
            "nothing stops a second run in the same results directory",
            file=sys.stderr,
        )
        return None
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n".encode())
    return fd
