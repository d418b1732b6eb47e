"""What a kernel needs of the records besides its chunk: their dates, and records around it.

A kernel declared ``times=True`` (``trend``, ``anomaly``) gets the decoded dates of its chunk's
records: the input's CF time coordinate along its first dimension, decoded as xarray decodes it
(:mod:`hpcapp.io.coding.times`; each file its own way for a many-file input; None where masked).
A kernel declared ``halo=`` (``rolling``) gets each chunk with ``before`` records ahead of it
and ``after`` behind it, read from the input like the chunk itself (fewer at the input's ends),
so each chunk computes its own rows from their whole windows: no running state crosses chunks,
and the result is the same bits for any rank count and schedule. :func:`plan_records` checks
this on rank 0; every rank then reads its own chunks with :func:`read_extended`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from hpcapp.errors import UsageError
from hpcapp.io.coding.times import TimeEncoding, encoding_of
from hpcapp.io.coding.variables import attr_text
from hpcapp.io.reader import ChunkReadError
from hpcapp.io.sources.base import Chunk, Rows, ShouldStop
from hpcapp.io.sources.hdf5 import Hdf5Source, open_input
from hpcapp.io.sources.stored import StoredSource
from hpcapp.kernels.api import Kernel
from hpcapp.kernels.hookspec import Extended
from hpcapp.partition import chunk_bounds

# With a halo and no --chunk-rows, chunks hold at least this many times the halo's records, so
# the records read twice stay a small part of the reading.
HALO_CHUNKS = 8


@dataclasses.dataclass(frozen=True)
class RecordNeeds:
    """What each chunk is read with (small and picklable; planned on rank 0)."""

    before: int = 0
    after: int = 0
    time_dataset: str | None = None  # the record dimension's CF time coordinate
    time: TimeEncoding | None = None  # how the (first) file encodes it


def plan_records(config: Any, kernel: Kernel, source: Any, params: dict[str, Any]) -> Any:
    """Return the :class:`RecordNeeds` of a kernel declared ``times``/``halo``, else None."""
    if not kernel.times and kernel.halo is None:
        return None
    what = "its records' dates" if kernel.times else "records around each chunk"
    if not isinstance(source, StoredSource):
        raise UsageError(f"kernel {config.kernel!r} needs {what}: give it an INPUT")
    if config.distribute == "scatter":
        raise UsageError(
            f"kernel {config.kernel!r} needs {what}, read by every rank: drop --distribute scatter"
        )
    if config.group_every is not None or config.group_by is not None:
        raise UsageError(f"kernel {config.kernel!r} takes no --group-every or --group-by")
    before, after = (0, 0) if kernel.halo is None else kernel.halo(params)
    if not kernel.times:
        return RecordNeeds(int(before), int(after))
    coord = source.coords[0] if source.coords else None
    where = source.spec
    if coord is None or not isinstance(source, Hdf5Source):
        raise UsageError(
            f"kernel {config.kernel!r}: {where} has no coordinate variable along its first "
            f"dimension {source.dims[0] if source.dims else ''!r}: it needs the records' times"
        )
    with open_input(source) as h5:  # many files: the first (each file's own is read per span)
        variable = h5[coord]
        attrs = {key: variable.attrs[key] for key in variable.attrs if not key.isupper()}
        dtype = variable.dtype
    try:
        encoding = encoding_of(attrs, dtype)
    except ValueError as exc:
        raise UsageError(
            f"kernel {config.kernel!r}: cannot decode {coord} of {where}: {exc}"
        ) from None
    if encoding is None:
        units = attr_text(attrs.get("units"))
        raise UsageError(
            f"kernel {config.kernel!r}: {coord} of {where} is not a CF time coordinate (units "
            f"{units!r}; it needs units like 'days since 1979-01-01')"
        )
    return RecordNeeds(int(before), int(after), coord, encoding)


def record_dates(needs: RecordNeeds, rows: Rows, start: int, stop: int) -> np.ndarray:
    """Return the decoded dates of records ``[start, stop)`` (an object array; None: masked)."""
    assert needs.time_dataset is not None and needs.time is not None
    dates = np.full(stop - start, None, dtype=object)
    for part, first, end in rows.spans(start, stop):
        encoding = rows.time_encoding(part, needs.time_dataset) or needs.time
        raw = np.empty(end - first, np.dtype(encoding.dtype))
        rows.read_rows(needs.time_dataset, raw, first, end)
        dates[first - start : end - start] = encoding.dates(raw)
    return dates


def read_extended(
    source: StoredSource,
    chunk_indices: Iterable[int],
    chunk_rows: int,
    should_stop: ShouldStop,
    needs: RecordNeeds,
) -> Iterator[Chunk]:
    """Yield this rank's chunks as :class:`Extended`: with their halo and their dates.

    One buffer of ``chunk_rows + before + after`` rows is reused; decoding works on what was
    read (the halo is decoded like the chunk). A failed read yields a ChunkReadError.
    """
    n_rows = source.n_rows
    extent = min(chunk_rows + needs.before + needs.after, n_rows)
    buffer = np.empty((extent, *source.row_shape), dtype=np.dtype(source.dtype))
    decode = source.decoder(extent)
    with source.open() as rows:
        for chunk_index in chunk_indices:
            if should_stop():
                return
            start, stop = chunk_bounds(chunk_index, n_rows, chunk_rows)
            first, end = max(start - needs.before, 0), min(stop + needs.after, n_rows)
            view = buffer[: end - first]
            try:
                rows.read(first, end, view)
                dates = record_dates(needs, rows, first, end) if needs.time else None
            except Exception as exc:
                yield (
                    chunk_index,
                    ChunkReadError(
                        f"reading chunk {chunk_index} (rows {start}-{stop - 1}, with records "
                        f"{first}-{end - 1} around it) of {source.spec} failed: "
                        f"{type(exc).__name__}: {exc}",
                        chunk_index,
                    ),
                )
                continue
            yield chunk_index, Extended(decode(view, first), dates, (start - first, end - stop))
