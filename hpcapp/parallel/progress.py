"""Live progress on rank 0: a bar on a terminal, a plain line every so often in a log.

Each rank sends rank 0 its running totals (chunks, rows) in a tiny non-blocking message, at most
every ``interval`` seconds, on a private communicator. A thread on rank 0 collects them and
draws; the ranks never wait for it, so it costs far less than 1% of the run. When a rank's
chunks are done it sends a final message, and rank 0's thread ends once all have.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from typing import TYPE_CHECKING, TextIO

import numpy as np

from hpcapp.parallel.tags import Tag

if TYPE_CHECKING:
    from mpi4py import MPI


def format_seconds(seconds: float) -> str:
    """Return ``1h02m``, ``3m05s`` or ``42s``."""
    seconds = int(max(0, seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def render(
    chunks: int, total_chunks: int, rows: int, row_bytes: int, elapsed: float, width: int = 30
) -> str:
    """Return one progress text: percent, bar, chunks, rows/s, GB/s and ETA."""
    fraction = chunks / total_chunks if total_chunks else 1.0
    rate = rows / elapsed if elapsed > 0 else 0.0
    eta = elapsed * (1 - fraction) / fraction if fraction > 0 else float("nan")
    filled = int(width * fraction)
    bar = "#" * filled + "." * (width - filled)
    eta_text = format_seconds(eta) if np.isfinite(eta) else "?"
    return (
        f"[{bar}] {100 * fraction:5.1f}% {chunks}/{total_chunks} chunks, "
        f"{rate / 1e6:.3g} Mrows/s, {rate * row_bytes / 1e9:.3g} GB/s, ETA {eta_text}"
    )


# MPI launchers that hand a rank's output on through a pipe (names as /proc/PID/comm shows them).
LAUNCHERS = ("hydra_pmi_proxy", "mpiexec", "mpiexec.hydra", "mpirun", "orted", "prted", "prterun")
# Plain lines (a log): at most one every this many seconds, whatever the deciles say.
LINE_GAP = 5.0


def looks_like_terminal(stream: TextIO) -> bool:
    """Guess whether the user watches ``stream`` on a terminal (then draw a bar).

    ``mpiexec`` hands ranks a pipe even when it runs on a terminal: a pipe counts as a terminal
    when the MPI launcher at its other end writes to one (Linux's /proc shows it), never in a
    SLURM job or in CI. Anything else (a file, a pipe to ``tee`` or to a test) gets plain lines.
    ``HPCAPP_PROGRESS=bar`` or ``lines`` overrides the guess.
    """
    import os
    import stat

    choice = os.environ.get("HPCAPP_PROGRESS", "")
    if choice in ("bar", "lines"):
        return choice == "bar"
    if stream.isatty():
        return True
    try:
        is_pipe = stat.S_ISFIFO(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError):
        return False
    batch = any(name in os.environ for name in ("SLURM_JOB_ID", "CI", "PBS_JOBID"))
    return is_pipe and not batch and launcher_on_terminal(os.getppid())


def launcher_on_terminal(pid: int, depth: int = 4) -> bool:
    """Return whether ``pid`` and its parents are MPI launchers, the last writing to a terminal.

    Follows stderr up the launcher chain (rank -> hydra_pmi_proxy -> mpiexec) while it is a
    pipe; False as soon as a process is not a launcher, or its stderr a file.
    """
    import os

    for _ in range(depth):
        try:
            with open(f"/proc/{pid}/comm") as comm:
                name = comm.read().strip()
            target = os.readlink(f"/proc/{pid}/fd/2")
            with open(f"/proc/{pid}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if name not in LAUNCHERS:
            return False
        if target.startswith(("/dev/pts/", "/dev/tty")):
            return True
        if not target.startswith("pipe:"):
            return False
        pid = parent
    return False


@dataclasses.dataclass
class LinePolicy:
    """When a log gets a plain progress line: at each tenth and every ``every`` seconds.

    Never within ``gap`` seconds of the last line (nor of the start): a short job prints none,
    and the end of a job gets a line only if an earlier one was printed.
    """

    total_chunks: int
    every: float
    started: float
    gap: float = LINE_GAP
    last_line: float | None = None
    next_decile: int = 1

    def due(self, chunks: int, now: float, finished: bool) -> bool:
        """Return whether to print a line now; if so, remember it."""
        if not self.total_chunks:
            return False
        last = self.started if self.last_line is None else self.last_line
        if now - last < self.gap:
            return False
        decile = 10 * chunks // self.total_chunks
        periodic = self.every > 0 and now - last >= self.every
        if decile >= self.next_decile or periodic or (finished and self.last_line is not None):
            self.next_decile, self.last_line = decile + 1, now
            return True
        return False


class Progress:
    """Per-rank reporter; on rank 0 also the collector and display thread."""

    def __init__(
        self,
        comm: MPI.Comm,
        total_chunks: int,
        row_bytes: int,
        every_seconds: float,
        stream: TextIO | None = None,
        terminal: bool | None = None,
    ) -> None:
        self._comm = comm.Dup()
        self._rank, self._size = self._comm.Get_rank(), self._comm.Get_size()
        # Bound rank 0's incoming message rate whatever the number of ranks.
        self._interval = max(0.25, self._size / 2000)
        self._totals = np.zeros(3, np.int64)  # chunks, rows, done flag
        self._request: MPI.Request | None = None
        self._last_send = 0.0
        self._thread: threading.Thread | None = None
        if self._rank == 0:
            self._stream = stream or sys.stderr
            self._terminal = looks_like_terminal(self._stream) if terminal is None else terminal
            self._every = every_seconds
            self._total_chunks = total_chunks
            self._row_bytes = row_bytes
            self._latest = np.zeros((self._size, 3), np.int64)
            self._started = time.perf_counter()
            self._wake = threading.Event()
            self._thread = threading.Thread(target=self._collect, daemon=True)
            self._thread.start()

    def update(self, chunks: int, rows: int) -> None:
        """Record this rank's running totals; send them if enough time has passed."""
        self._totals[:2] = chunks, rows
        if self._rank == 0:
            self._latest[0, :2] = chunks, rows
            return
        now = time.perf_counter()
        if now - self._last_send >= self._interval:
            self._send()
            self._last_send = now

    def _send(self) -> MPI.Request:
        if self._request is not None:
            self._request.Wait()
        message = self._totals.copy()
        self._request = self._comm.Isend(message, dest=0, tag=Tag.PROGRESS)
        self._message = message  # keep the buffer alive until the send completes
        return self._request

    def close(self) -> None:
        """This rank's chunks are done: send the final totals; rank 0 waits for its thread."""
        self._totals[2] = 1
        if self._rank != 0:
            self._send().Wait()
        else:
            self._latest[0] = self._totals
            self._wake.set()
            assert self._thread is not None
            self._thread.join()
            if self._terminal:
                self._stream.write("\n")
                self._stream.flush()
        self._comm.Free()

    def _collect(self) -> None:
        from mpi4py import MPI

        status = MPI.Status()
        buffer = np.zeros(3, np.int64)
        last_draw = 0.0
        last_chunks = -1
        lines = LinePolicy(self._total_chunks, self._every, self._started)
        while True:
            while self._comm.Iprobe(source=MPI.ANY_SOURCE, tag=Tag.PROGRESS, status=status):
                self._comm.Recv(buffer, source=status.Get_source(), tag=Tag.PROGRESS)
                self._latest[status.Get_source()] = buffer
            chunks, rows = (int(v) for v in self._latest[:, :2].sum(axis=0))
            finished = bool(self._latest[:, 2].all())
            now = time.perf_counter()
            elapsed = now - self._started
            text = render(chunks, self._total_chunks, rows, self._row_bytes, elapsed)
            if self._terminal and (now - last_draw >= 0.25 or finished):
                if chunks != last_chunks or finished:  # redraw only when there is news
                    self._stream.write(f"\r{text}")
                    self._stream.flush()
                    last_chunks = chunks
                last_draw = now
            elif not self._terminal and lines.due(chunks, now, finished):
                self._stream.write(f"hpcapp: progress {text}\n")
                self._stream.flush()
            if finished:
                return
            if self._wake.is_set():
                # close() was called: rank 0 is done. Poll for the others' last messages, but
                # without spinning on a core another rank may still need.
                time.sleep(0.005)
            else:
                self._wake.wait(0.25)  # a few redraws a second at most
