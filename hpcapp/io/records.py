"""What a kernel needs of the records besides its chunk: their dates, and records around it.

A kernel declared ``times=True`` (``trend``, ``anomaly``) gets the decoded dates of its chunk's
records: the input's CF time coordinate along its first dimension, decoded as xarray decodes it
(:mod:`hpcapp.io.coding.times`; each file its own way for a many-file input; None where masked).
A kernel declared ``halo=`` (``rolling``) gets each chunk with ``before`` records ahead of it
and ``after`` behind it, read from the input like the chunk itself (fewer at the input's ends),
so each chunk computes its own rows from their whole windows: no running state crosses chunks,
and the result is the same bits for any rank count and schedule. A kernel declared
``coords=True`` gets its chunk's :class:`~hpcapp.kernels.hookspec.ChunkCoords`: the dates as
above (when the records have a CF time coordinate), and what every chunk shares, read once here
on rank 0 (:class:`~hpcapp.kernels.hookspec.CoordGrid`: the other dimensions' coordinate
values, sliced by ``--sel``/``--isel``, and the ``--weights``). :func:`plan_records` checks
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
from hpcapp.kernels.hookspec import CoordGrid, Extended
from hpcapp.partition import chunk_bounds

# With a halo and no --chunk-rows, chunks hold at least this many times the halo's records, so
# the records read twice stay a small part of the reading.
HALO_CHUNKS = 8


def halo_chunk_rows(n_rows: int, chunk_rows: int, halo: int) -> int:
    """Return the rows of a chunk read with ``halo`` records around it (no ``--chunk-rows``).

    Chunks hold at least ``HALO_CHUNKS`` halos, so they are few; their count is then made a
    multiple of 4 or 6 (of 2 below 4) where the input has room for it, so that 2 or 4 ranks
    (mostly 3 and 6 too) get as many records each: 5 chunks would give 2 ranks 3 and 2. It
    depends on the input and the halo only, never on the rank count (a checkpoint resumes on
    any); chunks grow by at most half.
    """
    least = max(chunk_rows, HALO_CHUNKS * halo)
    most = n_rows // least  # chunks of at least ``least`` records
    if halo == 0 or most < 2:
        return least
    count = max(c for c in range(2, most + 1) if c == 2 or c % 4 == 0 or c % 6 == 0)
    return -(-n_rows // count)


@dataclasses.dataclass(frozen=True)
class RecordNeeds:
    """What each chunk is read with (small and picklable; planned on rank 0)."""

    before: int = 0
    after: int = 0
    time_dataset: str | None = None  # the record dimension's CF time coordinate
    time: TimeEncoding | None = None  # how the (first) file encodes it
    grid: CoordGrid | None = None  # a kernel declared coords=True: what its chunks share


def plan_records(
    config: Any, kernel: Kernel, source: Any, params: dict[str, Any], weights: Any = None
) -> Any:
    """Return the :class:`RecordNeeds` of a kernel declared ``times``/``halo``/``coords``.

    None for other kernels. ``weights`` (an :class:`hpcapp.io.weights.Weights`, ``--weights``)
    go to a kernel declared ``coords=True``.
    """
    if not kernel.times and kernel.halo is None and not kernel.coords:
        return None
    what = "its records' dates" if kernel.times else "records around each chunk"
    what = "its chunks' coordinates" if kernel.coords else what
    if not isinstance(source, StoredSource):
        raise UsageError(f"kernel {config.kernel!r} needs {what}: give it an INPUT")
    if config.distribute == "scatter":
        raise UsageError(
            f"kernel {config.kernel!r} needs {what}, read by every rank: drop --distribute scatter"
        )
    grouped = [config.group_every, config.group_by, getattr(config, "resample", None)]
    if any(option is not None for option in grouped):
        raise UsageError(
            f"kernel {config.kernel!r} needs {what}: it takes no --group-every, --group-by or "
            "--resample"
        )
    before, after = (0, 0) if kernel.halo is None else kernel.halo(params)
    coord = source.coords[0] if source.coords else None
    if not kernel.times and not kernel.coords:
        return RecordNeeds(int(before), int(after))
    if not isinstance(source, Hdf5Source):  # every stored input is one (many files too)
        raise UsageError(f"kernel {config.kernel!r} needs {what}: give it an INPUT file")
    if kernel.times and coord is None:
        raise UsageError(
            f"kernel {config.kernel!r}: {source.spec} has no coordinate variable along its "
            f"first dimension {source.dims[0] if source.dims else ''!r}: it needs the records' "
            "times"
        )
    encoding = _time_encoding(config, source, coord, required=kernel.times)
    grid = coord_grid(source, weights, encoding is not None) if kernel.coords else None
    dated = coord if encoding is not None else None
    return RecordNeeds(int(before), int(after), dated, encoding, grid)


def _time_encoding(
    config: Any, source: Hdf5Source, coord: str | None, required: bool = True
) -> TimeEncoding | None:
    """Return how the records' time coordinate ``coord`` is encoded (refused if it cannot be).

    Not ``required`` (a kernel declaring coords, not times): None where the records have no
    coordinate, or one without CF time units; one with such units that cannot be decoded is
    still refused.
    """
    where = source.spec
    if coord is None:
        return None
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
    if encoding is None and required:
        units = attr_text(attrs.get("units"))
        raise UsageError(
            f"kernel {config.kernel!r}: {coord} of {where} is not a CF time coordinate (units "
            f"{units!r}; it needs units like 'days since 1979-01-01')"
        )
    return encoding


def coord_grid(source: Hdf5Source, weights: Any, dated: bool) -> CoordGrid:
    """Read what every chunk's coordinates share: the other dimensions' values (rank 0)."""
    values: list[tuple[str, np.ndarray | None]] = []
    with open_input(source) as h5:  # many files agree on these: the first file's
        for axis, dim in enumerate(source.dims[1:], start=1):
            coord = source.coords[axis] if axis < len(source.coords) else None
            box = source.window.axis(axis) if source.window is not None else slice(None)
            values.append((dim, None if coord is None else np.asarray(h5[coord][box])))
    found = None if weights is None else weights.values
    return CoordGrid(tuple(source.dims), tuple(values), found, dated)


def with_grid(kernel: Kernel, needs: RecordNeeds | None) -> Kernel:
    """Return ``kernel`` with the coordinates its chunks share, if it declares coords."""
    return kernel.with_grid(needs.grid if needs is not None else None)


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
    packed: bool = False,
) -> Iterator[Chunk]:
    """Yield this rank's chunks as :class:`Extended`: with their halo and their dates.

    One buffer of ``chunk_rows + before + after`` rows is reused; decoding works on what was
    read (the halo is decoded like the chunk; ``packed``: a kernel that decodes
    :class:`~hpcapp.kernels.packed.Packed` chunks gets them so). A failed read yields a
    ChunkReadError.
    """
    n_rows = source.n_rows
    extent = min(chunk_rows + needs.before + needs.after, n_rows)
    buffer = np.empty((extent, *source.row_shape), dtype=np.dtype(source.dtype))
    decode = source.decoder(extent, packed)
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
            halo = (start - first, end - stop)
            yield chunk_index, Extended(decode(view, [(first, end)]), dates, halo, first)
