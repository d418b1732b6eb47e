"""Write the result file on rank 0: results, provenance and timing, atomically.

The file is written under a temporary name in the output's directory and renamed over the
output only when complete, so a killed job leaves the previous file (or none), never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hpcapp.io import space
from hpcapp.io.cfattrs import fill_value
from hpcapp.io.ncfile import Dimensions, nc_value, set_attrs
from hpcapp.io.results import RESULT_ATTR, write_timing

# Results this large are left unwritten in the dry run that measures a file (added_bytes).
_DRY_RUN_BYTES = 1 << 16
# A new file whose results add up to at most this is built whole in memory and written in one
# go (its exact size reserved first): one build instead of a dry run and the real one.
IN_MEMORY_BYTES = 64 << 20
# Marks a file written by the no-argument demo, which may replace only its own earlier result.
DEMO_ATTR = "hpcapp_demo"


def check_output(path: str, overwrite: bool, input_path: str | None = None) -> None:
    """Refuse an output we cannot or must not write; raise UsageError with the fix."""
    from hpcapp.errors import UsageError

    out = Path(path)
    parent = out.parent if str(out.parent) else Path(".")
    if out.suffix == "":
        raise UsageError(f"output {path!r} has no file extension: name it like result.h5")
    if not parent.is_dir():
        raise UsageError(f"output directory {str(parent)!r} does not exist: create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"output directory {str(parent)!r} is not writable")
    if out.is_dir():
        raise UsageError(f"output {path!r} is a directory: give a file name like {path}/out.h5")
    if input_path is not None and out.exists() and out.samefile(input_path):
        raise UsageError(f"output {path!r} is the input file: choose another output name")
    if out.exists() and not overwrite:
        raise UsageError(f"output {path!r} already exists: pass --overwrite to replace it")


def iso_utc(seconds: float) -> str:
    """Format a POSIX time as ISO 8601 UTC with a Z suffix."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class OutputError(Exception):
    """The output could not be written: the OSError, the bytes it needed, and whether the
    per-row outputs are still in the checkpoint (``rows_kept``)."""

    def __init__(self, cause: OSError, path: str, needed: int, rows_kept: bool) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.path = path
        self.needed = needed
        self.rows_kept = rows_kept

    def describe(self, checkpoint: str, not_kept: str = "") -> str:
        """Say in one line what failed, where the result is kept, and what to do.

        ``not_kept`` says why the result could not be kept in ``checkpoint`` (or is empty).
        """
        folder = space.existing(os.path.dirname(os.path.abspath(self.path)))
        what = (
            f"{space.reason(self.cause)} writing {self.path} (needs ~{space.megabytes(self.needed)}"
            f", {space.megabytes(space.free_bytes(folder))} free)"
        )
        fix = space.fix_for(self.cause, folder)
        if not self.rows_kept:
            return f"{what}; its per-row outputs were lost: {fix} and run again with --overwrite"
        if not_kept:
            return (
                f"{what}, and the result could not be kept in {checkpoint} either ({not_kept}): "
                f"{fix} and run again with --resume (it continues from what {checkpoint} holds)"
            )
        return (
            f"{what}; the result is kept in {checkpoint}: {fix} and rerun with --resume "
            "(no chunk is computed again)"
        )


def write_output(
    path: str,
    results: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any],
    timing: np.ndarray,
    timing_columns: tuple[str, ...],
    write_column: int,
    started_seconds: float,
    base: str | None = None,
    layout: Any = None,
) -> float:
    """Write results, attributes and timing to ``path`` atomically; return the write seconds.

    ``base`` is a working file that already holds per-row outputs: it is completed and becomes
    the output, instead of a new file (renamed, or copied from another file system).
    ``layout``, if given, names the results and completes the file (named dimensions and CF
    attributes: :func:`hpcapp.io.output.make_layout`). The room the file needs is reserved
    before anything is written to it (see :mod:`hpcapp.io.space`): a new file of results up to
    ``IN_MEMORY_BYTES`` is built whole in memory and its exact size reserved; otherwise a dry
    run measures it (:func:`added_bytes`) before HDF5 writes. A write that fails raises
    :class:`OutputError` with no file left at ``path`` or beside it, and ``base`` kept whenever
    HDF5 did not start changing it.
    """
    import h5py

    clock = time.perf_counter()
    final = Path(path)
    temporary = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    needed = 0
    moved = False  # ``base`` was renamed to ``temporary``: put it back if the write fails
    touched = False  # HDF5 began changing ``temporary``
    try:
        if base is None and _results_bytes(results) <= IN_MEMORY_BYTES:
            table = timing.copy()
            table[0, write_column] += time.perf_counter() - clock
            image = _image(results, attrs, table, timing_columns, layout, started_seconds)
            needed = len(image)
            _write_image(temporary, image)
            os.replace(temporary, final)
            return time.perf_counter() - clock
        needed = added_bytes(results, attrs, timing, timing_columns, base, layout)
        if base is None:
            space.new_h5(temporary, needed)
        elif space.same_device(base, final.parent):
            os.replace(base, temporary)
            moved = True
            space.reserve(temporary, needed)
        else:
            copied = os.path.getsize(base)  # a checkpoint on another file system: copy its rows
            needed += copied
            shutil.copyfile(base, temporary)
            space.reserve(temporary, needed - copied)
        touched = True
        table = timing.copy()
        table[0, write_column] += time.perf_counter() - clock
        with h5py.File(temporary, "a") as h5:
            _fill(h5, results, attrs, table, timing_columns, layout, started_seconds)
        os.replace(temporary, final)
    except OSError as exc:
        if moved and not touched:
            os.replace(temporary, base)  # type: ignore[arg-type]
        raise OutputError(exc, path, needed, rows_kept=not (moved and touched)) from exc
    finally:
        temporary.unlink(missing_ok=True)
    return time.perf_counter() - clock


