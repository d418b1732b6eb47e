"""Many files as one dataset along axis 0: a quoted glob or an ``@list`` of files.

``'runs/out-*.h5:/t'`` takes the matching files in sorted name order; ``@files.txt:/t`` the
files listed one per line, in that order (blank lines and ``#`` comments skipped; relative paths
are relative to the current directory, as for the tools that read file lists on stdin).

The files are inspected by every rank, each a contiguous block of the list and one file open
at a time; rank 0 gathers the small descriptions and checks they agree (trailing shape, dtype,
CF decoding, the coordinates of the other dimensions). The first bad file in list order is
reported, whatever rank found it. Chunks cut the concatenated rows as they cut one dataset,
so a chunk may span several files: the chunk plan stays a function of the total rows only
(identical on any rank count, whatever the files' lengths), and thousands of small files do not
become thousands of tiny chunks. :class:`hpcapp.io.series.FileSeries` reads such a chunk file by
file, keeping one file open per rank.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from hpcapp.errors import UsageError
from hpcapp.partition import block
from hpcapp.source import Member, Source, inspect_dataset, split_spec

GLOB_CHARS = "*?["


def is_many(spec: str | None) -> bool:
    """Return whether ``spec`` names many files: ``@LIST:/dataset`` or a glob pattern."""
    if not spec or ":" not in spec:
        return False
    path = spec.rpartition(":")[0]
    if os.path.isfile(path):  # a file whose name has [ or *: itself, not a pattern
        return False
    return path.startswith("@") or any(char in path for char in GLOB_CHARS)


def expand(spec: str) -> tuple[list[str], str]:
    """Return the files (absolute paths, in order) and the dataset that ``spec`` names."""
    pattern, dataset = split_spec(spec)
    if pattern.startswith("@"):
        paths = _read_list(pattern[1:])
    else:
        paths = sorted(glob.glob(pattern, recursive=True))
        if not paths:
            raise UsageError(f"input pattern {pattern!r} matches no file")
    absolute = [os.path.abspath(path) for path in paths]
    seen: dict[str, int] = {}
    for index, path in enumerate(absolute):
        real = os.path.realpath(path)
        if real in seen:
            raise UsageError(
                f"input {pattern!r} names {paths[index]!r} twice (files {seen[real] + 1} and "
                f"{index + 1}): its records would be counted twice"
            )
        seen[real] = index
    return absolute, dataset


def _read_list(list_path: str) -> list[str]:
    try:
        text = Path(list_path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read the file list {list_path!r}: {exc.strerror}") from None
    paths = [line.strip() for line in text.splitlines()]
    paths = [path for path in paths if path and not path.startswith("#")]
    if not paths:
        raise UsageError(f"the file list {list_path!r} names no file")
    return paths


# The attributes of a variable that change what its values mean (hpcapp.io.cf reads them).
_MEANING_ATTRS = (
    "scale_factor", "add_offset", "_FillValue", "missing_value", "valid_min", "valid_max",
    "valid_range", "units", "_Unsigned",
)  # fmt: skip


def coordinates_of(path: str, dataset: str) -> list[tuple[int, str]]:
    """Return (axis, dataset path) of the coordinates of the non-record axes, in the first file.

    Read once, on rank 0: following dimension scales costs more than reading the values.
    """
    from hpcapp.io.dims import _scale_name
    from hpcapp.source import open_input

    found: list[tuple[int, str]] = []
    probe = Source(n_rows=0, row_shape=(), dtype="<f8", path=path, dataset=dataset)
    try:
        with open_input(probe) as h5:
            variable = h5[dataset]
            for axis in range(1, variable.ndim):
                _, coord = _scale_name(variable.dims[axis])
                if coord is not None and h5[coord].shape == (variable.shape[axis],):
                    found.append((axis, coord))
    except Exception:  # an unreadable first file: its own inspection says why
        return []
    return found


def label_path(path: str, dataset: str, group_by: str | None) -> str | None:
    """Return the dataset ``--group-by`` names in the first file, or None (reported later)."""
    if not group_by:
        return None
    from hpcapp.io.labels import _find, parse_group_by
    from hpcapp.source import open_input

    probe = Source(n_rows=0, row_shape=(), dtype="<f8", path=path, dataset=dataset)
    try:
        with open_input(probe) as h5:
            return _find(h5, dataset, parse_group_by(group_by)[0], group_by)
    except Exception:  # plan_grouping says what is wrong with the first file
        return None


def _labels_of(variable: Any, labels: str) -> list[Any] | None:
    """Describe a file's label dataset: one value per record?, dtype, time units and calendar."""
    import h5py

    try:
        found = h5py.Dataset(h5py.h5d.open(h5py.h5i.get_file_id(variable.id), labels.encode()))
    except (KeyError, ValueError, OSError):
        return None
    from hpcapp.io.cf import attr_text

    attrs = {name: attr_text(found.attrs.get(name)) for name in ("units", "calendar")}
    per_record = found.shape == (variable.shape[0],)
    return [per_record, found.dtype.kind, attrs["units"], attrs["calendar"]]


