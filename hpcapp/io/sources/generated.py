"""Rows a generating kernel makes itself: each chunk gets a generator, seeded by its index."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcapp.errors import UsageError
from hpcapp.io.sources.base import Chunk, ShouldStop, Source

if TYPE_CHECKING:
    from mpi4py import MPI

GENERATED_CHUNK_ROWS = 1 << 20


@dataclasses.dataclass(frozen=True)
class GeneratedSource(Source):
    """``n_rows`` samples of a generating kernel, drawn from ``seed`` (no input file)."""

    row_shape: tuple[int, ...] = ()
    dtype: str = "<f8"
    seed: int = 0

    @property
    def spec(self) -> str:
        """Return ``none``: there is no input."""
        return "none"

    def default_chunk_rows(self) -> int:
        """Return a million samples: generating is cheap to cut, and nothing is read."""
        return GENERATED_CHUNK_ROWS

    def _identity(self) -> dict[str, Any]:
        return {"cf": None}  # nothing is decoded (the seed is a parameter: in the identity)

    def provenance(self) -> dict[str, Any]:
        """Return the output file's attributes that describe the (absent) input."""
        return {"input": self.spec, "input_shape": [], "input_dtype": "none"}

    def summary(self) -> str:
        """Return nothing: there is no input to describe."""
        return ""

    def chunks(
        self,
        chunk_indices: Iterable[int],
        chunk_rows: int,
        should_stop: ShouldStop,
        grouping: Any = None,
        packed: bool = False,
    ) -> Iterator[Chunk]:
        """Give each chunk a generator seeded from (seed, chunk index): independent of ranks."""
        for chunk_index in chunk_indices:
            if should_stop():
                return
            sequence = np.random.SeedSequence(self.seed, spawn_key=(chunk_index,))
            yield chunk_index, np.random.default_rng(sequence)

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
        """Generate this rank's share here: nothing is read, so nothing needs sending."""
        return self.chunks(shares[comm.Get_rank()], chunk_rows, should_stop)


def generated(n_rows: int, seed: int = 0) -> GeneratedSource:
    """Describe the rows of a generating kernel (no input file)."""
    if n_rows < 1:
        raise UsageError(f"a generating kernel needs at least 1 row (sample), got {n_rows}")
    return GeneratedSource(n_rows=n_rows, seed=seed)
