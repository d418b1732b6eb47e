"""Disk space: what a job will write, whether it fits, and one line when a write does not.

Before any work, rank 0 estimates the output and what the checkpoint keeps, and refuses a job
whose files cannot fit (:func:`check_space`). When a file is written, the room HDF5 will take is
reserved first (``posix_fallocate``; HDF5 trims what it did not use when it closes the file):
a full disk is then met by that call, whose error Python reports cleanly, and never inside
HDF5. h5py caught by ENOSPC halfway leaves objects it cannot close: measured with h5py 3.16 /
HDF5 2.0 on a full tmpfs, an error at every deallocation, then a segmentation fault at exit.
"""

from __future__ import annotations

import dataclasses
import errno
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hpcapp.errors import UsageError

# Disk full, quota exceeded, file too large: freeing space (or another place) is the fix.
SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# A result file's attributes (provenance), its timing table and HDF5's own structures.
OVERHEAD = 256 << 10
# One dataset or group in a file: object header, attributes, B-tree and heap entries.
PER_OBJECT = 16 << 10
# A checkpoint part file's own structures (as hpcapp.io.checkpoint.part_bytes counts them).
PART_OVERHEAD = 5 * PER_OBJECT
# Groupings whose bound on the number of groups is close to the real number.
TIGHT_GROUPS = ("month", "season", "dayofyear")
_ZEROS = 1 << 20  # block written where posix_fallocate is not supported
_EMPTY_H5: bytes | None = None


def megabytes(n_bytes: int) -> str:
    """Format a size for messages: ``12.3 MB`` (decimal megabytes, one decimal below 100)."""
    value = n_bytes / 1e6
    return f"{value:,.1f} MB" if value < 100 else f"{value:,.0f} MB"


def existing(path: str | Path) -> Path:
    """Return ``path``, or its nearest existing ancestor (a checkpoint not made yet)."""
    folder = Path(os.path.abspath(path))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def free_bytes(path: str | Path) -> int:
    """Return the bytes an unprivileged user may still write on the file system of ``path``."""
    stat = os.statvfs(existing(path))
    return stat.f_bavail * stat.f_frsize


def same_device(a: str | Path, b: str | Path) -> bool:
    """Return True if ``a`` and ``b`` (or their nearest existing ancestors) share a file system."""
    return os.stat(existing(a)).st_dev == os.stat(existing(b)).st_dev


def allocated(path: str | Path) -> int:
    """Return the bytes a file occupies on disk (a sparse file: only what was written)."""
    try:
        return os.stat(path).st_blocks * 512
    except OSError:
        return 0


def reason(exc: OSError) -> str:
    """Return what went wrong in words: ``no space left on device``, ``disk quota exceeded``."""
    if exc.errno:
        return os.strerror(exc.errno).lower()
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def fix_for(exc: OSError, folder: Path) -> str:
    """Return what the user should do about a failed write to ``folder``."""
    if exc.errno in SPACE_ERRNOS:
        return "free space"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"make {folder} writable"
    return "fix that"


def reserve(path: str | Path, n_bytes: int) -> None:
    """Allocate ``n_bytes`` behind the end of file ``path``; OSError if they do not fit."""
    fd = os.open(path, os.O_WRONLY)
    try:
        end = os.fstat(fd).st_size
        try:
            os.posix_fallocate(fd, end, max(n_bytes, 1))
        except OSError as exc:
            if exc.errno in SPACE_ERRNOS:
                raise
            _write_zeros(fd, end, n_bytes)  # a file system without fallocate (EOPNOTSUPP...)
    finally:
        os.close(fd)


def _write_zeros(fd: int, start: int, n_bytes: int) -> None:
    block = bytes(_ZEROS)
    position, end = start, start + n_bytes
    while position < end:
        position += os.pwrite(fd, block[: min(_ZEROS, end - position)], position)


def new_h5(path: str | Path, n_bytes: int) -> None:
    """Create an empty HDF5 file at ``path`` with ``n_bytes`` reserved; open it with mode "a".

    (Mode "w" would truncate the reservation away.)
    """
    global _EMPTY_H5
    if _EMPTY_H5 is None:
        import io

        import h5py

        image = io.BytesIO()
        h5py.File(image, "w").close()
        _EMPTY_H5 = image.getvalue()
    with open(path, "wb") as file:
        file.write(_EMPTY_H5)
    reserve(path, n_bytes)


