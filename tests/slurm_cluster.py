"""A throw-away one-node SLURM cluster on localhost for tests: munged, slurmctld and slurmd from
Debian's `munge` and `slurm-wlm`, with every file (config, key, socket, state, logs) in one
temporary folder and free ports, so nothing of the machine's own Slurm or munge is touched.

The cluster has no accounting (``AccountingStorageType=accounting_storage/none``), the plainest
cluster the SLURM profile (workflow/profiles/slurm) must run on. Each daemon is a child process
started in the foreground, and :meth:`Cluster.stop` ends exactly those processes, by pid.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo", "srun")
SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


class ClusterUnavailable(RuntimeError):
    """The cluster cannot be installed or started here; the message says why."""


def _which(name: str) -> str | None:
    return shutil.which(name, path=SBIN)


def _tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"({path.name}: no output)"
    return f"--- {path.name}:\n" + "\n".join(lines[-n:])


def ensure_installed(timeout: float = 900) -> None:
    """Install slurm-wlm and munge with apt-get when a daemon or client is missing (needs
    root; no prompts); raise :class:`ClusterUnavailable` when that is impossible."""
    missing = [t for t in DAEMONS + CLIENTS if _which(t) is None]
    if not missing:
        return
    what = f"{', '.join(missing)} not installed"
    if os.geteuid() != 0:
        raise ClusterUnavailable(f"{what}, and installing {' '.join(PACKAGES)} needs root")
    apt = _which("apt-get")
    if apt is None:
        raise ClusterUnavailable(f"{what}, and there is no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    install = [apt, *lock, "install", "-y", "-q", "--no-install-recommends", *PACKAGES]

    def run(cmd: list[str]) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(
                cmd,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as e:
            raise ClusterUnavailable(f"{' '.join(cmd)} took over {timeout:.0f} s") from e

    r = run(install)
    if r.returncode != 0:  # a fresh machine may have no package lists yet
        run([apt, *lock, "update", "-q"])
        r = run(install)
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-5:])
        raise ClusterUnavailable(f"{what}; `apt-get install {' '.join(PACKAGES)}` failed:\n{tail}")
    still = [t for t in DAEMONS + CLIENTS if _which(t) is None]
    if still:
        raise ClusterUnavailable(f"{', '.join(still)} still missing after apt-get install")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _node_hardware(slurmd: str) -> dict[str, str]:
    """This machine as `slurmd -C` reports it (CPUs, sockets, cores, threads, RealMemory)."""
    out = subprocess.run(
        [slurmd, "-C"], capture_output=True, text=True, timeout=60, env=_no_conf_env()
    ).stdout
    fields = dict(f.split("=", 1) for f in out.split("\n", 1)[0].split() if "=" in f)
    if "CPUs" not in fields or "RealMemory" not in fields:
        raise ClusterUnavailable(f"`slurmd -C` did not describe this node: {out.strip()!r}")
    fields.pop("NodeName", None)
    return fields


def _no_conf_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}


class Cluster:
    """One node (this host, at 127.0.0.1) in one partition, ``main``, the default."""

    def __init__(self) -> None:
        # munged insists that every folder above its socket be executable by all, which
        # pytest's own temporary folders (mode 0700) are not
        self.root = Path(tempfile.mkdtemp(prefix="conceptspace-slurm-"))
        self.root.chmod(0o711)
        self.conf = self.root / "slurm.conf"
        self.logs = self.root / "log"
        self.node = socket.gethostname().split(".")[0]
        self.hardware: dict[str, str] = {}
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.env: dict[str, str] = {}

    # ---- setup ---------------------------------------------------------------------------
    def _write_files(self) -> None:
        munge_dir, bin_dir = self.root / "munge", self.root / "bin"
        for d in (munge_dir, bin_dir, self.root / "state", self.root / "spool", self.logs):
            d.mkdir()
        munge_dir.chmod(0o711)
        key = munge_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self.munge_socket = munge_dir / "munge.sock"
        self.hardware = _node_hardware(_which("slurmd"))
        node = " ".join(f"{k}={v}" for k, v in self.hardware.items())
        r = self.root
        self.conf.write_text(
            f"""# written by tests/slurm_cluster.py: a one-node cluster without accounting
