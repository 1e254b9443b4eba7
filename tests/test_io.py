"""Outputs are complete or absent: written beside their target, renamed into place, and the
leftovers of dead writers cleared without touching a live writer's."""

import os
import socket
import subprocess
import sys

import pytest

from jitprop import io


def test_a_write_leaves_the_file_with_a_plain_mode_and_nothing_else(tmp_path):
    target = tmp_path / "deep/table.csv"
    io.write_text("a,b\n1,2\n", target)
    assert target.read_text() == "a,b\n1,2\n"
    assert os.listdir(target.parent) == ["table.csv"]
    mask = os.umask(0o022)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_failed_write_leaves_neither_target_nor_temporary_file(tmp_path):
    def write_half(target):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("the writer failed")

    with pytest.raises(RuntimeError, match="the writer failed"):
        write_half(tmp_path / "table.csv")
    assert os.listdir(tmp_path) == []


def test_only_the_temporary_files_of_dead_writers_on_this_host_are_removed(tmp_path):
    host = socket.gethostname()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = tmp_path / f".table.csv~{host}~{dead.stdout.strip()}~x1.tmp"
    live = tmp_path / f".table.csv~{host}~{os.getpid()}~x2.tmp"  # this process: alive
    elsewhere = tmp_path / ".table.csv~another-host~1~x3.tmp"
    neighbour = tmp_path / f".table.csv.bak~{host}~{dead.stdout.strip()}~x4.tmp"
    for path in (stale, live, elsewhere, neighbour):
        path.write_text("partial")
    io.write_text("done\n", tmp_path / "table.csv")
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["table.csv", live.name, elsewhere.name, neighbour.name]
    )
