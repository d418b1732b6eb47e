"""Sources of stored rows (one file, many files, ...): opened, read into a buffer, decoded.

A stored source adds to the :class:`~hpcapp.io.sources.base.Source` interface ``open()``, an
open :class:`~hpcapp.io.sources.base.Rows` on one rank, and its CF coder (``decoding``, made by
:func:`hpcapp.io.coding.variables.decoding_of` when the source is described). Every way rows
reach a kernel goes through the same two steps: read as stored, then decode, so ``run`` (each
rank its own chunks, or scattered by rank 0) and ``check`` (:meth:`StoredSource.read_rows`) see
the same values.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcapp.io import reader
from hpcapp.io.coding.variables import CFDecoding, Decoder
from hpcapp.io.selection import Window
from hpcapp.io.sources.base import Chunk, Coder, Rows, ShouldStop, Source
from hpcapp.kernels.packed import LinearUnpack, Packed

if TYPE_CHECKING:
    from mpi4py import MPI


@dataclasses.dataclass(frozen=True)
class StoredSource(Source):
    """Rows stored somewhere every rank can read, with how to decode them (CF)."""

    # The input variable holding each dimension's coordinate values (or None), once described.
    coords: tuple[str | None, ...] = ()
    decoding: CFDecoding | None = None  # None: the kernel sees the values as stored
    # --sel/--isel: the box of the stored dataset these rows are (n_rows, row_shape: its shape).
    window: Window | None = None

    @property
    def stored_shape(self) -> tuple[int, ...]:
        """Return the shape of the dataset as stored (before any selection)."""
        return self.window.stored_shape if self.window else (self.n_rows, *self.row_shape)

    @property
    def values_dtype(self) -> str:
        """Return the dtype of the values the kernel sees (after decoding)."""
        return self.decoding.dtype if self.decoding is not None else self.dtype

    @property
    def linear_unpack(self) -> LinearUnpack | None:
        """Return the coder as a linear unpack, when it is one (see ``CFDecoding``)."""
        return self.decoding.linear_unpack if self.decoding is not None else None

    @abc.abstractmethod
    def open(self) -> AbstractContextManager[Rows]:
        """Open the rows on this rank; a failure to open is raised by each read, not here."""

    def decoder(self, chunk_rows: int, packed: bool = False) -> Coder:
        """Return the coder of chunks of up to ``chunk_rows`` rows (identity if none is needed).

        It takes a chunk and the runs of records it holds (files of a many-file input may each
        be packed their own way). Decoded values go to a buffer of its own, reused: memory is
        one stored chunk plus one decoded chunk. Anything but an array (a read error, None)
        passes through. ``packed`` (the kernel decodes :class:`~hpcapp.kernels.packed.Packed`
        chunks itself): a coder that is a linear unpack hands over the stored chunk with it,
        and no decoded copy is made.
        """
        decoding = self.decoding
        if decoding is None or not decoding.changes_values:
            return lambda item, runs: item
        unpack = self.linear_unpack if packed else None
        if unpack is not None:
            meant = np.dtype(decoding.stored_dtype)  # after _Unsigned: the bits read as meant
            return lambda item, runs: (
                Packed(item.view(meant), unpack) if isinstance(item, np.ndarray) else item
            )
        decode = Decoder(decoding, min(chunk_rows, self.n_rows), self.row_shape)
        return lambda item, runs: decode(item) if isinstance(item, np.ndarray) else item

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Return rows ``[start, stop)`` decoded, as a kernel sees them (one rank, no MPI)."""
        stored = np.empty((stop - start, *self.row_shape), dtype=np.dtype(self.dtype))
        with self.open() as rows:
            rows.read(start, stop, stored)
        return np.array(self.decoder(stop - start)(stored, [(start, stop)]), copy=True)

    def _identity(self) -> dict[str, Any]:
        cf = dataclasses.asdict(self.decoding) if self.decoding is not None else None
        found: dict[str, Any] = {"cf": cf}
        if self.window is not None:
            found["selection"] = self.window.identity()
        return found

    def provenance(self) -> dict[str, Any]:
        """Return the output file's attributes that describe the input."""
        return {
            "input": self.spec,
            "input_shape": [self.n_rows, *self.row_shape],
            "input_dtype": self.dtype,
            **({"cf_decoding": self.decoding.policy} if self.decoding is not None else {}),
            **(self._selection_provenance() if self.window is not None else {}),
        }

    def _selection_provenance(self) -> dict[str, Any]:
        assert self.window is not None
        return {
            "input_selection": self.window.text,
            "input_selection_start": list(self.window.input_start),
            "input_stored_shape": list(self.window.input_shape),
        }

    def selection_summary(self) -> str:
        """Return what the run's report says of a selection ("" without one)."""
        window = self.window
        if window is None:
            return ""
        boxes = [
            f"{name} {a}-{a + n - 1} of {m}"
            for name, a, n, m in zip(
                self.dims, window.input_start, window.shape, window.input_shape, strict=True
            )
            if n != m
        ]
        return f" ({window.text}: {', '.join(boxes) or 'everything'})"

    def chunks(
        self,
        chunk_indices: Iterable[int],
        chunk_rows: int,
        should_stop: ShouldStop,
        grouping: Any = None,
        packed: bool = False,
    ) -> Iterator[Chunk]:
        """Read each chunk straight from storage into one reused buffer, then decode it."""
        return reader.read_chunks(self, chunk_indices, chunk_rows, should_stop, grouping, packed)

    def scattered(
        self,
        comm: MPI.Comm,
        shares: list[Any],
        chunk_rows: int,
        should_stop: ShouldStop,
        *,
        tag: int,
        packed: bool = False,
    ) -> Iterator[Chunk]:
        """Rank 0 reads every chunk and sends it as stored; each rank decodes its own."""
        return reader.scatter_chunks(
            comm, self, shares, chunk_rows, should_stop, tag=tag, packed=packed
        )
