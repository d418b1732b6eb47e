"""The interface every source of rows implements: plan, identity, and chunks for the engine.

A source is inspected once, on rank 0 (refusing bad input with one line), and the object that
inspection returns is what every rank gets: small, frozen and picklable. It says

- the row plan: ``n_rows``, ``row_shape``, the stored ``dtype``, the rows of a storage chunk
  (``storage_chunk_rows``, to align chunks with) and :meth:`Source.default_chunk_rows`;
- what the kernel sees: :attr:`Source.values_dtype` (after CF decoding), the dimension names;
- its identity: :meth:`Source.identity` (what a checkpoint or a finished output must match)
  and :meth:`Source.provenance` (what the output's attributes say it was);
- its chunks: :meth:`Source.chunks` (each rank its own) and :meth:`Source.scattered` (rank 0
  reads, the others receive), each item a chunk's decoded rows or what a generating kernel
  takes instead.

Sources of stored rows (:class:`hpcapp.io.sources.stored.StoredSource`) add ``open()``: an
open :class:`Rows` reads rows ``[a, b)`` into a caller's buffer, as stored, and the source's
CF coder decodes them; ``read_rows`` does both for one range (``hpcapp check``).
"""

from __future__ import annotations

import abc
import dataclasses
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from mpi4py import MPI

    from hpcapp.io.coding.times import TimeEncoding

# (chunk_index, item): the item is the chunk's data, what a generating kernel takes instead (a
# numpy Generator), a ChunkReadError (reported, not raised: rank 0 keeps feeding the others),
# or None (stopped).
Chunk = tuple[int, Any]
ShouldStop = Callable[[], bool]
# The records of a chunk: increasing runs [a, b) of consecutive records, laid one after another
# (one run, unless a climatology is read in group order: hpcapp.io.group_order).
Runs = Sequence[tuple[int, int]]
# A source's CF coder of chunks: takes a chunk's stored rows and the records they are.
Coder = Callable[[Any, Runs], Any]


class Rows(Protocol):
    """A stored source opened on one rank: reads rows of its variable and of those beside it."""

    def read(self, start: int, stop: int, out: np.ndarray) -> None:
        """Read rows ``[start, stop)`` as stored into ``out`` (raises :class:`ReadError`)."""

    def read_rows(self, name: str, dest: np.ndarray, start: int, stop: int) -> None:
        """Read records ``[start, stop)`` of the variable ``name`` beside it into ``dest``."""

    def spans(self, start: int, stop: int) -> Iterator[tuple[int, int, int]]:
        """Yield (part, first row, end row) of the stored parts (files) rows ``[a, b)`` span."""

    def time_encoding(self, part: int, name: str) -> TimeEncoding | None:
        """Return how ``part`` encodes the times in ``name`` if it has its own way, or None."""


class ReadError(Exception):
    """A read failed for a reason the message says in full (no exception type needed)."""


@dataclasses.dataclass(frozen=True)
class Source(abc.ABC):
    """Rows to process: their plan, their identity, and how each rank gets its chunks."""

    n_rows: int
    row_shape: tuple[int, ...]
    dtype: str  # as stored (what a scattered chunk is sent as)
    storage_chunk_rows: int | None = None
    dims: tuple[str, ...] = ()  # one name per dimension, once described (N-D inputs)

    @property
    @abc.abstractmethod
    def spec(self) -> str:
        """Return what the user named (``FILE:DATASET``, ``PATTERN:DATASET``, ``none``)."""

    @property
    def row_bytes(self) -> int:
        """Return the size of one stored row in bytes."""
        return int(np.dtype(self.dtype).itemsize * math.prod(self.row_shape))

    @property
    def values_dtype(self) -> str:
        """Return the dtype of the values the kernel sees (after decoding)."""
        return self.dtype

    @property
    def linear_unpack(self) -> Any:
        """Return how a kernel declared ``packed`` decodes the stored chunks, or None."""
        return None

    @property
    def input_paths(self) -> tuple[str, ...]:
        """Return the files the rows are read from (the output must be none of them)."""
        return ()

    def describe(self, dims_option: str | None, raw: bool, mask_valid_range: bool) -> Source:
        """Return this source with its dimension names and decoding filled in (rank 0)."""
        return self

    @abc.abstractmethod
    def default_chunk_rows(self) -> int:
        """Return the rows of a chunk when ``--chunk-rows`` is not given."""

    def identity(self) -> dict[str, Any]:
        """Return what a checkpoint or a finished output of this input must match (JSON)."""
        found = {"n_rows": self.n_rows, "row_shape": list(self.row_shape), "dtype": self.dtype}
        found.update(dims=list(self.dims), **self._identity())
        return json.loads(json.dumps(found))  # lists, not tuples: as a manifest reads back

    def _identity(self) -> dict[str, Any]:
        """Return the source's own part of :meth:`identity`."""
        return {}

    @abc.abstractmethod
    def provenance(self) -> dict[str, Any]:
        """Return the output file's attributes that describe the input."""

    @abc.abstractmethod
    def summary(self) -> str:
        """Return what the run's report says of the input beyond its spec and rows."""

    @abc.abstractmethod
    def chunks(
        self,
        chunk_indices: Iterable[int],
        chunk_rows: int,
        should_stop: ShouldStop,
        grouping: Any = None,
        packed: bool = False,
    ) -> Iterator[Chunk]:
        """Yield this rank's chunks (``grouping``: with their records' group labels).

        ``packed``: the kernel takes :class:`~hpcapp.kernels.packed.Packed` chunks.
        """

    @abc.abstractmethod
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
        """Yield this rank's chunks (``shares[rank]``), read by rank 0 and sent; collective."""
