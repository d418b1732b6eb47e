"""What ``hpcapp check`` gives a series kernel: whole series of a small box of cells, as run.

The data options are resolved by the planner's own code, with the refusals of a series job
(:func:`hpcapp.jobs.series.refuse_series`); the sample is every record (or the first records,
when the series are long) of a box of at most :data:`BOX_CELLS` cells in the middle of the kept
dimensions, at least two rows of each where there are, decoded as ``run`` decodes them. The
tiling check itself is :func:`hpcapp.kernels.series_contract.check_tiling`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from hpcapp.errors import UsageError
from hpcapp.io.selection import Window
from hpcapp.io.sources.base import Source
from hpcapp.io.sources.stored import StoredSource
from hpcapp.jobs.check import SAMPLE_BYTES, _as_spec, _job_notes, _over_text
from hpcapp.jobs.config import JobConfig, make_job_config
from hpcapp.jobs.options import data_options
from hpcapp.jobs.plan import resolve_data
from hpcapp.jobs.series import refuse_series
from hpcapp.kernels.api import Kernel

BOX_CELLS = 64  # cells of the sample: each tiling calls the kernel up to once per cell
BOX_SIDES = (8, 4, 2)  # the box's length along the last kept dims, innermost first


@dataclasses.dataclass
class SeriesSample:
    """The kernel as run binds it, its parameters, the sample ``(records, *box)``, the notes."""

    kernel: Kernel
    params: dict[str, Any]
    series: np.ndarray
    notes: list[str]
    shape: tuple[int, ...]  # the input's (records, *kept), as run reads it


def box_of(kept: tuple[int, ...], cells: int = BOX_CELLS) -> tuple[tuple[int, ...], ...]:
    """Return the (start, length) per kept dim of a box of at most ``cells`` in the middle."""
    if len(kept) == 1:
        sides = [min(kept[0], cells)]
    else:
        sides = [1] * len(kept)
        for back, limit in enumerate(BOX_SIDES[: len(kept)]):
            sides[-1 - back] = min(kept[-1 - back], limit)
    starts = [(whole - side) // 2 for whole, side in zip(kept, sides, strict=True)]
    return tuple(starts), tuple(sides)


def cells_box(source: StoredSource, start: tuple[int, ...], shape: tuple[int, ...]) -> StoredSource:
    """Return ``source`` narrowed to a box of its kept dims, read as ``--isel`` reads one."""
    if not source.row_shape:
        return source
    whole = (source.n_rows, *source.row_shape)
    window = source.window or Window(whole, (0,) * len(whole), whole, "")
    first = (window.start[0], *(a + b for a, b in zip(window.start[1:], start, strict=True)))
    narrowed = dataclasses.replace(window, start=first, shape=(window.shape[0], *shape))
    return dataclasses.replace(source, row_shape=tuple(shape), window=narrowed)


def prepare_series_check(
    kernel: Kernel, input: Any, options: Mapping[str, Any], max_bytes: int = SAMPLE_BYTES
) -> SeriesSample:
    """Resolve the data options as ``run`` does and read the sample (UsageError: bad input)."""
    unknown = set(options) - set(data_options(JobConfig))
    if unknown:
        raise TypeError(f"not data options of hpcapp check: {', '.join(sorted(unknown))}")
    values = {**options, "over": _over_text(options.get("over"))}
    with _as_spec(input) as spec:
        values.update(kernel=kernel.name, input=spec, params=dict(options.get("params") or {}))
        config = make_job_config(values, {}, output_required=False)
        refuse_series(config)
        resolved = resolve_data(config, kernel)
        source = resolved.source
        over = tuple(resolved.params.get("over", ()))
        if len(over) == 1 + len(source.row_shape) > 1:
            raise UsageError(
                f"kernel {kernel.name!r} over every dimension gets the whole field by a "
                "distributed selection, not tiles of cells: there is no tiling to check; check "
                "it --over the first dimension, or run it at 1 and 2 ranks and compare"
            )
        assert isinstance(source, StoredSource)  # a series kernel takes stored series
        notes = _job_notes(config, resolved)
        kept = tuple(source.row_shape)
        start, sides = box_of(kept) if kept else ((), ())
        box = cells_box(source, start, sides)
        n_cells = math.prod(sides)
        records = min(source.n_rows, max(2, max_bytes // (8 * max(n_cells, 1))))
        series = box.read_rows(0, records)
    notes.insert(0, _describe(source, start, sides, records, max_bytes))
    shape = (source.n_rows, *kept)
    return SeriesSample(resolved.kernel, resolved.params, series, notes, shape)


def _describe(
    source: Source, start: tuple[int, ...], sides: tuple[int, ...], records: int, max_bytes: int
) -> str:
    """Say which cells and records are checked, and why not all of them."""
    dims = source.dims[1:] if len(source.dims) == 1 + len(sides) else [""] * len(sides)
    box = ", ".join(
        f"{name + ' ' if name else ''}{a}-{a + n - 1} of {whole}"
        for name, a, n, whole in zip(dims, start, sides, source.row_shape, strict=True)
    )
    cells = f"{math.prod(sides):,} cells ({box})" if sides else "the one series"
    taken = f"all {records:,} records" if records == source.n_rows else (
        f"the first {records:,} of {source.n_rows:,} records (at most "
        f"{max_bytes / 2**20:g} MiB of values)"
    )  # fmt: skip
    return f"{cells}, {taken}: whole series, as the transpose hands them to the kernel"
