"""Many files as one dataset along axis 0: a quoted glob or an ``@list`` of files.

``'runs/out-*.h5:/t'`` takes the matching files in sorted name order; ``@files.txt:/t`` the
files listed one per line, in that order (blank lines and ``#`` comments skipped; relative paths
are relative to the current directory, as for the tools that read file lists on stdin).

The files are inspected by every rank, each a contiguous block of the list and one file open
at a time; rank 0 gathers the small descriptions and checks they agree (trailing shape, dtype,
units and decoded dtype, the coordinates of the other dimensions); packing and fill values may
differ, each file then decoding its own way (ERA5). The first bad file in list order is
reported, whatever rank found it. Where the record dimension has a CF time coordinate, each file
decodes its own (units, calendar, packing, fill: :mod:`hpcapp.io.coding.times`), the calendars must
agree, and the times must increase across the files in the order taken (``--sort-files``: the
order of their first times): a duplicate or overlapping file is refused. Chunks cut the
concatenated rows as they cut one dataset, so a chunk may span several files: the chunk plan
stays a function of the total rows only (identical on any rank count, whatever the files'
lengths), and thousands of small files do not become thousands of tiny chunks.
:class:`hpcapp.io.series.FileSeries` reads such a chunk file by file, keeping one file open per
rank.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from hpcapp.errors import UsageError
from hpcapp.io.coding import times
from hpcapp.io.names import split_spec
from hpcapp.io.series import Member
from hpcapp.io.sources.checks import inspect_dataset
from hpcapp.io.sources.hdf5 import Hdf5Source, open_input
from hpcapp.io.sources.many import FilesSource, with_decodings

GLOB_CHARS = "*?["


def is_many(spec: str | None) -> TypeGuard[str]:
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


# What each file may decode its own way (xarray decodes each file of open_mfdataset alone): its
# packing and fill values. Its units, dtypes and the decoded dtype must be the first file's.
PER_FILE = ("missing", "scale_factor", "add_offset", "valid_min", "valid_max")
# The attributes of a variable that change what its values mean (io.coding.variables reads them).
_MEANING_ATTRS = (
    "scale_factor", "add_offset", "_FillValue", "missing_value", "valid_min", "valid_max",
    "valid_range", "units", "_Unsigned",
)  # fmt: skip


def coordinates_of(h5: Any, dataset: str) -> list[tuple[int, str]]:
    """Return (axis, dataset path) of the coordinates of the non-record axes, in the first file.

    Read once, on rank 0: following dimension scales costs more than reading the values.
    """
    from hpcapp.io.dims import scale_name

    found: list[tuple[int, str]] = []
    try:
        variable = h5[dataset]
        for axis in range(1, variable.ndim):
            _, coord = scale_name(variable.dims[axis])
            if coord is not None and h5[coord].shape == (variable.shape[axis],):
                found.append((axis, coord))
    except Exception:  # an unreadable first file: its own inspection says why
        return []
    return found


def label_path(h5: Any, dataset: str, group_by: str | None) -> str | None:
    """Return the dataset ``--group-by`` names in the first file, or None (reported later)."""
    if not group_by:
        return None
    from hpcapp.io.labels import _find, parse_group_by

    try:
        return _find(h5, dataset, parse_group_by(group_by)[0], group_by)
    except Exception:  # plan_grouping says what is wrong with the first file
        return None


def record_time(h5: Any, dataset: str) -> str | None:
    """Return the path of the record dimension's CF time coordinate in the first file, or None."""
    from hpcapp.io.coding.variables import attr_text
    from hpcapp.io.dims import scale_name

    try:
        variable = h5[dataset]
        _, coord = scale_name(variable.dims[0])
        if coord is None or h5[coord].shape != (variable.shape[0],):
            return None
        return coord if times.is_time_units(attr_text(h5[coord].attrs.get("units"))) else None
    except Exception:  # an unreadable first file: its own inspection says why
        return None


def _first_file(
    path: str, dataset: str, group_by: str | None
) -> tuple[str | None, list[tuple[int, str]], str | None]:
    """Return the first file's --group-by dataset, coordinates and record time: one open."""
    probe = Hdf5Source(n_rows=0, row_shape=(), dtype="<f8", path=path, dataset=dataset)
    try:
        h5 = open_input(probe)
    except Exception:  # an unreadable first file: its own inspection says why
        return None, [], None
    with h5:
        labels = label_path(h5, dataset, group_by)
        return labels, coordinates_of(h5, dataset), record_time(h5, dataset)


