"""A real single-node SLURM for the tests: munged with a fresh key, slurmctld and slurmd on this
machine, everything (config, state, sockets, logs) in one scratch directory.  Needs root and
Debian's slurm-wlm and munge packages (.ci/run installs them).

Settings that work as root on one node without cgroups or accounting: proctrack/linuxproc,
task/none, accounting_storage/none.  Without accounting there is no sacct, so Snakemake's
SLURM plugin must poll with squeue, which keeps finished jobs for MinJobAge seconds.

The config goes to Slurm's default path, /etc/slurm/slurm.conf, not only to SLURM_CONF: the
plugin's job step drops every SLURM_* variable before its nested srun, which then finds no
config anywhere else.  A config that is not ours is never overwritten."""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

BINARIES = ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo"]
DEFAULT_CONF = Path("/etc/slurm/slurm.conf")
MARK = "# written by jitprop's test harness (tests/slurm_cluster.py); removed when it stops\n"

SLURM_CONF = (
    MARK
    + """\
ClusterName=jitprop-test
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=600
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
MpiDefault=none
NodeName={host} CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""
)


def unavailable():
    """Why this machine cannot run the test cluster, or None if it can."""
    missing = [name for name in BINARIES if shutil.which(name) is None]
    if missing:
        return (
            f"SLURM/munge not installed ({', '.join(missing)} missing): "
            "apt-get install slurm-wlm munge"
        )
    if os.geteuid() != 0:
        return "the test cluster runs slurmd as root; run the tests as root"
    if DEFAULT_CONF.exists() and not DEFAULT_CONF.read_text().startswith(MARK):
        return f"a real SLURM config is at {DEFAULT_CONF}; the test cluster leaves it alone"
    return None


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Cluster:
    """Start with `start()`, stop with `stop()`; `env` is the environment for SLURM clients."""

    def __init__(self, root):
        self.root = Path(root)
        self.processes = []
        self.conf = DEFAULT_CONF
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self, timeout=60):
        for sub in ("state", "spool", "munge"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        (self.root / "munge").chmod(0o700)
        munge_socket = self.root / "munge" / "munge.socket"
        self._spawn(
            [
                "munged",
                "--foreground",
                "--force",
                f"--key-file={key}",
                f"--socket={munge_socket}",
                f"--pid-file={self.root}/munge/munged.pid",
                f"--log-file={self.root}/munge/munged.log",
                f"--seed-file={self.root}/munge/munged.seed",
            ]
        )
        self._wait(lambda: munge_socket.exists(), timeout, "munged did not create its socket")
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 // 2
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            SLURM_CONF.format(
                host=socket.gethostname(),
                munge_socket=munge_socket,
                root=self.root,
                ctld_port=free_port(),
                d_port=free_port(),
                cpus=os.cpu_count(),
                memory=memory,
            )
        )
        self._spawn(["slurmctld", "-D", "-i", "-f", str(self.conf)])
        self._spawn(["slurmd", "-D", "-f", str(self.conf)])
        self._wait(self._node_ready, timeout, "the node never became idle")

    def _spawn(self, command):
        log = open(self.root / f"{Path(command[0]).name}.stdout", "w")
        self.processes.append(
            (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env), log)
        )

    def _node_ready(self):
        for process, _ in self.processes:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{process.args[0]} exited with {process.returncode}:\n" + self.logs()
                )
        state = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=self.env
        )
        return state.returncode == 0 and state.stdout.strip() in ("idle", "mix", "alloc")

    def _wait(self, ready, timeout, message):
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{message} within {timeout} s:\n{self.logs()}")
            time.sleep(0.5)

    def logs(self):
        parts = []
        for path in sorted(self.root.glob("*.log")) + sorted(self.root.glob("*.stdout")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def stop(self):
        for process, log in reversed(self.processes):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
        self.processes.clear()
        if self.conf.exists() and self.conf.read_text().startswith(MARK):
            self.conf.unlink()