def _describer(coords: list[tuple[int, str]], labels: str | None = None) -> Any:
    """Return what describes one file for the agreement check: CF meaning and coordinates."""

    def describe(variable: Any) -> str:
        from hpcapp.io.cf import decoding_of

        names = [name for name in variable.attrs if name in _MEANING_ATTRS]
        attrs = {name: variable.attrs[name] for name in names}
        where = f"{variable.file.filename}:{variable.name}"
        cf = dataclasses.asdict(decoding_of(attrs, variable.dtype, where=where))
        values = {coord: _digest(variable, coord, axis) for axis, coord in coords}
        described: dict[str, Any] = {"cf": cf, "coords": values}
        if labels is not None:
            described["labels"] = [labels, _labels_of(variable, labels)]
        return json.dumps(described, sort_keys=True, default=str)

    return describe


def _digest(variable: Any, coord: str, axis: int) -> str | None:
    """Return a digest of coordinate ``coord``'s values, or None if the file has no such one.

    Read through h5py's low-level API: the high-level objects cost more than the read.
    """
    import h5py

    try:
        found = h5py.h5d.open(h5py.h5i.get_file_id(variable.id), coord.encode())
    except (KeyError, ValueError, OSError):
        return None
    if found.shape != (variable.shape[axis],):
        return None
    data = np.empty(found.shape, dtype=found.dtype)
    found.read(h5py.h5s.ALL, h5py.h5s.ALL, data)
    return hashlib.sha256(data.tobytes() + data.dtype.str.encode()).hexdigest()


def _inspect_member(
    path: str, dataset: str, coords: list[tuple[int, str]], labels: str | None
) -> tuple:
    """Inspect one file; return a small picklable description of it."""
    source, described = inspect_dataset(  # type: ignore[misc]
        path, dataset, allow_no_rows=True, describe=_describer(coords, labels)
    )
    member = Member(source.path, source.n_rows, source.file_id, source.swmr)
    storage = source.storage_chunk_rows
    return member, source.row_shape, source.dtype, storage, source.plugins, described


def inspect_many(comm: Any, spec: str, group_by: str | None = None) -> Source | None:
    """Inspect every file that ``spec`` names, spread over the ranks; collective (or comm None).

    Returns the Source on rank 0 (``None`` elsewhere); raises the same UsageError on every rank
    for an empty match, an unreadable file or a file that does not agree with the first.
    ``group_by`` (``--group-by``) names a label dataset every file must have alike, with one
    value per record (and the same time units and calendar).
    """
    from hpcapp.collective import on_root, raise_shared

    rank, size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)

    def listing() -> tuple[list[str], str, list[tuple[int, str]], str | None]:
        paths, dataset = expand(spec)
        labels = label_path(paths[0], dataset, group_by)
        return paths, dataset, coordinates_of(paths[0], dataset), labels

    paths, dataset, coords, labels = on_root(comm, listing) if comm is not None else listing()
    count, first = block(len(paths), size, rank)
    found: list[tuple] = []
    failure: tuple[int, str] | None = None
    for index in range(first, first + count):
        try:
            found.append(_inspect_member(paths[index], dataset, coords, labels))
        except UsageError as exc:
            failure = (index, str(exc))
            break
        except Exception as exc:  # a damaged file: report it, keep ranks in step
            failure = (index, f"cannot read {paths[index]}:{dataset}: {type(exc).__name__}: {exc}")
            break
    gathered = comm.gather((found, failure), root=0) if comm is not None else [(found, failure)]
    if comm is None:
        return _assemble(spec, dataset, len(paths), gathered)
    outcome = None
    if rank == 0:
        try:
            outcome = _assemble(spec, dataset, len(paths), gathered)
        except UsageError as exc:
            outcome = exc
    error = comm.bcast(outcome if isinstance(outcome, UsageError) else None, root=0)
    if error is not None:
        raise_shared(error)
    return outcome  # type: ignore[return-value]