def _results_bytes(results: Mapping[str, np.ndarray]) -> int:
    return sum(np.asarray(value).nbytes for value in results.values())


def _image(
    results: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any],
    timing: np.ndarray,
    timing_columns: tuple[str, ...],
    layout: Any,
    started_seconds: float,
) -> bytes:
    """Return the bytes of the whole output file, built in memory (closed: as on disk)."""
    import io

    import h5py

    image = io.BytesIO()
    with h5py.File(image, "w") as h5:
        _fill(h5, results, attrs, timing, timing_columns, layout, started_seconds)
    return image.getvalue()


def _write_image(path: Path, image: bytes) -> None:
    """Write ``image`` as a new file, its room reserved first: a full disk fails cleanly."""
    with open(path, "wb"):
        pass
    space.reserve(path, len(image))
    fd = os.open(path, os.O_WRONLY)
    try:
        view = memoryview(image)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _fill(
    h5: Any,
    results: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any],
    timing: np.ndarray,
    timing_columns: tuple[str, ...],
    layout: Any,
    started_seconds: float,
    values: bool = True,
) -> None:
    """Add attributes, results, timing and layout to an open file (``values=False``: leave
    large arrays unwritten, for :func:`added_bytes`).

    Per-row outputs, written during the run under ``/result`` of the working file, move to
    the root under their names (a link moves; no data is copied).
    """
    set_attrs(h5, attrs)
    rows = dict(h5["result"].items()) if "result" in h5 else {}
    keys = [*rows, *results]
    names = layout.names(keys) if layout is not None else {key: key for key in keys}
    for key, dataset in rows.items():
        h5.move(dataset.name, names[key])
    if "result" in h5:
        del h5["result"]
    for key, value in results.items():
        array = np.asarray(value)
        if array.dtype.kind == "b":  # HDF5 has no bool but an enum that CDO cannot read
            array = array.view(np.int8)
        fill = fill_value(key, array.dtype)
        if values or array.nbytes < _DRY_RUN_BYTES:
            # Attributes in the order they are set (ncdump shows them so), as netCDF-C does.
            dataset = h5.create_dataset(names[key], data=array, fillvalue=fill, track_order=True)
        else:
            dataset = h5.create_dataset(
                names[key], shape=array.shape, dtype=array.dtype, fillvalue=fill, track_order=True
            )
        if np.asarray(value).dtype.kind == "b":
            set_attrs(
                dataset, {"flag_values": np.array([0, 1], np.int8), "flag_meanings": "false true"}
            )
        # A kernel's note on one result (e.g. why it is rounded): see api.with_attrs.
        set_attrs(dataset, getattr(value, "attrs", {}))
    for key, name in names.items():
        h5[name].attrs[RESULT_ATTR] = nc_value(key)
    dims = Dimensions(h5)
    if layout is not None:
        layout(h5, names, dims)
    write_timing(h5, dims, timing, timing_columns)
    dims.finish()
    h5.attrs["finished"] = nc_value(iso_utc(time.time()))
    h5.attrs["wall_seconds"] = float(time.time() - started_seconds)


def added_bytes(
    results: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any],
    timing: np.ndarray,
    timing_columns: tuple[str, ...],
    base: str | None,
    layout: Any,
) -> int:
    """Return the bytes to reserve for what the writer adds to a file.

    A dry run in memory measures everything but the large arrays' values (whose bytes are
    added as they are); per-row datasets of ``base`` are stand-ins of their shape, so the
    layout sees the file it will complete. A margin covers HDF5 placing things differently in
    a file that already holds data.
    """
    import io

    import h5py

    image = io.BytesIO()
    with h5py.File(image, "w") as h5:
        if base is not None:
            with h5py.File(base, "r", locking=False) as rows:
                for key, dataset in rows.get("result", {}).items():
                    h5.create_dataset(f"result/{key}", shape=dataset.shape, dtype=dataset.dtype)
        _fill(h5, results, attrs, timing, timing_columns, layout, 0.0, values=False)
        n_objects = len(h5) + len(h5.attrs) + 4
    large = sum(
        np.asarray(value).nbytes
        for value in results.values()
        if np.asarray(value).nbytes >= _DRY_RUN_BYTES
    )
    return large + len(image.getvalue()) * 3 // 2 + (64 << 10) + n_objects * (2 << 10)


def params_json(params: Mapping[str, Any]) -> str:
    """Serialise kernel parameters for provenance, sorted so equal runs give equal text."""
    return json.dumps(dict(params), sort_keys=True, default=str)
