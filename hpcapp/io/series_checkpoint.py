"""The checkpoint of a series job: each finished batch of cells, kept so a job can resume.

A series job (:mod:`hpcapp.parallel.transpose`) does its cells in batches of slabs along the
second dimension. Its checkpoint is the directory of a record job's (default
``OUT.h5.checkpoint``, ``--checkpoint DIR``): the same ``manifest.json`` naming the job
(:func:`hpcapp.io.checkpoint.job_identity`: input, kernel, parameters, code), and one HDF5 file
per finished batch, ``slabs-FIRST-END.h5``, written by rank 0 atomically (a temporary file,
then a rename) once the batch's results are gathered. Each holds every result of its slabs
``[FIRST, END)``, cells last, as gathered (float64). A cell's results depend on its own series
alone, so a resume on any rank count (hence with other batches) computes the slabs no file
holds and joins them with the kept ones: the same bits as a run never interrupted.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from hpcapp.errors import UsageError
from hpcapp.io import checkpoint, space

PATTERN = re.compile(r"slabs-(\d{9})-(\d{9})\.h5")
Run = tuple[int, int]  # [first, end) slabs of the second dimension


def batch_path(directory: str, first: int, end: int) -> Path:
    """Return the file of the finished batch of slabs ``[first, end)``."""
    return Path(directory) / f"slabs-{first:09d}-{end:09d}.h5"


def write_batch(directory: str, first: int, end: int, results: dict[str, np.ndarray]) -> None:
    """Keep one batch's gathered results (rank 0), atomically: a temporary file, then a rename.

    The room is reserved first (:mod:`hpcapp.io.space`): a full disk raises OSError before
    HDF5 writes, and nothing half-written is ever named as a batch.
    """
    import h5py

    final = batch_path(directory, first, end)
    temporary = final.with_name(f".{final.name}.tmp")
    try:
        arrays = list(results.values())
        space.new_h5(temporary, space.arrays_bytes(arrays) + space.PER_OBJECT * (len(arrays) + 4))
        with h5py.File(temporary, "a") as h5:
            h5.attrs["first"], h5.attrs["end"] = first, end
            for key, value in results.items():
                h5.create_dataset(key, data=np.ascontiguousarray(value, np.float64))
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)


def finished_batches(directory: str) -> list[str]:
    """Return the batch files of a checkpoint directory, in slab order (none: ``[]``)."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if PATTERN.fullmatch(p.name)]
    return [str(p) for p in sorted(found, key=lambda p: run_of(str(p)))]


def run_of(path: str) -> Run:
    """Return the slabs ``[first, end)`` a batch file holds (from its name)."""
    matched = PATTERN.fullmatch(Path(path).name)
    assert matched is not None
    return int(matched.group(1)), int(matched.group(2))


def check_batches(directory: str, paths: list[str], n_slabs: int, cells: int) -> None:
    """Refuse batch files that do not fit the job: out of range, overlapping, unlike each other.

    ``cells`` is the cells of one slab. Reads only the files' headers.
    """
    import h5py

    end_before, leads_before = 0, None
    for path in paths:  # by their names first: which slabs they hold
        first, end = run_of(path)
        if not 0 <= first < end <= n_slabs:
            _inconsistent(directory, path, f"holds slabs {first}-{end - 1}, beyond the {n_slabs} "
                          "of the input")  # fmt: skip
        if first < end_before:
            _inconsistent(directory, path, "overlaps the batch before it")
        end_before = end
    for path in paths:  # then what they hold
        first, end = run_of(path)
        try:
            with h5py.File(path, "r", locking=False) as h5:
                found = {key: h5[key].shape for key in h5}
        except OSError as exc:
            _inconsistent(directory, path, f"is unreadable ({exc})")
        counts = {shape[-1] if shape else -1 for shape in found.values()}
        if not found or counts != {(end - first) * cells}:
            _inconsistent(directory, path, "does not hold one value per cell of its slabs")
        leads = {key: shape[:-1] for key, shape in found.items()}
        if leads_before is not None and leads != leads_before:
            _inconsistent(directory, path, "holds other results than the batch before it")
        leads_before = leads


def _inconsistent(directory: str, path: str, why: str) -> NoReturn:
    raise UsageError(
        f"checkpoint {directory!r} is inconsistent: {Path(path).name} {why}. Run with "
        "--overwrite instead of --resume to start over"
    )


def read_batches(paths: list[str]) -> list[tuple[Run, dict[str, np.ndarray]]]:
    """Return each kept batch's slabs and results (rank 0, at the end of the job)."""
    import h5py

    found = []
    for path in paths:
        with h5py.File(path, "r", locking=False) as h5:
            found.append((run_of(path), {key: h5[key][()] for key in h5}))
    return found


def start(directory: str, identity: dict[str, Any]) -> None:
    """Start (or take over) the checkpoint: its manifest names the job; unfinished writes go."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    for stray in Path(directory).glob(".slabs-*.h5.tmp"):
        stray.unlink(missing_ok=True)
    checkpoint.write_manifest(directory, identity, 0)


def slabs_text(runs: list[Run]) -> str:
    """Return runs of slabs as ``0-3, 8-9`` (neighbouring runs joined)."""
    joined: list[list[int]] = []
    for first, end in sorted(runs):
        if joined and joined[-1][1] == first:
            joined[-1][1] = end
        else:
            joined.append([first, end])
    return ", ".join(f"{a}-{b - 1}" if b - a > 1 else str(a) for a, b in joined)