ClusterName=conceptspace
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={self.logs}/slurmctld.log
SlurmdLogFile={self.logs}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# how long squeue still shows a finished job (the profile's status command)
MinJobAge=300
KillWait=5
NodeName={self.node} NodeAddr=127.0.0.1 {node} State=UNKNOWN
PartitionName=main Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""
        )
        # The slurm-jobstep executor removes every SLURM_* variable, SLURM_CONF included,
        # before it calls srun inside a job, so srun looks for /etc/slurm/slurm.conf, where a
        # real cluster keeps it. This cluster's config is in a temporary folder, so an srun
        # earlier on PATH puts SLURM_CONF back.
        srun = bin_dir / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF={self.conf} exec {_which("srun")} "$@"\n')
        srun.chmod(0o755)
        self.env = {
            **os.environ,
            "SLURM_CONF": str(self.conf),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def _spawn(self, name: str, *args: str) -> None:
        out = open(self.logs / f"{name}.out", "wb")
        try:
            proc = subprocess.Popen(
                [_which(name), *args],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of the test run does not reach it first
            )
        finally:
            out.close()
        self.procs.append((name, proc))

    def _wait(self, what: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [n for n, p in self.procs if p.poll() is not None]
            if dead:
                raise ClusterUnavailable(f"{', '.join(dead)} exited while {what}\n{self.report()}")
            if ready():
                return
            time.sleep(0.25)
        raise ClusterUnavailable(f"timed out after {timeout:.0f} s {what}\n{self.report()}")

    def sh(self, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster."""
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)

    def _controller_up(self) -> bool:
        return self.sh("scontrol", "ping").returncode == 0

    def jobs(self, states: str) -> list[str]:
        """Ids of this cluster's jobs in the given states (e.g. ``PENDING,RUNNING``)."""
        r = self.sh("squeue", "--noheader", "--format=%i", f"--states={states}")
        return r.stdout.split() if r.returncode == 0 else []

    def _node_idle(self) -> bool:
        r = self.sh("sinfo", "--noheader", "--Node", "--format=%T")
        return r.returncode == 0 and r.stdout.strip().rstrip("*") == "idle"

    def start(self, timeout: float = 60) -> None:
        """Start munged, slurmctld and slurmd; return once the node takes jobs."""
        if os.geteuid() != 0:
            raise ClusterUnavailable("slurmd must run as root (it starts jobs as their users)")
        self._write_files()
        s = str(self.munge_socket)
        d = self.root / "munge"
        self._spawn(
            "munged",
            "--foreground",
            f"--key-file={d / 'munge.key'}",
            f"--socket={s}",
            f"--pid-file={d / 'munged.pid'}",
            f"--seed-file={d / 'munged.seed'}",
            f"--log-file={self.logs / 'munged.log'}",
        )
        self._wait("starting munged", self.munge_socket.exists, timeout)
        self._spawn("slurmctld", "-D", "-i")
        self._wait("starting slurmctld", self._controller_up, timeout)
        self._spawn("slurmd", "-D", "-N", self.node)
        self._wait(f"waiting for node {self.node} to become idle", self._node_idle, timeout)

    # ---- teardown ------------------------------------------------------------------------
    def stop(self) -> None:
        """Cancel this cluster's jobs, end its daemons (newest first, by pid), remove its files."""
        if any(p.poll() is None for n, p in self.procs if n == "slurmctld"):
            ids = self.jobs("PENDING,RUNNING")
            if ids:
                self.sh("scancel", *ids)
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and self.jobs("RUNNING,COMPLETING"):
                    time.sleep(0.5)
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=15)
        self.procs.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def report(self) -> str:
        """The last lines of every daemon's output and log (for skip and failure messages)."""
        files = sorted(self.logs.glob("*")) if self.logs.exists() else []
        return "\n".join(_tail(f) for f in files)

    @property
    def real_memory_mb(self) -> int:
        return int(self.hardware.get("RealMemory", 0))
