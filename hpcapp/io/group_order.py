"""A climatology read group by group: each chunk holds whole groups' records, not whole years.

A climatology's labels cycle (12 months, 366 days of year). Chunks of consecutive records each
meet every group, so every chunk's grouped partial is as large as the result, and laying out
and merging those partials is most of the job (a day-of-year climatology of 10 years of 180 x
360 cells made five 380 MB partials for a 190 MB result). Read in *group order* instead -- the
records sorted by label, each group's records kept in record order -- a chunk of ``chunk_rows``
rows holds the records of a few neighbouring groups: its partial is those groups' size, and two
neighbouring chunks share at most one group, which the fixed tree merges as any other.

The engine still cuts rows ``[0, n_rows)`` into chunks of consecutive rows; the rows are those
of this order, which depends on the input only (so the bits are the same on any rank count).
Only the reader maps a chunk back to records: it reads them in runs of consecutive records (one
run per cycle: per year for months or days of year), in record order, and gives each record its
label. The labels of every record are decoded once on rank 0 when the job is planned.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from hpcapp.kernels.grouped import NO_GROUP
from hpcapp.partition import DEFAULT_CHUNK_BYTES

# A chunk of whole groups: about this many stored bytes (the default chunk's 4 MiB makes a
# 10-year day-of-year climatology of a 180 x 360 int16 grid 122 chunks of 3 groups, whose
# partials the tree then copies level after level; 32 MiB makes 15 chunks of 25 groups).
GROUP_CHUNK_BYTES = 8 * DEFAULT_CHUNK_BYTES
# Read in group order only while a chunk is at most this large: a storage chunk holding many
# records would otherwise make each chunk's runs span too few of them (each read many times).
MAX_GROUP_CHUNK_BYTES = 128 * 1024 * 1024
# Each run of a chunk (its records in one cycle) covers at least this many storage chunks, so
# that reading a storage chunk for two neighbouring chunks costs at most 1 / STORAGE_RUNS more.
STORAGE_RUNS = 4


@dataclasses.dataclass(frozen=True, eq=False)
class GroupOrder:
    """The records of an input in group order (small: one int64 label per record)."""

    codes: np.ndarray  # the label of every record, in record order (NO_GROUP: in none)

    def _order(self) -> np.ndarray:
        order = self.__dict__.get("_sorted")
        if order is None:  # computed once per process, never pickled with the plan
            order = np.argsort(self.codes, kind="stable")  # each group's records in order
            self.__dict__["_sorted"] = order
        return order

    def __getstate__(self) -> dict[str, np.ndarray]:
        return {"codes": self.codes}

    def __setstate__(self, state: dict[str, np.ndarray]) -> None:
        self.__dict__.update(state)

    def records(self, start: int, stop: int) -> np.ndarray:
        """Return the records of rows ``[start, stop)`` of the group order, in record order."""
        return np.sort(self._order()[start:stop])

    def labels(self, records: np.ndarray) -> np.ndarray:
        """Return the int64 labels of ``records``."""
        return self.codes[records]

    def group_records(self) -> int:
        """Return how many records a group typically has (the median; for memory estimates)."""
        valid = self.codes[self.codes != NO_GROUP]
        if not len(valid):
            return 1
        return max(1, int(np.median(np.unique(valid, return_counts=True)[1])))

    def identity(self) -> dict[str, object]:
        """Return what a checkpoint must match: the order is a function of the labels."""
        return {"order": "groups", "records": len(self.codes)}


def runs(records: np.ndarray) -> list[tuple[int, int]]:
    """Return increasing ``records`` as runs ``[a, b)`` of consecutive records."""
    if not len(records):
        return []
    breaks = np.flatnonzero(np.diff(records) != 1) + 1
    starts = records[np.r_[0, breaks]].tolist()
    ends = (records[np.r_[breaks - 1, len(records) - 1]] + 1).tolist()
    return list(zip(starts, ends, strict=True))


def group_chunk_rows(
    codes: np.ndarray,
    row_bytes: int,
    storage_chunk_rows: int | None = None,
    chunk_rows: int | None = None,
) -> int | None:
    """Return the rows of a chunk in group order, or None to read in record order.

    Without ``chunk_rows`` (``--chunk-rows``): whole groups of the largest size, about
    ``GROUP_CHUNK_BYTES`` stored, and enough of them that each run of a chunk spans
    ``STORAGE_RUNS`` storage chunks. None when that chunk would exceed
    ``MAX_GROUP_CHUNK_BYTES`` (storage chunks of many records), or when the given
    ``chunk_rows`` would read each storage chunk more than twice.
    """
    valid = codes[codes != NO_GROUP]
    if not len(valid):
        return None
    biggest = int(np.unique(valid, return_counts=True)[1].max())  # records of the largest group
    # A group's records in one cycle: the longest run of one label in record order.
    changes = np.flatnonzero(np.diff(codes) != 0)
    edges = np.r_[-1, changes, len(codes) - 1]
    per_cycle = max(1, int(np.diff(edges).max()))
    stored = storage_chunk_rows if storage_chunk_rows and storage_chunk_rows > 1 else 0
    if chunk_rows is not None:
        groups_run = chunk_rows / biggest * per_cycle  # records of one cycle in a chunk
        return chunk_rows if not stored or 2 * groups_run >= stored else None
    groups = max(1, GROUP_CHUNK_BYTES // max(1, biggest * row_bytes))
    if stored:
        groups = max(groups, math.ceil(STORAGE_RUNS * stored / per_cycle))
    rows = min(groups * biggest, len(codes))  # (a small input: one chunk)
    return rows if rows * row_bytes <= MAX_GROUP_CHUNK_BYTES else None
