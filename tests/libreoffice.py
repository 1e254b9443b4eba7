"""LibreOffice Calc, headless, as the tests' independent spreadsheet program: it opens a workbook,
recalculates every formula and saves the values it computed, for the tests to compare.

Calc does not recalculate an .xlsx on load by default: it shows the results the writer cached in
the file, so reading those back would compare our numbers with themselves.  Each call runs Calc
in a fresh private profile whose settings say to always recalculate (OOXMLRecalcMode 0)."""

import os
import shutil
import signal
import subprocess

import pytest

TIMEOUT = 300  # seconds; a first start in a fresh profile takes a few
# Calc's "Recalculation on file load" for Excel 2007 and newer files: 0 always, 1 never (the
# default), 2 ask.  Written into the profile's registrymodifications.xcu before Calc starts.
ALWAYS_RECALCULATE = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry"
           xmlns:xs="http://www.w3.org/2001/XMLSchema"
           xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load">
<prop oor:name="OOXMLRecalcMode" oor:op="fuse"><value>0</value></prop></item>
</oor:items>
"""


def soffice():
    """The soffice executable; skips the test when there is none, and fails it under CI=true,
    where .ci/run installs Debian's libreoffice-calc-nogui."""
    path = shutil.which("soffice") or shutil.which("libreoffice")
    if path is None:
        why = "LibreOffice (soffice) is not installed: apt-get install libreoffice-calc-nogui"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must check the workbook in LibreOffice, but: {why}")
        pytest.skip(why)
    return path


def recalculated(xlsx, workdir, *, recalculate=True):
    """Open `xlsx` in Calc and save it again as workdir/out/<name>: every formula's cached value
    is then Calc's own result.  recalculate=False keeps Calc's default (never), for the test
    that shows the setting matters."""
    profile = workdir / "profile"
    (profile / "user").mkdir(parents=True, exist_ok=True)
    if recalculate:
        (profile / "user" / "registrymodifications.xcu").write_text(ALWAYS_RECALCULATE)
    out = workdir / "out"
    command = [
        soffice(),
        f"-env:UserInstallation={profile.as_uri()}",
        "--headless",
        "--norestore",
        "--nolockcheck",
        "--convert-to",
        "xlsx",
        "--outdir",
        str(out),
        str(xlsx),
    ]
    _run(command)
    result = out / xlsx.name
    assert result.is_file(), f"LibreOffice wrote no {result}"
    return result


def _run(command):
    """Run soffice in its own process group, so that a timeout ends it and all it started."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"LibreOffice took more than {TIMEOUT} s: {' '.join(command)}")
    assert process.returncode == 0, f"{' '.join(command)} failed:\n{output}"