def _assemble(spec: str, dataset: str, total: int, gathered: list) -> Source:
    """Check the ``total`` files agree and make one Source of them (rank 0)."""
    failures = [failure for _, failure in gathered if failure is not None]
    results = [item for found, _ in gathered for item in found]
    if failures:
        index, message = min(failures)
        raise UsageError(f"file {index + 1} of {total} of the input {spec!r}: {message}")
    first, row_shape, dtype, _, _, signature = results[0]
    for index, (member, shape, kind, _, _, described) in enumerate(results[1:], start=2):
        problem = None
        if shape != row_shape or kind != dtype:
            problem = (
                f"rows of shape {shape} and dtype {np.dtype(kind)}, but the first file "
                f"({first.path}) has {row_shape} and {np.dtype(dtype)}"
            )
        elif described != signature:
            problem = _difference(described, signature, first.path)
        if problem:
            raise UsageError(f"file {index} of {total} ({member.path}:{dataset}) has {problem}")
    n_rows = sum(member.n_rows for member, *_ in results)
    if n_rows == 0:
        raise UsageError(f"input {spec!r}: each of its {total} files holds 0 rows of {dataset}")
    storage = {item[3] for item in results if item[0].n_rows}
    pattern = spec.rpartition(":")[0]
    return Source(
        n_rows=n_rows,
        row_shape=row_shape,
        dtype=dtype,
        path=first.path,
        dataset=dataset,
        storage_chunk_rows=storage.pop() if len(storage) == 1 else None,
        file_id=first.file_id,
        swmr=first.swmr,
        plugins=any(item[4] for item in results),
        members=tuple(item[0] for item in results),
        pattern=pattern,
    )


def _difference(described: str, signature: str, first_path: str) -> str:
    """Say how a file's description differs from the first file's."""
    mine, first = json.loads(described), json.loads(signature)
    if mine["cf"] != first["cf"]:
        changed = sorted(k for k in first["cf"] if mine["cf"].get(k) != first["cf"][k])
        values = [mine["cf"][k] for k in changed]
        named = ", ".join(changed)
        return f"other CF attributes ({named}: {values}) than the first file ({first_path})"
    for coord, digest in first["coords"].items():
        if mine["coords"].get(coord) != digest:
            name = coord.lstrip("/")
            if mine["coords"].get(coord) is None:
                return f"no coordinate {name!r} of the length the first file ({first_path}) has"
            return f"other values of the coordinate {name!r} than the first file ({first_path})"
    if mine.get("labels") != first.get("labels"):
        name, found = mine["labels"]
        if found is None:
            return f"no dataset {name} (--group-by), which the first file ({first_path}) has"
        if not found[0]:
            return f"not one {name} label per record (--group-by), as the first file has"
        kind, units, calendar = found[1:]
        first_kind, first_units, first_calendar = first["labels"][1][1:]
        return (
            f"another {name} (--group-by) than the first file ({first_path}): dtype kind "
            f"{kind!r}, units {units!r}, calendar {calendar!r} instead of {first_kind!r}, "
            f"{first_units!r}, {first_calendar!r} (one time encoding for all files)"
        )
    return f"another description than the first file ({first_path})"
