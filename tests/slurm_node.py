"""A real single-node SLURM for the tests: munged, slurmctld and slurmd started here, stopped
by the process ids recorded when they started.

The configuration lives in a temporary directory (``SLURM_CONF`` points the client commands
at it); nothing is written to ``/etc``.  Needs Debian's ``slurmctld slurmd slurm-client
munge`` (``.ci/run`` installs them) and root (the daemons run as root, munged as ``munge``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")

CONF = """\
ClusterName=ci
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
DefMemPerCPU=1000
ReturnToService=2
InactiveLimit=0
MinJobAge=60
KillWait=5
NodeName=localhost NodeHostname=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=8000 \
State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def missing() -> str | None:
    """Why a SLURM node cannot be started here, or None."""
    for command in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "setpriv"):
        if shutil.which(command) is None and not Path("/usr/sbin", command).exists():
            return (
                f"{command} not found: install Debian's slurmctld slurmd slurm-client munge "
                "(.ci/run does)"
            )
    if os.geteuid() != 0:
        return "the SLURM daemons are started as root"
    if not Path("/etc/munge/munge.key").exists():
        return "/etc/munge/munge.key is missing (reinstall munge)"
    return None


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as dead: PID 1 here may not reap)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    state = next((line for line in status.splitlines() if line.startswith("State:")), "")
    return "Z" not in state.split()[1:2]


def _wait(what: str, check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise RuntimeError(f"the test SLURM node: {what} not reached within {timeout:.0f} s")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SlurmNode:
    """A running single-node SLURM: its configuration directory and daemon ids."""

    root: Path
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """What a client command needs to reach this SLURM."""
        return {"SLURM_CONF": str(self.root / "slurm.conf")}

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A SLURM client command (``squeue``, ``scancel``...) against this node."""
        return subprocess.run(
            list(args),
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )

    def queue(self) -> list[str]:
        """The ids of the jobs in the queue (pending, running or completing)."""
        out = self.run("squeue", "-h", "-o", "%i")
        return out.stdout.split()

    def cancel_all(self, timeout: float = 60) -> None:
        """Cancel every job and wait for an empty queue."""
        if self.queue():
            self.run("scancel", "--full", *self.queue(), check=False)
        _wait("an empty queue", lambda: not self.queue(), timeout)


def start(root: Path, cpus: int = 4) -> SlurmNode:
    """Start munged, slurmctld and slurmd with a configuration in ``root``.

    ``cpus`` may exceed the machine's cores (``SlurmdParameters=config_overrides``): the
    tests run a batch job that submits worker jobs beside it.
    """
    node = SlurmNode(root)
    for sub in ("state", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    conf = CONF.format(root=root, cpus=cpus, ctld_port=_free_port(), slurmd_port=_free_port())
    (root / "slurm.conf").write_text(conf)
    env = {**os.environ, **node.env}
    try:
        _start_munged(node)
        ctld = subprocess.Popen(
            ["slurmctld", "-D", "-i", "-f", str(root / "slurm.conf")],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        node.pids["slurmctld"] = ctld.pid
        _wait(
            "slurmctld UP",
            lambda: "UP" in node.run("scontrol", "ping", check=False).stdout,
            60,
        )
        slurmd = subprocess.Popen(
            ["slurmd", "-D", "-N", "localhost", "-f", str(root / "slurm.conf")],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        node.pids["slurmd"] = slurmd.pid
        _wait(
            "the node idle",
            lambda: "idle" in node.run("sinfo", "-h", "-o", "%t", check=False).stdout,
            60,
        )
    except BaseException:
        stop(node)
        raise
    return node


def _start_munged(node: SlurmNode) -> None:
    run_dir = Path("/run/munge")
    pid_file = run_dir / "munged.pid"
    if pid_file.exists() and alive(int(pid_file.read_text().split()[0] or 0)):
        return  # a munged already serves this machine; not ours to stop
    subprocess.run(["install", "-d", "-o", "munge", "-g", "munge", str(run_dir)], check=True)
    pid_file.unlink(missing_ok=True)
    subprocess.run(
        ["setpriv", "--reuid", "munge", "--regid", "munge", "--init-groups", "munged"],
        check=True,
        capture_output=True,
        timeout=30,
    )  # forks into the background and writes its pid file
    _wait("munged's pid file", lambda: pid_file.exists() and pid_file.read_text().strip(), 20)
    node.pids["munged"] = int(pid_file.read_text().split()[0])


def stop(node: SlurmNode, timeout: float = 30) -> None:
    """Cancel the jobs left, then stop the daemons this module started, by their ids."""
    if "slurmd" in node.pids and alive(node.pids["slurmd"]):
        try:
            node.cancel_all()
        except (RuntimeError, subprocess.SubprocessError):
            pass
    for name in ("slurmd", "slurmctld", "munged"):
        pid = node.pids.get(name)
        if pid is None or not alive(pid):
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, os.WNOHANG)  # ours when started by Popen
        except ChildProcessError:
            pass