def _open_beside(variable: Any, path: str) -> Any:
    """Return the dataset at ``path`` in ``variable``'s file (h5py), or None."""
    import h5py

    try:
        return h5py.Dataset(h5py.h5d.open(h5py.h5i.get_file_id(variable.id), path.encode()))
    except (KeyError, ValueError, OSError):
        return None


def _labels_of(variable: Any, labels: str) -> list[Any] | None:
    """Describe a file's label dataset: one value per record?, and what its values are."""
    from hpcapp.io.coding.variables import attr_text

    found = _open_beside(variable, labels)
    if found is None:
        return None
    per_record = found.shape == (variable.shape[0],)
    units = attr_text(found.attrs.get("units"))
    if times.is_time_units(units):  # each file decodes its own: only that it is one matters
        return [per_record, "", "a CF time coordinate"]
    return [per_record, found.dtype.kind, f"dtype kind {found.dtype.kind!r}, units {units!r}"]


def _time_of(variable: Any, path: str, role: str) -> tuple[Any, times.Span]:
    """Return how this file encodes the times in ``path``, and the dates they span."""
    where = f"{variable.file.filename}:{path}"
    found = _open_beside(variable, path)
    if found is None or found.shape != (variable.shape[0],):
        shape = None if found is None else found.shape
        raise UsageError(
            f"{where} ({role}) is missing or not one value per record (shape {shape}), though "
            "the first file has it: every file needs its times, to be read in order"
        )
    attrs = {name: found.attrs[name] for name in times.TIME_ATTRS if name in found.attrs}
    try:
        encoding = times.encoding_of(attrs, found.dtype)
        if encoding is None:
            raise ValueError(f"units {attrs.get('units')!r} are not CF time units")
        return encoding, times.span_of(encoding, found[()])
    except (ValueError, OverflowError, TypeError) as exc:
        raise UsageError(f"{where} ({role}): {exc}") from None


def _describer(
    coords: list[tuple[int, str]], labels: str | None = None, mask_valid_range: bool = False
) -> Any:
    """Return what describes one file for the agreement check: CF meaning and coordinates."""

    def describe(variable: Any) -> str:
        from hpcapp.io.coding.variables import decoding_of

        names = [name for name in variable.attrs if name in _MEANING_ATTRS]
        attrs = {name: variable.attrs[name] for name in names}
        where = f"{variable.file.filename}:{variable.name}"
        decoding = decoding_of(
            attrs, variable.dtype, where=where, mask_valid_range=mask_valid_range
        )
        cf = dataclasses.asdict(decoding)
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


@dataclasses.dataclass(frozen=True)
class Listing:
    """What rank 0 finds in the first file and every rank needs to inspect the others."""

    paths: list[str]
    dataset: str
    coords: list[tuple[int, str]]
    labels: str | None  # the --group-by dataset
    record: str | None  # the record dimension's CF time coordinate
    group_by: str | None = None
    mask_valid_range: bool = False  # valid_* then change the values: files must agree on them


def _inspect_member(listing: Listing, path: str) -> tuple:
    """Inspect one file; return a small picklable description of it."""
    from hpcapp.io.coding.variables import attr_text
    from hpcapp.io.labels import check_along

    describe_cf = _describer(listing.coords, listing.labels, listing.mask_valid_range)

    def describe(variable: Any) -> tuple[str, tuple, times.Span | None]:
        described = describe_cf(variable)
        found, span = [], None
        if listing.record is not None:
            encoding, span = _time_of(variable, listing.record, "the record coordinate")
            found.append((listing.record, encoding))
        labels = listing.labels
        label = None if labels is None else _open_beside(variable, labels)
        if labels is not None and label is not None and label.shape == (variable.shape[0],):
            by = str(listing.group_by)
            check_along(variable, label, by, f"{variable.file.filename}:{labels}")
            units = attr_text(label.attrs.get("units"))
            if labels != listing.record and times.is_time_units(units):
                found.append((labels, _time_of(variable, str(labels), f"--group-by {by}")[0]))
        return described, tuple(found), span

    source, (described, encodings, span) = inspect_dataset(
        path, listing.dataset, allow_no_rows=True, describe=describe
    )
    assert source.file_id is not None  # inspected
    member = Member(source.path, source.n_rows, source.file_id, source.swmr, encodings, span)
    storage = source.storage_chunk_rows
    return member, source.row_shape, source.dtype, storage, source.plugins, described, span


