"""Run and time the commands of a benchmark: ``mpiexec``, the environment, precompiling, medians."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .launcher import REPO, clean_env, find_mpiexec

GIB = 1 << 30
# Builds stats' compiled loops for every dtype and writes hpcapp's bytecode, so that no timed
# run compiles either (every rank would, on a cold cache or under PYTHONDONTWRITEBYTECODE=1).
PRECOMPILE = ("-m", "hpcapp.kernels.precompile")


class BenchError(RuntimeError):
    """A command of the benchmark failed: the entry prints this and exits 1."""


@dataclasses.dataclass
class Run:
    """One timed subprocess: its wall seconds and what it printed."""

    wall: float
    stdout: str
    stderr: str


def int_list(text: str) -> list[int]:
    """Parse ``1,2`` into ``[1, 2]``."""
    return [int(part) for part in text.split(",") if part]


@contextlib.contextmanager
def scratch(directory: Path | None, prefix: str) -> Iterator[Path]:
    """Yield ``directory`` (created, kept), or a new temporary directory deleted at the end."""
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        yield directory.resolve()
        return
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def say(text: str) -> None:
    """Print a progress line on stderr (stdout is for the tables)."""
    print(text, file=sys.stderr, flush=True)


class Runner:
    """Runs commands in the benchmark's environment and times them from the outside."""

    def __init__(self, timeout: float = 1800, extra_env: Mapping[str, str] | None = None) -> None:
        self.mpiexec = find_mpiexec()
        self.python = sys.executable
        self.env = clean_env(extra_env)
        self.timeout = timeout
        self.compiled = False

    def mpi(self, ranks: int, *args: str) -> list[str]:
        """Return ``mpiexec -n RANKS python ARGS``."""
        return [self.mpiexec, "-n", str(ranks), self.python, *args]

    def hpcapp(self, ranks: int, *args: str) -> list[str]:
        """Return ``mpiexec -n RANKS python -m hpcapp ARGS``."""
        return self.mpi(ranks, "-m", "hpcapp", *args)

    def proc(self, name: str, *args: str) -> list[str]:
        """Return the arguments that run the helper process ``benchlib/procs/NAME.py``."""
        return ["-m", f"scripts.benchlib.procs.{name}", *args]

    def run(
        self, command: Sequence[str], env: Mapping[str, str] | None = None, stdin: str | None = None
    ) -> Run:
        """Run ``command``; return its wall time and output, or raise BenchError if it fails."""
        began = time.perf_counter()
        done = subprocess.run(
            list(command),
            env=dict(env or self.env),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=self.timeout,
        )
        wall = time.perf_counter() - began
        if done.returncode != 0:
            raise BenchError(
                f"failed (exit {done.returncode}): {' '.join(command)}\n"
                f"{done.stdout[-2000:]}{done.stderr[-4000:]}"
            )
        return Run(wall, done.stdout, done.stderr)

    def timed(self, command: Sequence[str], **kwargs: Any) -> float:
        """Run ``command`` and return its wall seconds."""
        return self.run(command, **kwargs).wall

    def precompile(self) -> None:
        """Build stats' compiled loops and hpcapp's bytecode once, before any timed run."""
        if not self.compiled:
            self.run([self.python, *PRECOMPILE])
            self.compiled = True


def bench_lines(stdout: str, tag: str = "BENCH") -> list[Any]:
    """Return the JSON of every ``TAG {json}`` line a helper process printed."""
    prefix = f"{tag} "
    return [
        json.loads(line[len(prefix) :]) for line in stdout.splitlines() if line.startswith(prefix)
    ]


def bench_line(run: Run) -> dict[str, Any]:
    """Return the JSON of the last ``BENCH`` line of ``run``; raise BenchError if none."""
    found = bench_lines(run.stdout)
    if not found:
        raise BenchError(f"no BENCH line in the output:\n{run.stdout[-2000:]}")
    return found[-1]


def spread(values: Sequence[float]) -> dict[str, float]:
    """Return the median, min and max of ``values``."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def timing_table(path: Path) -> dict[str, Any]:
    """Return a job output's ``/timing`` table as column name -> per-rank values."""
    import h5py

    from hpcapp.io.results import read_timing

    with h5py.File(path, "r") as h5:
        table, names = read_timing(h5) or (None, [])
    return {name: table[:, index] for index, name in enumerate(names)}


def rank_seconds(path: Path, phases: Sequence[str]) -> float:
    """Return the slowest rank's seconds in ``phases``, from a job output's timing table."""
    columns = timing_table(path)
    return float(sum(columns[name] for name in phases).max())


def loadavg() -> list[float]:
    """Return the load average over 1, 5 and 15 minutes."""
    return list(os.getloadavg())


def cpu_model() -> str:
    """Return the CPU's model name (Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor()


def source_fingerprint() -> str:
    """Return a short hash of hpcapp's Python sources, to tell versions apart in a dirty tree."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "hpcapp").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def machine(runner: Runner) -> dict[str, Any]:
    """Return what the numbers depend on: CPU, cores, memory, load, versions, git commit."""
    versions = {}
    for name in ("numpy", "h5py", "mpi4py", "mpich", "numba", "dask", "xarray", "matplotlib"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    git = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB,
        "load_average_at_start": loadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "mpiexec": runner.mpiexec,
        "git": git,
        "hpcapp_sources": source_fingerprint(),
    }


def markdown(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Return a markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def versus_table(rows: Sequence[dict[str, Any]], column: str, difference: Any) -> str:
    """Return contenders' seconds, against the fastest hpcapp run, and how each result compares.

    A row with ``bitwise_equal_to_first`` is an hpcapp run (its bits against the first's); any
    other says how far it is in ``difference(row)``.
    """
    best = min(r["seconds"] for r in rows if r["contender"].startswith("hpcapp"))
    cells = []
    for row in rows:
        if "bitwise_equal_to_first" in row:
            note = "bitwise = first" if row["bitwise_equal_to_first"] else "DIFFERS"
        else:
            note = difference(row)
        seconds = row["seconds"]
        cells.append([row["contender"], f"{seconds:.2f}", f"{seconds / best:.2f}x", note])
    return markdown(["contender", "seconds", "vs best hpcapp", column], cells)
