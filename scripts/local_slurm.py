#!/usr/bin/env python3
"""Start and stop a private one-node SLURM cluster on this machine, for tests and CI.

Usage::

    eval "$(python scripts/local_slurm.py start [--state-dir DIR])"   # prints export lines
    python scripts/local_slurm.py env [--state-dir DIR]
    python scripts/local_slurm.py stop [--state-dir DIR]

Everything (slurm.conf, a munge key and socket, daemon state, logs, pid files) lives in the
state dir, default ``<tempdir>/hpcapp-slurm``; both SLURM daemons bind to 127.0.0.1 only, on
ports 16817/16818 so a system SLURM is left alone.  ``stop`` signals only the daemons whose
pids ``start`` recorded.  Needs root (SlurmUser=root) and Debian's ``slurm-wlm`` and ``munge``,
which ``start`` installs with apt-get when they are missing.

From pytest, load this file with ``importlib.util.spec_from_file_location`` and call
``os.environ.update(start())`` in a session fixture, then ``stop()`` at teardown.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

DEFAULT_STATE_DIR = Path(tempfile.gettempdir()) / "hpcapp-slurm"
CTLD_PORT, SLURMD_PORT = 16817, 16818
# A requeued job may start again only after cred_expire seconds (SLURM's default: 120);
# 10 s keeps requeue tests short and is still ample for launching a step on this machine.
CRED_EXPIRE = 10
START_TIMEOUT = 60.0
DAEMONS = ("munged", "slurmctld", "slurmd")  # in start order; stopped in reverse
CLIENTS = ("sbatch", "srun", "salloc", "sinfo", "squeue", "scontrol", "scancel")
PIDS_FILE = "pids.json"
# sinfo states of a node that answers and can run jobs (a busy node is still healthy).
UP_STATES = ("idle", "mix", "alloc", "comp")

StateDir = str | os.PathLike[str] | None


class LocalSlurmError(RuntimeError):
    """The local cluster could not be installed, started or stopped."""


def _dir(state_dir: StateDir) -> Path:
    """Return the absolute state dir (default: a fixed folder under the temp dir)."""
    return Path(state_dir or DEFAULT_STATE_DIR).resolve()


def _which(name: str) -> str | None:
    """Find a program on PATH or in /usr/sbin (the daemons), which a user PATH may lack."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))


def env(state_dir: StateDir = None) -> dict[str, str]:
    """Return the environment variables SLURM client commands need to reach this cluster."""
    return {"SLURM_CONF": str(_dir(state_dir) / "slurm.conf")}


def _client(args: list[str], d: Path, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    """Run a SLURM client command against this cluster; a hang counts as a failure."""
    try:
        return subprocess.run(
            args,
            env={**os.environ, **env(d)},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, 124, "", f"{args[0]} timed out")
    except OSError as exc:  # e.g. not installed yet
        return subprocess.CompletedProcess(args, 127, "", str(exc))


def _tail(path: Path, lines: int = 15) -> str:
    """Return the last lines of a file, or a note that it is missing."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(missing)"


def _logs(d: Path) -> str:
    """Return the tails of all daemon logs, to explain a failed start."""
    files = [*sorted((d / "log").glob("*")), d / "munge" / "munged.log"]
    return "\n".join(f"--- {f}\n{_tail(f)}" for f in files if f.is_file() and f.stat().st_size)


def ensure_installed() -> None:
    """Install slurm-wlm and munge with apt-get unless all their programs are present."""
    missing = [p for p in (*DAEMONS, *CLIENTS) if _which(p) is None]
    if not missing:
        return
    names = " ".join(missing)
    if shutil.which("apt-get") is None:
        raise LocalSlurmError(f"missing {names} and no apt-get to install them")
    print(f"local_slurm: installing slurm-wlm and munge (missing: {names})", file=sys.stderr)
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "slurm-wlm", "munge"]):
        proc = subprocess.run(cmd, env=apt_env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            out = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
            raise LocalSlurmError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{out}")
    if missing := [p for p in (*DAEMONS, *CLIENTS) if _which(p) is None]:
        raise LocalSlurmError(f"still missing after apt-get install: {' '.join(missing)}")


def _host() -> str:
    """Return the short host name, which slurmd also uses as its node name."""
    return socket.gethostname().split(".")[0]


def _write_config(d: Path) -> Path:
    """Write slurm.conf for one node on 127.0.0.1, every path inside the state dir."""
    host, cpus = _host(), os.cpu_count() or 1
    # Half the RAM: slurmd drains a node whose RealMemory exceeds what it finds.
    mem_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 // 2
    conf = d / "slurm.conf"
    conf.write_text(f"""\
# Written by scripts/local_slurm.py: a private one-node cluster for tests.
ClusterName=hpcapp-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={CTLD_PORT}
SlurmdPort={SLURMD_PORT}
# Bind daemons (and srun) to 127.0.0.1 instead of every address of the machine.
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge/munge.socket,cred_expire={CRED_EXPIRE}
SlurmUser=root
SlurmdUser=root
# linuxproc + task/none: no cgroups needed, so no cgroup.conf and it works in containers.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Rescan pending jobs every second (defaults 30/60 s), so a requeued job restarts promptly.
SchedulerParameters=sched_interval=1,bf_interval=1
# MPI jobs ask for PMI explicitly: srun --mpi=pmi2 (the MPICH wheel speaks PMI-2).
MpiDefault=none
ReturnToService=2
JobRequeue=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
StateSaveLocation={d}/ctld
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mib} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
    return conf


