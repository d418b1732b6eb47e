"""What ``hpcapp check`` gives a kernel: what ``run`` would give it, on a bounded sample of rows.

The data options (the fields :class:`~hpcapp.jobs.config.JobConfig` declares ``data=True``) are
resolved by the planner's own code (:func:`hpcapp.jobs.plan.resolve_data`): the same parameters,
``over``, per-row outputs and grouping as ``run``, and the same refusals. The rows are a sample
of at most :data:`SAMPLE_BYTES` of values and :data:`SAMPLE_ROWS` rows, read as a few contiguous
blocks spread over the input (over its files, for many files), decoded as ``run`` decodes them,
with their group labels when the job is grouped: a check takes seconds whatever the input. A
kernel declaring ``times`` or ``coords`` gets one contiguous block of rows (so each cut has the
records' dates and rows a run would give it), with its coordinates planned as ``run`` plans them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hpcapp.errors import UsageError
from hpcapp.io.records import plan_records, record_dates, with_grid
from hpcapp.io.sources.base import Source
from hpcapp.io.sources.stored import StoredSource
from hpcapp.jobs.config import JobConfig, make_job_config
from hpcapp.jobs.library import _input_spec
from hpcapp.jobs.options import data_options
from hpcapp.jobs.plan import resolve_data
from hpcapp.kernels.api import Kernel
from hpcapp.kernels.grouped import group_kernel
from hpcapp.text import plural

SAMPLE_BYTES = 4 * 2**20  # decoded values handed to the kernel
SAMPLE_ROWS = 100_000
SAMPLE_BLOCKS = 4  # contiguous runs of rows, spread from the input's start to its end
CHECK_SECONDS = 5.0  # random cuts stop once this is spent (a slow kernel's check stays short)


@dataclasses.dataclass
class CheckData:
    """The kernel to check as ``run`` would run it, its parameters and the rows it is given."""

    kernel: Kernel  # bound to ``over``; grouped when the job is
    params: dict[str, Any]
    rows: np.ndarray | None  # None: the kernel generates its data
    labels: np.ndarray | None  # each row's group label, when grouped
    n_rows: int | None  # a generating kernel's rows
    notes: list[str]
    times: np.ndarray | None = None  # the rows' decoded dates (times=True, coords=True)
    first_row: int = 0  # the index of the first row in the (selected) input


def sample_blocks(
    n_rows: int,
    row_bytes: int,
    max_bytes: int = SAMPLE_BYTES,
    max_rows: int = SAMPLE_ROWS,
    blocks: int = SAMPLE_BLOCKS,
) -> list[tuple[int, int]]:
    """Return the ``(start, stop)`` runs of rows to check: all, or a few spread evenly.

    At least 2 rows (one cut) are taken, however large a row is.
    """
    take = min(n_rows, max_rows, max(2, max_bytes // max(row_bytes, 1)))
    if take >= n_rows:
        return [(0, n_rows)]
    count = max(1, min(blocks, take // 2))
    sizes = [take // count + (1 if i < take % count else 0) for i in range(count)]
    gap = n_rows - take  # rows left out, spread between the blocks
    runs = []
    for i, size in enumerate(sizes):
        start = sum(sizes[:i]) + (round(i * gap / (count - 1)) if count > 1 else 0)
        runs.append((start, start + size))
    return runs


def read_sample(
    source: StoredSource, runs: Sequence[tuple[int, int]], grouping: Any = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Return the decoded rows of ``runs``, joined, and their group labels (or None)."""
    rows = np.concatenate([source.read_rows(start, stop) for start, stop in runs])
    if grouping is None:
        return rows, None
    with source.open() as opened:
        labels = [grouping.labels(opened, start, stop) for start, stop in runs]
    return rows, np.concatenate(labels)


def _over_text(over: Any) -> str | None:
    """Return ``over`` as ``--over`` takes it: ``("lat", "lon")`` is ``"lat,lon"``."""
    if over is None or isinstance(over, str):
        return over
    return ",".join(str(item) for item in over)


@contextlib.contextmanager
def _as_spec(input: Any) -> Iterator[str | None]:
    """Yield a spec for ``input``: as given, an h5py dataset's, or an array's scratch file."""
    if input is None or isinstance(input, str):
        yield input
        return
    if hasattr(input, "file") and hasattr(input, "name"):  # an h5py.Dataset
        yield _input_spec(input)
        return
    import h5py

    # An array goes the way of a file, so every data option means what it means for run.
    with tempfile.TemporaryDirectory(prefix="hpcapp-check-") as folder:
        path = Path(folder) / "rows.h5"
        with h5py.File(path, "w") as h5:
            h5.create_dataset("rows", data=np.asarray(input))
        yield f"{path}:/rows"


def _runs_text(runs: Sequence[tuple[int, int]]) -> str:
    return ", ".join(f"{start:,}-{stop - 1:,}" for start, stop in runs)