def make_listing(spec: str, group_by: str | None = None, mask_valid_range: bool = False) -> Listing:
    """Expand ``spec`` and read what every file is compared with from the first (rank 0)."""
    paths, dataset = expand(spec)
    labels, coords, record = _first_file(paths[0], dataset, group_by)
    return Listing(paths, dataset, coords, labels, record, group_by, mask_valid_range)


def inspect_share(listing: Listing, first: int, count: int) -> tuple[list[tuple], Any]:
    """Inspect files ``first .. first + count - 1``; stop at the first bad one.

    Returns the descriptions and ``(index, message)`` of the bad file, or None.
    """
    found: list[tuple] = []
    for index in range(first, first + count):
        path = listing.paths[index]
        try:
            found.append(_inspect_member(listing, path))
        except UsageError as exc:
            return found, (index, str(exc))
        except Exception as exc:  # a damaged file: report it, keep ranks in step
            return found, (
                index,
                f"cannot read {path}:{listing.dataset}: {type(exc).__name__}: {exc}",
            )
    return found, None


def assemble(spec: str, listing: Listing, gathered: list, sort_files: bool) -> FilesSource:
    """Check the files agree and make one Source of them (rank 0)."""
    dataset, total = listing.dataset, len(listing.paths)
    failures = [failure for _, failure in gathered if failure is not None]
    results = [item for found, _ in gathered for item in found]
    if failures:
        index, message = min(failures)
        raise UsageError(f"file {index + 1} of {total} of the input {spec!r}: {message}")
    first, row_shape, dtype, _, _, signature, _ = results[0]
    for index, (member, shape, kind, _, _, described, _) in enumerate(results[1:], start=2):
        problem = None
        if shape != row_shape or kind != dtype:
            problem = (
                f"rows of shape {shape} and dtype {np.dtype(kind)}, but the first file "
                f"({first.path}) has {row_shape} and {np.dtype(dtype)}"
            )
        elif _shared(described) != _shared(signature):
            problem = _difference(described, signature, first.path)
        if problem:
            raise UsageError(f"file {index} of {total} ({member.path}:{dataset}) has {problem}")
    n_rows = sum(member.n_rows for member, *_ in results)
    if n_rows == 0:
        raise UsageError(f"input {spec!r}: each of its {total} files holds 0 rows of {dataset}")
    if listing.record is not None:
        dated = [(m.path, dict(m.times)[listing.record], span) for m, *_, span in results]
        results = [results[i] for i in times.file_order(dated, listing.record, sort_files)]
    elif sort_files:
        raise UsageError(
            f"--sort-files: {first.path}:{dataset} has no CF time coordinate along its record "
            "dimension to sort the files by"
        )
    coders = [json.loads(item[5])["cf"] for item in results]
    members = with_decodings([item[0] for item in results], coders)
    first = members[0]
    storage = {item[3] for item in results if item[0].n_rows}
    pattern = spec.rpartition(":")[0]
    return FilesSource(
        n_rows=n_rows,
        row_shape=row_shape,
        dtype=dtype,
        path=first.path,
        dataset=dataset,
        storage_chunk_rows=storage.pop() if len(storage) == 1 else None,
        file_id=first.file_id,
        swmr=first.swmr,
        plugins=any(item[4] for item in results),
        members=tuple(members),
        pattern=pattern,
    )


def _shared(described: str) -> dict[str, Any]:
    """Return what every file must agree on: its description but its own packing and fills."""
    found = json.loads(described)
    found["cf"] = {k: v for k, v in found["cf"].items() if k not in PER_FILE}
    return found


def _difference(described: str, signature: str, first_path: str) -> str:
    """Say how a file's description differs from the first file's."""
    mine, first = _shared(described), _shared(signature)
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
        return (
            f"another {name} (--group-by) than the first file ({first_path}): {found[2]} "
            f"instead of {first['labels'][1][2]}"
        )
    return f"another description than the first file ({first_path})"
