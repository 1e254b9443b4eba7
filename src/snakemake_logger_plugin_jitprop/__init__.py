"""Snakemake's terminal output for jitprop's default profile (`logger: [jitprop]`): Snakemake's
own messages, errors and progress, with each job's start in one line instead of its file lists."""

import sys
import time

from snakemake_interface_logger_plugins.base import LogHandlerBase
from snakemake_interface_logger_plugins.common import LogEvent


def job_line(record):
    """A job's start in one line: '[time] rule NAME (wildcards): job ID'.  Snakemake's own
    block lists every input and output file, hundreds for an aggregation job."""
    kind = "localrule" if getattr(record, "local", False) else "rule"
    wildcards = ", ".join(f"{key}={value}" for key, value in record.wildcards.items())
    where = f" ({wildcards})" if wildcards else ""
    return f"[{time.asctime()}] {kind} {record.rule_name}{where}: job {record.jobid}"


class LogHandler(LogHandlerBase):
    """Snakemake's terminal handler, but for a job's start (see job_line).  Snakemake attaches
    its own filter (--quiet, --printshellcmds) and formatter to it, and keeps writing its full
    log, file lists included, to .snakemake/log/ with a handler of its own."""

    def emit(self, record):
        try:
            if getattr(record, "event", None) == LogEvent.JOB_INFO:
                text = job_line(record)
            else:
                text = self.format(record)
            stream = sys.stdout if self.common_settings.stdout else sys.stderr
            stream.write(text + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)

    @property
    def writes_to_stream(self):
        return True

    @property
    def writes_to_file(self):
        return False

    @property
    def has_filter(self):
        return False

    @property
    def has_formatter(self):
        return False

    @property
    def needs_rulegraph(self):
        return False