def _describe(source: Source, runs: Sequence[tuple[int, int]], checked: int) -> str:
    """Say which rows are checked and why not all of them."""
    if list(runs) == [(0, source.n_rows)]:
        return f"all {source.n_rows:,} rows of the input"
    bound = f"at most {SAMPLE_BYTES // 2**20} MiB of values and {SAMPLE_ROWS:,} rows"
    return (
        f"{checked:,} of {source.n_rows:,} rows, in {plural(len(runs), 'block')} of contiguous "
        f"rows ({_runs_text(runs)}): check reads {bound}"
    )


def prepare_check(
    kernel: Kernel, input: Any, options: Mapping[str, Any], max_bytes: int = SAMPLE_BYTES
) -> CheckData:
    """Resolve the data options as ``run`` does and read the sample (UsageError: bad input).

    ``input`` is a spec, an h5py dataset, an array, or None for a generating kernel; ``options``
    holds data options only (those of :func:`data_options`), by their ``hpcapp.run`` names.
    """
    if kernel.series:  # its chunks are never combined: its tiles are checked instead
        raise UsageError(
            f"kernel {kernel.name!r} takes whole series through a transpose: it has no chunks "
            "to cut; its tiles are checked by hpcapp.jobs.series_check (hpcapp.testing.run_check)"
        )
    unknown = set(options) - set(data_options(JobConfig))
    if unknown:
        raise TypeError(f"not data options of hpcapp check: {', '.join(sorted(unknown))}")
    values = {**options, "over": _over_text(options.get("over"))}
    is_array = input is not None and not isinstance(input, str) and not hasattr(input, "file")
    if values.get("group_by") and is_array:
        raise UsageError("--group-by reads labels beside the data: give an INPUT file")
    with _as_spec(input) as spec:
        values.update(kernel=kernel.name, input=spec, params=dict(options.get("params") or {}))
        config = make_job_config(values, {}, output_required=False)
        resolved = resolve_data(config, kernel)
        notes = _job_notes(config, resolved)
        bound = resolved.kernel
        if bound.halo is not None:
            # Issue 22: check cuts rows without a halo; a run on a small input (at 1 and 2
            # ranks) is the check of such a kernel for now.
            raise UsageError(
                f"hpcapp check cannot give kernel {kernel.name!r} a halo (halo=) yet: run it "
                "on a small input at 1 and 2 ranks and compare"
            )
        if bound.generates:
            given = resolved.params.get(bound.rows_param) if bound.rows_param else None
            n_rows = min(int(given), SAMPLE_ROWS) if given else SAMPLE_ROWS
            return CheckData(bound, resolved.params, None, None, n_rows, notes)
        source = resolved.source
        assert isinstance(source, StoredSource)  # an input that is not generated is stored
        records = plan_records(config, bound, source, resolved.params, resolved.weights)
        bound = with_grid(bound, records)  # coords=True: what its chunks' coordinates share
        itemsize = np.dtype(source.values_dtype).itemsize
        blocks = SAMPLE_BLOCKS if records is None else 1  # dates and rows of one run
        row_bytes = itemsize * math.prod(source.row_shape)
        runs = sample_blocks(source.n_rows, row_bytes, max_bytes, blocks=blocks)
        rows, labels = read_sample(source, runs, resolved.grouping)
        times = None
        if records is not None and records.time is not None:
            with source.open() as opened:
                times = record_dates(records, opened, *runs[0])
    notes.insert(0, _describe(source, runs, sum(stop - start for start, stop in runs)))
    if bound.coords:
        dated = f"dates of {records.time_dataset}" if times is not None else "no dates"
        notes.append(f"run calls the kernel with coords ({dated}; {', '.join(source.dims)})")
    if resolved.grouping is not None:
        bound = group_kernel(bound, resolved.grouping.key)  # per group, as run combines them
    return CheckData(bound, resolved.params, rows, labels, None, notes, times, runs[0][0])


def _job_notes(config: JobConfig, resolved: Any) -> list[str]:
    """Say how the data options were resolved: the axes, per-row outputs, the groups."""
    notes = []
    source = resolved.source
    if "over" in resolved.params and source.dims:
        names = ",".join(source.dims[axis] for axis in resolved.params["over"])
        notes.append(f"run calls the kernel with over={resolved.params['over']} ({names})")
    if resolved.kernel.per_row:
        notes.append(f"per-row outputs: {', '.join(resolved.kernel.per_row)}")
    if resolved.grouping is not None:
        notes.append(f"{resolved.grouping.option}: combined per {resolved.grouping.describe()}")
    if resolved.weights is not None:
        notes.append(f"--weights {config.weights}: weighted stats, {resolved.weights.method}")
    zones = resolved.zones
    if zones is not None and zones.mask is not None:
        notes.append(f"--mask {config.mask}: {int(zones.mask.sum()):,} cells kept")
    if zones is not None and zones.regions is not None:
        notes.append(f"--regions {config.regions}: {zones.regions.describe()}")
    return notes
