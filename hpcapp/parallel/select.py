"""Exact order statistics of a field spread over the ranks: histogram narrowing by Allreduce.

Each rank keeps its records' valid values as order-preserving 64-bit keys. Four passes of 16
bits each narrow every wanted rank to one key: a pass counts the keys under each prefix still
open in 65,536 bins, the ranks add their counts (``Allreduce``), and each wanted rank moves to
the bin holding it. After the last pass the prefix is the key itself: no values travel at all,
only counts. The series kernel gets the field as
:class:`~hpcapp.kernels.quantile.OrderStatistics` and asks for the ranks it needs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcapp.errors import KernelError, UsageError
from hpcapp.io.sources.base import Source
from hpcapp.kernels.api import Kernel
from hpcapp.kernels.quantile import OrderStatistics
from hpcapp.parallel.collective import gather_table, on_all
from hpcapp.parallel.transpose import SeriesResult, read_block, records_of, size_text
from hpcapp.partition import count_chunks, rank_chunks

if TYPE_CHECKING:
    from mpi4py import MPI

BITS = 16
BINS = 1 << BITS
SIGN = np.uint64(1 << 63)


def order_keys(values: np.ndarray) -> np.ndarray:
    """Return uint64 keys ordered as the float64 ``values`` (no NaN): -0.0 just below 0.0."""
    bits = np.ascontiguousarray(values, np.float64).view(np.uint64)
    return np.where(bits & SIGN, ~bits, bits | SIGN)


def from_keys(keys: np.ndarray) -> np.ndarray:
    """Return the float64 values of :func:`order_keys` keys."""
    keys = np.asarray(keys, np.uint64)
    return np.where(keys & SIGN, keys & ~SIGN, ~keys).view(np.float64)


def select(comm: MPI.Comm, keys: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Return the values at the global 0-based ``ranks`` of every rank's ``keys``; collective."""
    from mpi4py import MPI

    prefix = np.zeros(len(ranks), np.uint64)
    left = np.asarray(ranks, np.int64).copy()  # the rank among the keys under the prefix
    candidates = keys
    for level in range(64 // BITS):
        shift = 64 - BITS * (level + 1)
        open_prefixes = np.unique(prefix)
        counts = np.zeros((len(open_prefixes), BINS), np.int64)
        digits = ((candidates >> np.uint64(shift)) & np.uint64(BINS - 1)).astype(np.intp)
        above = candidates >> np.uint64(shift + BITS) if level else np.zeros_like(candidates)
        for row, value in enumerate(open_prefixes):
            counts[row] = np.bincount(digits[above == value], minlength=BINS)
        comm.Allreduce(MPI.IN_PLACE, counts, op=MPI.SUM)  # communicate
        cumulative = np.cumsum(counts, axis=1)
        for j in range(len(ranks)):
            row = int(np.searchsorted(open_prefixes, prefix[j]))
            digit = int(np.searchsorted(cumulative[row], left[j], side="right"))
            left[j] -= cumulative[row, digit - 1] if digit else 0
            prefix[j] = (prefix[j] << np.uint64(BITS)) | np.uint64(digit)
        candidates = candidates[np.isin(candidates >> np.uint64(shift), prefix)]
    return from_keys(prefix)


def run_whole(
    comm: MPI.Comm,
    kernel: Kernel,
    params: Mapping[str, Any],
    source: Source,
    chunk_rows: int,
    budget: int,
) -> SeriesResult:
    """Run a series kernel over the whole field by distributed selection; collective."""
    rank, size = comm.Get_rank(), comm.Get_size()
    n_chunks = count_chunks(source.n_rows, chunk_rows)
    mine = rank_chunks(n_chunks, size, rank)
    n_cells = math.prod(source.row_shape)
    rows = records_of(mine, source.n_rows, chunk_rows)
    per_rank = -(-source.n_rows // size) * n_cells * 16  # values, then their keys
    if per_rank > budget:
        on_all(comm, partial(_refuse, source, per_rank, budget))
    clock = time.perf_counter()
    values = on_all(comm, partial(read_block, source, mine, chunk_rows, rows, [(n_cells, 0)]))
    keys = order_keys(values[~np.isnan(values)])  # read, above
    del values
    read_seconds = time.perf_counter() - clock
    clock = time.perf_counter()
    from mpi4py import MPI

    count = comm.allreduce(len(keys), op=MPI.SUM)  # communicate
    field = OrderStatistics(count, partial(select, comm, keys))
    try:  # every rank runs it: its fetches are collective, and numpy's steps the same on each
        found = kernel.apply(field, params)
    except Exception as exc:
        raise KernelError(f"kernel {kernel.name!r} failed on rank {rank}: {exc!r}") from exc
    results = {key: np.asarray(value) for key, value in found.items()} if rank == 0 else None
    compute_seconds = time.perf_counter() - clock
    row = [read_seconds, compute_seconds, 0.0, 0.0, rows, 0.0]
    timing = gather_table(comm, np.array(row, np.float64))  # communicate
    stored = source.n_rows * n_cells * np.dtype(source.dtype).itemsize
    return SeriesResult(n_chunks, results, timing, 1, stored, stored)


def _refuse(source: Source, needed: int, budget: int) -> None:
    raise UsageError(
        f"{source.spec}: a quantile over every dimension holds each rank's share of the field, "
        f"about {size_text(needed)}, more than --memory-per-rank leaves ({size_text(budget)} "
        "beyond the base): run on more ranks or give more memory"
    )