def _alive(pid: int | None, d: Path) -> bool:
    """Tell whether pid is a live daemon of this state dir (not a recycled pid or a zombie)."""
    if not pid:
        return False
    try:  # a zombie's cmdline is empty; a stranger's does not name a file in our state dir
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return f"{d}{os.sep}" in cmdline


def _read_pids(d: Path) -> dict[str, int]:
    """Return the recorded daemon pids, or {} when there is no readable record."""
    try:
        return {k: int(v) for k, v in json.loads((d / PIDS_FILE).read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _spawn(name: str, args: list[str], pid_file: Path, d: Path, pids: dict[str, int]) -> None:
    """Start a self-daemonizing program, then record the daemon's pid from its pid file."""
    pid_file.unlink(missing_ok=True)
    with open(d / "log" / f"{name}.out", "ab") as out:  # a file, not a pipe a daemon keeps
        rc = subprocess.run(
            [_which(name) or name, *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            check=False,
            timeout=30,
        ).returncode
    deadline = time.monotonic() + 10
    while rc == 0 and time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text())
            if _alive(pid, d):
                pids[name] = pid
                (d / PIDS_FILE).write_text(json.dumps(pids))
                return
        time.sleep(0.1)
    raise LocalSlurmError(f"{name} did not start (launcher exit code {rc})\n{_logs(d)}")


def _node_state(d: Path) -> str:
    """Return the node's sinfo state (e.g. idle, down*), or '' if slurmctld does not answer."""
    proc = _client(["sinfo", "-h", "-N", "-o", "%t"], d)
    return proc.stdout.strip().splitlines()[0] if proc.returncode == 0 and proc.stdout else ""


def _wait_idle(d: Path) -> None:
    """Wait until the node is idle, resuming it if it registered as down or drained."""
    deadline, last_resume, state = time.monotonic() + START_TIMEOUT, 0.0, ""
    while time.monotonic() < deadline:
        state = _node_state(d)
        if state == "idle":
            return
        if dead := [n for n, pid in _read_pids(d).items() if not _alive(pid, d)]:
            raise LocalSlurmError(f"{', '.join(dead)} exited while starting\n{_logs(d)}")
        # ReturnToService=2 revives a node once slurmd registers; a state without '*'
        # (node answers) that is still down/drained needs an explicit resume.
        if state in ("down", "drain", "fail", "inval") and time.monotonic() - last_resume > 3:
            _client(["scontrol", "update", f"nodename={_host()}", "state=resume"], d)
            last_resume = time.monotonic()
        time.sleep(0.5)
    raise LocalSlurmError(
        f"node not idle after {START_TIMEOUT:.0f} s (state {state!r})\n{_logs(d)}"
    )


def _launch(d: Path) -> None:
    """Start munged, slurmctld and slurmd from a clean state and wait for an idle node."""
    if os.geteuid() != 0:
        raise LocalSlurmError("must run as root (the cluster runs with SlurmUser=root)")
    d.chmod(0o755)  # munged refuses key and socket dirs that others can write to
    for sub in ("ctld", "spool", "log"):  # old job state would resurrect old jobs
        shutil.rmtree(d / sub, ignore_errors=True)
        (d / sub).mkdir(mode=0o700)
    munge = d / "munge"
    munge.mkdir(exist_ok=True)
    munge.chmod(0o755)  # munged refuses a socket dir that others cannot traverse
    key = munge / "munge.key"
    if not key.exists():
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(1024))
    conf = _write_config(d)
    pids: dict[str, int] = {}
    try:
        m = munge / "munged"
        opts = [f"--socket={munge}/munge.socket", f"--key-file={key}", f"--pid-file={m}.pid"]
        opts += [f"--log-file={m}.log", f"--seed-file={m}.seed"]
        _spawn("munged", opts, munge / "munged.pid", d, pids)
        _spawn("slurmctld", ["-f", str(conf)], d / "slurmctld.pid", d, pids)
        _spawn("slurmd", ["-f", str(conf), "-N", _host()], d / "slurmd.pid", d, pids)
        _wait_idle(d)
    except BaseException:
        _stop_locked(d)  # leave nothing half-started behind
        raise


def _healthy(d: Path) -> bool:
    """Tell whether a cluster this script started in d is running and its node is up."""
    pids = _read_pids(d)
    return all(_alive(pids.get(n), d) for n in DAEMONS) and _node_state(d) in UP_STATES


def skip_reason(state_dir: StateDir = None) -> str | None:
    """Return why the SLURM tests may be skipped here (not root, not CI), or None to run them.

    The cluster needs root (apt-get, and daemons run as SlurmUser=root). Without root the tests
    are skipped with this reason, unless a cluster is already up, or CI=true: in CI a missing
    SLURM is a failure, never a skip.
    """
    if os.environ.get("CI", "").lower() == "true" or os.geteuid() == 0 or running(state_dir):
        return None
    return (
        "not root: they start a local SLURM, installing slurm-wlm and munge with apt-get and "
        "running its daemons as root (run the tests as root to include them)"
    )


def running(state_dir: StateDir = None) -> bool:
    """Tell whether a cluster started by this script in state_dir is up (so start() reuses it)."""
    return _healthy(_dir(state_dir))


@contextlib.contextmanager
def _lock(d: Path) -> Iterator[None]:
    """Serialize start/stop on one state dir (e.g. between pytest-xdist workers)."""
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "lock", "w") as fh:  # not inherited by the daemons (close_fds)
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def start(state_dir: StateDir = None) -> dict[str, str]:
    """Start the local cluster, or reuse a healthy one, and return the client environment."""
    d = _dir(state_dir)
    with _lock(d):
        if not _healthy(d):
            _stop_locked(d)  # whatever is left of an earlier, half-dead run
            ensure_installed()
            _launch(d)
    return env(d)