def arrays_bytes(arrays: Iterable[Any]) -> int:
    """Return a bound on what HDF5 takes for these arrays: their bytes and their headers."""
    import numpy as np

    return sum(np.asarray(value).nbytes + PER_OBJECT for value in arrays)


@dataclasses.dataclass(frozen=True)
class Needs:
    """Bytes a job will write, estimated before any work (see :func:`estimate`)."""

    results: int  # the output's reduced results and their layout; a user kernel's count as 0
    rows: int  # per-row outputs: in the checkpoint's rows.h5 while running, then the output
    partial: int  # the combined partial kept in the checkpoint before the output is written


def estimate(kernel: Any, source: Any, params: dict[str, Any], grouping: Any = None) -> Needs:
    """Estimate the output and the checkpoint's needs from the kernel and the input's shapes.

    A built-in kernel is run on one row of zeros (as ``--memory-per-rank`` does): its finished
    results give the output's size per group, its per-row keys the bytes of a row. A user
    kernel is not called before the job (it may count its calls, or be slow): its results
    count as nothing here; per-row outputs are checked after its first chunk, and everything
    else when it is written. Groups count as many as there can be when that bound is close
    (months, seasons, days of year, ``--group-every`` blocks, ``--resample`` periods), else as
    one: where it cannot know, the estimate errs towards running the job, and the writer's
    reservation is the last check.
    """
    import numpy as np

    unknown = Needs(OVERHEAD, 0, PART_OVERHEAD)
    builtin = getattr(kernel.func, "__module__", "").startswith("hpcapp.kernels.")
    if not builtin or kernel.generates:  # generated data: the kernel takes no rows
        return unknown
    sample = np.zeros((1, *source.row_shape), dtype=np.dtype(source.values_dtype))
    try:
        one = dict(kernel.apply(sample, params, n_rows=1))
        row_bytes = sum(np.asarray(one.pop(key)).nbytes for key in kernel.per_row if key in one)
        finished = dict(kernel.finish(dict(one), params)) if one else {}
    except Exception:
        return unknown  # an estimate never stops a job: the writer checks again
    groups = 1
    if grouping is not None and (
        grouping.every or grouping.periods or grouping.component in TIGHT_GROUPS
    ):
        groups = grouping.max_groups(source.n_rows)
    results = groups * arrays_bytes(finished.values()) + OVERHEAD
    # Layout: a coordinate copied for each kept dimension (the records' for per-row outputs).
    kept = sum(source.row_shape) + (source.n_rows if kernel.per_row else 0)
    results += 16 * kept + PER_OBJECT * len(source.row_shape)
    partial = groups * arrays_bytes(one.values()) + PART_OVERHEAD
    return Needs(results, source.n_rows * row_bytes, partial)


def check_space(output: str, directory: str, needs: Needs, resuming: bool) -> None:
    """Refuse (UsageError) a job whose output or checkpoint cannot fit in the free space."""
    out_dir = existing(Path(output).parent if str(Path(output).parent) else ".")
    rows_file = Path(directory) / "rows.h5"
    rows_left = max(needs.rows - (allocated(rows_file) if resuming else 0), 0)
    keep = needs.partial + rows_left  # in the checkpoint
    if same_device(out_dir, directory):
        # rows.h5 becomes the output by a rename: its bytes count once.
        _refuse_unless(out_dir, needs.results + keep, f"{output} and its checkpoint")
        return
    _refuse_unless(out_dir, needs.results + needs.rows, output)  # rows.h5 is copied over
    _refuse_unless(existing(directory), keep, f"the checkpoint {directory} of {output}")


def _refuse_unless(folder: Path, needed: int, what: str) -> None:
    free = free_bytes(folder)
    if needed > free:
        raise UsageError(
            f"not enough space on {folder} for {what}: needs ~{megabytes(needed)}, "
            f"{megabytes(free)} free"
        )


def rows_check(directory: str, n_rows: int, rows: dict[str, Any]) -> str | None:
    """After a first chunk: say if the per-row outputs cannot fit in the checkpoint, else None.

    ``rows`` is one chunk's per-row arrays; what ``rows.h5`` already holds is not needed again.
    """
    row_bytes = sum(value.nbytes // max(len(value), 1) for value in rows.values())
    path = Path(directory) / "rows.h5"
    needed = max(n_rows * row_bytes - allocated(path), 0)
    free = free_bytes(directory)
    if needed <= free:
        return None
    return (
        f"not enough space on {existing(directory)} for the per-row outputs ({path.name}): needs "
        f"~{megabytes(needed)}, {megabytes(free)} free"
    )
