"""Catch the signals that mean "stop soon": SIGTERM, SIGUSR1 (SLURM, before a time limit), SIGINT.

The handler only records the signal; the engine checks it between chunks, tells the other
ranks, and saves a checkpoint. A second SIGINT (Ctrl-C twice) raises KeyboardInterrupt, which
aborts the job at once.
"""

from __future__ import annotations

import signal
from types import FrameType, TracebackType

SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)

_early: list[str] = []  # signals that arrived before a job's Interrupts took over


def _record_early(signum: int, frame: FrameType | None) -> None:
    _early.append(signal.Signals(signum).name)


def install_early() -> None:
    """Record stop signals from the very start of the process (start-up and MPI_Init included).

    SLURM may send its warning signal within a second of starting a short job, before the
    job's own handlers exist; without this the default action would kill the rank.
    """
    for signum in SIGNALS:
        signal.signal(signum, _record_early)


class Interrupts:
    """Context manager that turns SIGTERM/SIGUSR1/SIGINT into a flag while it is active."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.received == "SIGINT":
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def requested(self) -> bool:
        """Return True once a stop signal has arrived."""
        return self.received is not None

    def __enter__(self) -> Interrupts:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return self  # only the main thread may handle signals (hpcapp.run from a thread)
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        if _early:
            self.received = _early[0]
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


class NoInterrupts:
    """Stand-in when signals are not ours to handle (the engine used as a library)."""

    received: str | None = None

    def requested(self) -> bool:
        """Never."""
        return False