def _terminate(pid: int, d: Path) -> None:
    """SIGTERM one of our daemons, and SIGKILL it if it is still alive after 15 s."""
    for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        if not _alive(pid, d):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while _alive(pid, d) and time.monotonic() < deadline:
            time.sleep(0.1)
    if _alive(pid, d):
        raise LocalSlurmError(f"pid {pid} survived SIGKILL")


def _stop_locked(d: Path) -> None:
    """Cancel the cluster's jobs, then stop the recorded daemons; the caller holds the lock."""
    pids = _read_pids(d)
    if _alive(pids.get("slurmctld"), d) and _alive(pids.get("slurmd"), d):
        # Cancel jobs first, so their steps (slurmstepd and the job's processes) end too.
        jobs = _client(["squeue", "-h", "-o", "%A"], d).stdout.split()
        if jobs:
            _client(["scancel", *jobs], d)
            deadline = time.monotonic() + 40  # > KillWait (30 s) between SIGTERM and SIGKILL
            while (
                _client(["squeue", "-h", "-o", "%A"], d).stdout.split()
                and time.monotonic() < deadline
            ):
                time.sleep(0.5)
    for name in reversed(DAEMONS):
        if name in pids:
            _terminate(pids[name], d)
    (d / PIDS_FILE).unlink(missing_ok=True)


def stop(state_dir: StateDir = None) -> None:
    """Stop exactly the daemons that start() recorded for this state dir."""
    d = _dir(state_dir)
    if d.is_dir():
        with _lock(d):
            _stop_locked(d)


def main(argv: list[str] | None = None) -> int:
    """Run the command line: start, stop or env."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("start", "stop", "env"))
    parser.add_argument("--state-dir", help=f"default: {DEFAULT_STATE_DIR}")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    try:
        if args.command == "start":
            variables = start(args.state_dir)
            print(f"local_slurm: up after {time.monotonic() - t0:.1f} s", file=sys.stderr)
        elif args.command == "stop":
            stop(args.state_dir)
            print("local_slurm: stopped", file=sys.stderr)
            return 0
        else:
            variables = env(args.state_dir)
            if not _healthy(_dir(args.state_dir)):
                print("local_slurm: note: the cluster is not running", file=sys.stderr)
    except (LocalSlurmError, OSError, subprocess.SubprocessError) as exc:
        print(f"local_slurm: error: {exc}", file=sys.stderr)
        return 1
    for key, value in variables.items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
