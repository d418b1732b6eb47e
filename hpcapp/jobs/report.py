"""The report rank 0 prints after a run: what ran, a results digest, and where the time went.

The times are on one clock: rank 0's wall time runs from its process's start (when the entry
point recorded it; else from the job's start) to the result written, and its row of the table
adds up to it, with what falls between the measured steps shown as ``other``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcapp.io.labels import labels_key
from hpcapp.io.resample import period_texts
from hpcapp.parallel.engine import TIMING_COLUMNS
from hpcapp.text import plural

if TYPE_CHECKING:
    from hpcapp.io.sources.base import Source
    from hpcapp.jobs.config import JobConfig
    from hpcapp.parallel.engine import EngineResult

WIDTH = 58  # of a step's label in the time table
SUMMARY_CELLS = 20  # results with more cells (N-D, many columns) get a digest, not a table
STATS_KEYS = ("count", "mean", "std", "min", "max")
# The steps of a rank's run, in order: (column(s) of the timing table, label, what it measures).
STEPS = (
    (("startup",), "start-up", "imports, MPI start, checks, kernel warm-up"),
    (("read", "compute"), "read+compute", "reading and computing the rank's own chunks"),
    (("reduce",), "combine", "waiting for the others, then combining partials"),
    (("write",), "write", "the output file (rank 0 only)"),
)


def summary(
    config: JobConfig,
    source: Source,
    chunk_rows: int,
    result: EngineResult,
    wall: float,
    n_ranks: int,
    thread_note: str | None = None,
    from_process_start: bool = True,
    weights: str | None = None,
    regions: str | None = None,
) -> str:
    """Return the short report rank 0 prints at the end of a run (with the launch's thread note).

    ``wall`` is rank 0's time from its process's start (``from_process_start``; else from the
    job's start) to the result written.
    """
    assert result.results is not None and result.timing is not None
    rows = int(result.timing[:, TIMING_COLUMNS.index("rows")].sum())
    resumed = "" if rows == source.n_rows else f" ({rows:,} computed in this run)"
    lines = [
        f"hpcapp: {config.kernel} on {source.spec}: {plural(source.n_rows, 'row')}"
        f"{source.summary()}{resumed} in {plural(result.n_chunks, 'chunk')} of "
        f"{plural(chunk_rows, 'row')}, {plural(n_ranks, 'rank')}, {wall:.2f} s",
    ]
    results = result.results
    key = labels_key(config.group_by, config.resample)
    if key in results and (config.group_by or config.group_every or config.resample):
        labels = [str(label) for label in np.ravel(results[key])]
        option = (
            f"--group-by {config.group_by}"
            if config.group_by
            else f"--group-every {config.group_every}"
        )
        word = "group"
        if config.resample:  # the periods' starts, as dates
            labels, option, word = (
                period_texts(results[key]),
                f"--resample {config.resample}",
                "period",
            )
        shown = ", ".join(labels[:6]) + (", ..." if len(labels) > 6 else "")
        lines.append(f"  {plural(len(labels), word)} ({option}): {shown}")
    if weights is not None:
        lines.append(f"  weighted (--weights {config.weights}): {weights}")
    if regions is not None:
        lines.append(f"  per region (--regions {config.regions}): {regions}")
    lines += results_lines(results, _cell_dims(config, source, results))
    lines += timing_lines(result.timing, wall, from_process_start)
    busy = _columns(result.timing, ("read", "compute"))
    if busy.max() > 0:
        rate = rows / busy.max()  # the slowest rank sets the pace; start-up not included
        volume = f", {rate * source.row_bytes / 1e9:.3g} GB/s" if source.input_paths else ""
        lines.append(f"  throughput after start-up: {rate / 1e6:.3g} Mrows/s{volume}")
    if thread_note:
        lines.append(f"  {thread_note}")
    lines.append(f"  wrote {config.output}")
    return "\n".join(lines)


def _cell_dims(config: JobConfig, source: Source, results: Mapping[str, Any]) -> list[str]:
    """Return the names of the result cells' dimensions (the input's kept ones), if known."""
    if not source.dims or config.over is None or "mean" not in results:
        return []
    over = set()
    for word in config.over.replace(" ", "").split(","):
        over.add(
            source.dims[int(word)] if word.isdigit() and int(word) < len(source.dims) else word
        )
    kept = [name for name in source.dims if name not in over]
    key = labels_key(config.group_by, config.resample)
    grouped = key in results and (config.group_by or config.group_every or config.resample)
    names = ([key] if grouped else []) + kept
    return names if len(names) == np.ndim(results["mean"]) else []


def results_lines(results: Mapping[str, Any], dims: list[str] | None = None) -> list[str]:
    """Return the results part: a per-column table, or a digest over the cells of a grid."""
    if set(STATS_KEYS) <= results.keys():
        cells = int(np.size(results["mean"]))
        if np.ndim(results["mean"]) <= 1 and cells <= SUMMARY_CELLS:
            return _column_table(results)
        return _stats_digest(results, dims or [])
    lines = []
    for key, value in results.items():
        array = np.asarray(value)
        if array.size > SUMMARY_CELLS and array.dtype.kind in "biuf":
            lines.append(f"  {key}: {_digest(array)}")
        else:
            with np.printoptions(threshold=8, precision=6):
                lines.append(f"  {key} = {value}")
    return lines


def _column_table(results: Mapping[str, Any]) -> list[str]:
    cells = int(np.size(results["mean"]))
    ids = np.ravel(results.get("region", ()))  # --regions: a row per region id
    head, labels = ("region", ids) if len(ids) == cells else ("column", np.arange(cells))
    lines = [f"  {head:>6} " + " ".join(f"{key:>12}" for key in STATS_KEYS)]
    for col in range(cells):
        values = [np.ravel(results[key])[col] for key in STATS_KEYS]
        numbers = " ".join(f"{float(v):>12.6g}" for v in values[1:])
        lines.append(f"  {labels[col]:>6} {int(values[0]):>12,} {numbers}")
    return lines


def _stats_digest(results: Mapping[str, Any], names: list[str]) -> list[str]:
    """Return min / mean / max over the cells of each statistic, and how many cells are empty."""
    shape = np.shape(results["mean"])
    count = np.asarray(results["count"])
    empty = int((count == 0).sum())
    named = names if len(names) == len(shape) else [""] * len(shape)
    dims = " x ".join(f"{name} {n:,}".strip() for name, n in zip(named, shape, strict=True))
    lines = [
        f"  {plural(count.size, 'cell')} ({dims}); {empty:,} all missing (count 0); "
        "over the other cells:",
        f"  {'':>6} " + " ".join(f"{name:>12}" for name in ("min", "mean", "max")),
    ]
    for key in STATS_KEYS:
        found = over_cells(np.asarray(results[key]), count > 0)
        if found is None:
            lines.append(f"  {key:>6} {'-':>12} {'-':>12} {'-':>12}")
            continue
        low, mid, high, _ = found
        shown = [f"{v:>12,.0f}" if key == "count" else f"{v:>12.6g}" for v in (low, mid, high)]
        lines.append(f"  {key:>6} " + " ".join(shown))
    return lines


def _digest(array: np.ndarray) -> str:
    """Return ``shape (a, b): min m mean m max m; N cells NaN`` for one result array."""
    shown = f"shape {array.shape}"
    found = over_cells(array)
    if found is None:
        return f"{shown}: all {array.size:,} cells NaN"
    low, mid, high, missing = found
    nan = f"; {missing:,} cells NaN" if missing else ""
    return f"{shown}: min {low:.6g} mean {mid:.6g} max {high:.6g} over cells{nan}"


# Cells digested per step: a large result (a climatology's 190 MB mean) is never copied whole.
DIGEST_BLOCK = 1 << 20


def over_cells(
    array: np.ndarray, keep: np.ndarray | None = None
) -> tuple[float, float, float, int] | None:
    """Return min, mean and max of ``array``'s non-NaN cells (where ``keep``), and its NaNs.

    In blocks of ``DIGEST_BLOCK`` cells, each as float64: no copy of the whole result. None
    when no cell has a value.
    """
    flat = np.asarray(array).reshape(-1)
    kept = None if keep is None else np.broadcast_to(keep, np.shape(array)).reshape(-1)
    low, high, total, n, missing = np.inf, -np.inf, 0.0, 0, 0
    for first in range(0, flat.size, DIGEST_BLOCK):
        block = flat[first : first + DIGEST_BLOCK].astype(np.float64)
        if kept is not None:
            block = block[kept[first : first + DIGEST_BLOCK]]
        nan = np.isnan(block)
        here = int(nan.sum())
        missing += here
        values = block[~nan] if here else block
        if values.size:
            low, high = min(low, float(values.min())), max(high, float(values.max()))
            total += float(values.sum())
            n += values.size
    return None if n == 0 else (low, total / n, high, missing)


def _columns(timing: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    return sum((timing[:, TIMING_COLUMNS.index(name)] for name in names), np.zeros(len(timing)))


def timing_lines(timing: np.ndarray, wall: float, from_process_start: bool) -> list[str]:
    """Return the time table: each step per rank, and rank 0's steps adding up to ``wall``."""
    since = "each rank's process start" if from_process_start else "the job's start"
    heads = "".join(f"{head:>8}" for head in ("rank 0", "min", "mean", "max"))
    lines = [f"  {f'seconds, from {since}':<{WIDTH + 2}}{heads}"]
    rank0 = 0.0
    for names, label, what in STEPS:
        values = _columns(timing, names)
        rank0 += values[0]
        spread = "" if names == ("write",) else _spread(values)
        lines.append(f"    {f'{label}: {what}':<{WIDTH}}{values[0]:>8.3f}{spread}")
    for label, seconds in (
        ("other: between those steps (rank 0)", wall - rank0),
        ("total: rank 0, from its start to the result written", wall),
    ):
        lines.append(f"    {label:<{WIDTH}}{seconds:>8.3f}")
    return lines


def _spread(values: np.ndarray) -> str:
    return "".join(f"{v:>8.3f}" for v in (values.min(), values.mean(), values.max()))
