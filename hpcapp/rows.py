"""Per-row outputs ("map" kernels): rows flow to rank 0, which writes them in input order.

A kernel may return, besides its reduced keys, arrays with one row per input row (declared with
``hpcapp.kernel(per_row=(...))``). Rank 0 cannot hold 100 GB of them, so it writes each chunk's
rows at their offset in ``/result/<name>`` of a working HDF5 file as they arrive. Other ranks
send them as raw buffers with at most ``IN_FLIGHT`` unacknowledged synchronous sends each, so
memory stays bounded on every rank whatever the output size. Rank 0 receives between its own
chunks and, at the end, until every rank has said it is done: nobody waits on a rank that is
not listening.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from hpcapp.reduce import Partial, pack, unpack

_TAG_META = 7401
_TAG_DATA = 7402
IN_FLIGHT = 2
_DONE = -1


class RowWriter:
    """Rank 0: writes per-row arrays into the working file, creating datasets on first use."""

    def __init__(self, path: str, n_rows: int, chunk_rows: int, compression: str | None) -> None:
        import h5py

        self._file = h5py.File(path, "a")
        self._group = self._file.require_group("result")
        self._n_rows = n_rows
        self._chunk_rows = chunk_rows
        self._compression = compression

    def write(self, start: int, arrays: Partial) -> None:
        """Write the rows of one chunk, which begins at input row ``start``."""
        for key, value in arrays.items():
            dataset = self._group.get(key)
            if dataset is None:
                dataset = self._group.create_dataset(
                    key,
                    shape=(self._n_rows, *value.shape[1:]),
                    dtype=value.dtype,
                    chunks=(min(self._chunk_rows, self._n_rows), *value.shape[1:]),
                    compression=self._compression,
                )
            dataset[start : start + len(value)] = value

    def close(self) -> None:
        """Flush and close the working file (rank 0 reopens it to add the results)."""
        self._file.close()


class RowSink:
    """Where a rank puts each chunk's per-row arrays: straight to disk on rank 0, else sent."""

    def __init__(self, comm: Any, writer: RowWriter | None, chunk_rows: int) -> None:
        self._comm = comm
        self._writer = writer
        self._chunk_rows = chunk_rows
        self._pending: deque[tuple[Any, np.ndarray]] = deque()
        self._done = 0  # rank 0: DONE markers received so far

    def put(self, chunk_index: int, arrays: Partial) -> None:
        """Hand over one chunk's rows (rank 0 writes them; others send them)."""
        start = chunk_index * self._chunk_rows
        if self._writer is not None:
            self._writer.write(start, arrays)
            self.poll()
            return
        while len(self._pending) >= IN_FLIGHT:
            request, _ = self._pending.popleft()
            request.Wait()
        meta, payload = pack({(0, chunk_index): arrays})
        self._comm.send((start, meta, payload.size), dest=0, tag=_TAG_META)
        # Synchronous: completes only once rank 0 receives, which bounds what is in flight.
        request = self._comm.Issend(payload, dest=0, tag=_TAG_DATA)
        self._pending.append((request, payload))

    def poll(self) -> None:
        """Rank 0: write every message already waiting, without blocking."""
        from mpi4py import MPI

        status = MPI.Status()
        while self._comm.Iprobe(source=MPI.ANY_SOURCE, tag=_TAG_META, status=status):
            self._done += self._receive(status.Get_source())

    def _receive(self, source: int) -> int:
        start, meta, n_bytes = self._comm.recv(source=source, tag=_TAG_META)
        if start == _DONE:
            return 1
        payload = np.empty(n_bytes, np.uint8)
        self._comm.Recv(payload, source=source, tag=_TAG_DATA)
        for arrays in unpack(meta, payload).values():
            assert self._writer is not None
            self._writer.write(start, arrays)
        return 0

    def finish(self) -> None:
        """After the chunk loop: senders flush and say DONE; rank 0 drains until all did."""
        if self._writer is None:
            for request, _ in self._pending:
                request.Wait()
            self._pending.clear()
            self._comm.send((_DONE, [], 0), dest=0, tag=_TAG_META)
            return
        from mpi4py import MPI

        status = MPI.Status()
        while self._done < self._comm.Get_size() - 1:
            self._comm.Probe(source=MPI.ANY_SOURCE, tag=_TAG_META, status=status)
            self._done += self._receive(status.Get_source())
        self._writer.close()
