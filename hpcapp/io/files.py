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
become thousands of tiny chunks. :class:`FileSeries` reads such a chunk file by file, keeping
one file open per rank.
"""

from __future__ import annotations

import bisect
import dataclasses
import glob
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from hpcapp.errors import UsageError
from hpcapp.partition import block
from hpcapp.source import Member, Source, inspect_dataset, split_spec

GLOB_CHARS = "*?["
FILES_PER_CHUNK = 32  # on average, at most, in a default chunk (see files_chunk_rows)


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
    from hpcapp.io.cf import _text

    attrs = {name: _text(found.attrs.get(name)) for name in ("units", "calendar")}
    per_record = found.shape == (variable.shape[0],)
    return [per_record, found.dtype.kind, attrs["units"], attrs["calendar"]]


def _describer(coords: list[tuple[int, str]], labels: str | None = None) -> Any:
    """Return what describes one file for the agreement check: CF meaning and coordinates."""

    def describe(variable: Any) -> str:
        from hpcapp.io.cf import decoding_of

        names = [name for name in variable.attrs if name in _MEANING_ATTRS]
        attrs = {name: variable.attrs[name] for name in names}
        cf = dataclasses.asdict(decoding_of(attrs, variable.dtype, raw=False))
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


def files_chunk_rows(source: Source) -> int:
    """Return the most rows a default chunk of a many-file input takes: ~FILES_PER_CHUNK files.

    Opening a file costs about as much as reading a megabyte, so a chunk of many tiny files is
    mostly opening them: capping the files per chunk keeps chunks many enough to share out.
    """
    mean_rows = source.n_rows / max(1, len(source.members))
    return max(1, math.ceil(mean_rows * FILES_PER_CHUNK))


def identity(source: Source) -> dict[str, Any]:
    """Return what of a many-file input a checkpoint must match: each file, its rows and stamp."""
    if not source.members:
        return {}
    listing = [[m.path, m.n_rows, m.file_id[2], m.file_id[3]] for m in source.members]
    digest = hashlib.sha256(json.dumps(listing).encode()).hexdigest()
    return {"input_files": {"count": len(listing), "sha256": digest}}


def write_file_table(h5: Any, source: Source) -> None:
    """Record the files of a many-file input in ``/input_files``: path, rows, size, mtime."""
    if not source.members:
        return
    import h5py

    group = h5.create_group("input_files")
    n = len(source.members)
    group.attrs["pattern"] = source.spec
    group.attrs["description"] = "the input files, in the order their rows were concatenated"
    scale = group.create_dataset("file", data=np.arange(n, dtype=np.int64))
    scale.make_scale("file")
    columns = {
        "path": np.array([m.path for m in source.members], dtype=h5py.string_dtype()),
        "n_rows": np.array([m.n_rows for m in source.members], np.int64),
        "size": np.array([m.file_id[2] for m in source.members], np.int64),
        "mtime_ns": np.array([m.file_id[3] for m in source.members], np.int64),
    }
    for name, values in columns.items():
        column = group.create_dataset(name, data=values)
        column.dims[0].attach_scale(scale)
    group["size"].attrs["units"] = "bytes"
    group["mtime_ns"].attrs["long_name"] = "modification time, ns since 1970-01-01 UTC"


class FileSeries:
    """Rows of one dataset across many files, read with ``read_direct`` like an h5py Dataset.

    Opens one file at a time (the next chunk usually starts in the file the last one ended in),
    through h5py's low-level API: opening a small file that way costs half as much. A file that
    no longer has the rows it had at inspection is an error naming it.
    """

    def __init__(self, source: Source) -> None:
        self.source = source
        self.starts = [0]
        for member in source.members:
            self.starts.append(self.starts[-1] + member.n_rows)
        self._index: int | None = None
        self._file: Any = None
        self._datasets: dict[str, Any] = {}
        if source.plugins:
            from hpcapp.io.storage import import_hdf5plugin

            import_hdf5plugin()

    def __enter__(self) -> FileSeries:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the open file, if any."""
        for dataset in self._datasets.values():
            dataset.close()
        if self._file is not None:
            self._file.close()
        self._index, self._file, self._datasets = None, None, {}

    def read_direct(self, dest: np.ndarray, selection: slice) -> None:
        """Read rows ``selection.start:selection.stop`` of the input dataset into ``dest``."""
        self.read_rows(self.source.dataset, dest, selection.start, selection.stop)

    def read_rows(self, name: str | None, dest: np.ndarray, start: int, stop: int) -> None:
        """Read rows ``[start, stop)`` of dataset ``name`` (one value per record) into ``dest``."""
        import h5py

        index = bisect.bisect_right(self.starts, start) - 1
        position = start
        while position < stop:
            first, end = self.starts[index], self.starts[index + 1]
            if end > position:
                n = min(stop, end) - position
                dataset = self._dataset(index, name)
                target = dest[position - start : position - start + n]
                try:
                    space = dataset.get_space()
                    space.select_hyperslab(
                        (position - first, *[0] * (target.ndim - 1)), target.shape
                    )
                    dataset.read(h5py.h5s.create_simple(target.shape), space, target)
                except Exception as exc:
                    path = self.source.members[index].path
                    raise OSError(f"{path}: {_why(h5py.Dataset(dataset), exc)}") from exc
                position += n
            index += 1

    def _dataset(self, index: int, name: str | None) -> Any:
        import h5py

        member = self.source.members[index]
        if self._index != index:
            self.close()
            self._file, self._index = _open_file(member), index
        if name not in self._datasets:
            dataset = h5py.h5d.open(self._file, str(name).encode())
            shape = dataset.shape
            if shape[0] < member.n_rows:
                raise OSError(
                    f"{member.path}:{name} now has shape {shape}, not ({member.n_rows}, ...) as "
                    "when the job started: was the file replaced?"
                )
            if name == self.source.dataset and tuple(shape[1:]) != self.source.row_shape:
                raise OSError(f"{member.path}:{name} now has shape {shape}: was it replaced?")
            self._datasets[name] = dataset
        return self._datasets[name]


def _open_file(member: Member) -> Any:
    """Open one file read-only without locking (as the ranks read), SWMR if it was written so."""
    import h5py

    flags = h5py.h5f.ACC_RDONLY | (h5py.h5f.ACC_SWMR_READ if member.swmr else 0)
    access = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    if hasattr(access, "set_file_locking"):
        access.set_file_locking(False, True)
    try:
        return h5py.h5f.open(member.path.encode(), flags, access)
    except OSError as exc:
        if "locking flag" not in str(exc):  # open already in this process, with locking
            raise
        access = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
        return h5py.h5f.open(member.path.encode(), flags, access)


def _why(dataset: Any, exc: Exception) -> str:
    from hpcapp.io.storage import unavailable_filters

    try:
        missing = unavailable_filters(dataset)
    except Exception:  # the file is unreadable: the error says more
        missing = []
    return f"the dataset {missing[0]}" if missing else f"{type(exc).__name__}: {exc}"
