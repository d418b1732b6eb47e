"""Where chunks come from: an HDF5 dataset (checked once, on rank 0) or a seeded generator.

:func:`inspect_input` refuses, with one :class:`UsageError` naming the file and dataset, any
input that would not give the right numbers: a missing file, link target or virtual-dataset
source (HDF5 would read fill values), a compression filter that is not available, a dtype or
shape the kernels do not take. What it accepts, every rank reads the same way
(:func:`open_input`).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path
from typing import Any

from hpcapp.errors import UsageError

# Filters that `pip install hdf5plugin` provides (ids from the HDF Group's registry).
HDF5PLUGIN_FILTERS = {
    307: "bzip2",
    32001: "blosc",
    32004: "lz4",
    32008: "bitshuffle",
    32013: "zfp",
    32015: "zstd",
    32017: "sz",
    32018: "fcidecomp",
    32024: "sz3",
    32026: "blosc2",
    32028: "sperr",
    32033: "htj2k",
}
_NETCDF3_MAGIC = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
_LISTED = 20  # datasets listed when the asked-for one is missing
_MAX_DEPTH = 8  # links and virtual sources followed before giving up (a cycle?)


@dataclasses.dataclass(frozen=True)
class Source:
    """The shape of the rows to process and where they come from (picklable, small)."""

    n_rows: int
    row_shape: tuple[int, ...]
    dtype: str
    path: str | None = None  # None: a generating kernel makes its own rows
    dataset: str | None = None
    storage_chunk_rows: int | None = None
    file_id: tuple[int, int, int, int] | None = None  # (device, inode, size, mtime_ns)
    swmr: bool = False  # a writer had it open in SWMR mode: read in SWMR mode, n_rows rows only
    plugins: bool = False  # a filter comes from hdf5plugin: import it before reading

    @property
    def spec(self) -> str:
        """Return ``FILE:DATASET`` as recorded in provenance, or ``none``."""
        return f"{self.path}:{self.dataset}" if self.path else "none"

    @property
    def row_bytes(self) -> int:
        """Return the size of one row in bytes."""
        import numpy as np

        return int(np.dtype(self.dtype).itemsize * int(np.prod(self.row_shape, dtype=np.int64)))


def split_spec(spec: str) -> tuple[str, str]:
    """Split ``FILE.h5:/path/to/dataset`` at the last colon that precedes a slash."""
    path, sep, dataset = spec.rpartition(":")
    if not sep or not path or not dataset:
        raise UsageError(
            f"input {spec!r} must be FILE.h5:/path/to/dataset (e.g. data.h5:/temperature)"
        )
    return path, dataset if dataset.startswith("/") else "/" + dataset


def open_input(source: Source) -> Any:
    """Open the input file of ``source`` read-only, the way :func:`inspect_input` did."""
    import h5py

    if source.plugins:
        _import_hdf5plugin()
    return h5py.File(source.path, "r", locking=False, swmr=source.swmr)


def inspect_input(spec: str) -> Source:
    """Open the input read-only and check it can be processed; raise UsageError if not."""
    import numpy as np

    bare = spec[:-1] if spec.endswith(":") else spec
    if ":" not in bare or Path(bare).is_file():  # FILE alone: say which datasets it has
        path, dataset = bare, None
    else:
        path, dataset = split_spec(spec)
    file = _check_file(path)
    h5, swmr = _open(file)
    where = f"{path}:{dataset}"
    try:
        with h5:
            if dataset is None:
                example = (_datasets(h5, limit=1) or [("/DATASET",)])[0][0]
                raise UsageError(
                    f"input {path!r} names no dataset: add :/DATASET, e.g. "
                    f"{path}:{example}; {_listing(h5)}"
                )
            obj = _follow(h5, path, dataset)
            shape, dtype, chunks = _check_dataset(obj, where)
            plugins = _check_storage(obj, where, file, 0)
    except (OSError, RuntimeError, KeyError, ValueError) as exc:  # a damaged file, most likely
        raise UsageError(f"cannot read {where}: {type(exc).__name__}: {exc}") from None
    stat = file.stat()
    return Source(
        n_rows=int(shape[0]),
        row_shape=tuple(int(n) for n in shape[1:]),
        dtype=np.dtype(dtype).str,
        path=str(file),
        dataset=dataset,
        storage_chunk_rows=int(chunks[0]) if chunks else None,
        file_id=(stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns),
        swmr=swmr,
        plugins=plugins,
    )


def _check_file(path: str) -> Path:
    import h5py

    file = Path(path)
    if not file.exists():
        raise UsageError(f"input file {path!r} does not exist")
    if not file.is_file():
        raise UsageError(f"input {path!r} is not a file (a directory?)")
    if not os.access(file, os.R_OK):
        raise UsageError(f"input file {path!r} is not readable (check its permissions)")
    if not h5py.is_hdf5(file):
        with open(file, "rb") as stream:
            magic = stream.read(4)
        if magic in _NETCDF3_MAGIC:
            raise UsageError(
                f"input file {path!r} is a netCDF-3 file, not HDF5: convert it with "
                f"`nccopy -k nc4 {path} out.nc` and use out.nc:/VARIABLE"
            )
        raise UsageError(f"input file {path!r} is not an HDF5 file")
    return file


def _open(file: Path) -> tuple[Any, bool]:
    """Open read-only; a file a writer holds in SWMR mode is opened as a SWMR reader.

    Only here does hpcapp take HDF5's file lock (where the file system has locks): a writer
    that is not in SWMR mode holds it, and its half-written file is refused. The ranks read
    without locking, which some parallel file systems do not support.
    """
    import h5py

    busy = (
        f"input file '{file}' is open for writing by another program: wait until it is closed "
        "(or have the writer use SWMR mode)"
    )
    try:
        return h5py.File(file, "r", locking="best-effort"), False
    except OSError as exc:
        if "unable to lock" in str(exc):
            raise UsageError(busy) from None
        if "already open for write" not in str(exc):
            raise UsageError(f"cannot read input file '{file}': {exc}") from None
    try:
        return h5py.File(file, "r", locking="best-effort", swmr=True), True
    except OSError:
        raise UsageError(
            f"{busy}; if nothing writes it, a writer crashed: `h5clear -s` the file"
        ) from None


def _follow(h5: Any, path: str, dataset: str) -> Any:
    """Return the object at ``dataset``, naming the broken link or the missing name if not."""
    import h5py

    group = h5
    parts = [part for part in dataset.split("/") if part]
    for depth, part in enumerate(parts):
        here = "/" + "/".join(parts[: depth + 1])
        link = group.get(part, getlink=True) if isinstance(group, h5py.Group) else None
        if link is None:
            names = [name for name, _, _ in _datasets(h5)]
            close = difflib.get_close_matches(dataset, names, n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(repr(n) for n in close)}? " if close else ""
            raise UsageError(f"{path!r} has no dataset {dataset!r}: {hint}{_listing(h5)}")
        try:
            group = group[part]
        except (KeyError, OSError):
            raise UsageError(_broken_link(link, group.file.filename, f"{path}:{here}")) from None
    if not isinstance(group, h5py.Dataset):
        raise UsageError(f"{path}:{dataset} is a group, not a dataset ({_listing(h5)})")
    return group


def _broken_link(link: Any, parent_file: str, where: str) -> str:
    import h5py

    if isinstance(link, h5py.ExternalLink):
        found = locate(link.filename, parent_file, "HDF5_EXT_PREFIX")
        target = f"{link.filename}:{link.path}"
        if found is None:
            return (
                f"{where} is an external link to {target}, and file {link.filename!r} was not "
                f"found (looked beside '{parent_file}', in $HDF5_EXT_PREFIX and the current "
                "directory)"
            )
        return f"{where} is an external link to {target}: '{found}' has no readable {link.path}"
    if isinstance(link, h5py.SoftLink):
        return f"{where} is a soft link to {link.path}, which does not exist"
    return f"cannot open {where}"


def locate(name: str, parent_file: str, prefix_variable: str) -> Path | None:
    """Find the file an external link or virtual source names, searching as HDF5 does.

    An absolute name is tried first, then the name (without directories, if absolute) under
    each directory of ``$prefix_variable`` (``${ORIGIN}`` is the parent file's directory),
    beside the parent file, and in the current directory.
    """
    origin = Path(parent_file).resolve().parent
    given = Path(name)
    candidates = [given] if given.is_absolute() else []
    relative = Path(given.name) if given.is_absolute() else given
    for prefix in filter(None, os.environ.get(prefix_variable, "").split(os.pathsep)):
        candidates.append(Path(prefix.replace("${ORIGIN}", str(origin))) / relative)
    candidates += [origin / relative, relative]
    return next((c for c in candidates if c.is_file()), None)


def _check_dataset(obj: Any, where: str) -> tuple[tuple[int, ...], Any, Any]:
    """Return shape, dtype and chunks of a dataset hpcapp can process; raise if it cannot."""
    try:
        dtype = obj.dtype
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{where} has an HDF5 type hpcapp cannot read ({exc})") from None
    problem = _dtype_problem(dtype)
    if problem:
        raise UsageError(
            f"{where} has {problem} values (dtype {dtype}): hpcapp processes integer and "
            "float datasets (and bool)"
        )
    shape = obj.shape
    if shape is None:
        raise UsageError(f"{where} has an empty (null) dataspace: it holds no values")
    if shape == ():
        raise UsageError(f"{where} is a scalar (shape ()): hpcapp processes 1-D or 2-D datasets")
    if len(shape) > 2:
        raise UsageError(f"{where} has {len(shape)} dimensions: hpcapp takes 1-D or 2-D")
    if shape[0] == 0:
        raise UsageError(f"{where} is empty: 0 rows (shape {shape}), nothing to compute")
    if len(shape) == 2 and shape[1] == 0:
        raise UsageError(f"{where} is empty: 0 columns (shape {shape}), nothing to compute")
    return shape, dtype, obj.chunks


def _dtype_problem(dtype: Any) -> str | None:
    """Describe why values of ``dtype`` cannot be processed, or return None if they can."""
    import h5py

    if h5py.check_enum_dtype(dtype) is not None:
        return f"enum (of {dtype.base})"
    if dtype.kind in "iufb" and dtype.fields is None and dtype.subdtype is None:
        return None
    if dtype.kind == "c":
        return "complex"
    if dtype.kind in "SU":
        return "fixed-length string"
    if h5py.check_string_dtype(dtype) is not None:
        return "variable-length string"
    if h5py.check_ref_dtype(dtype) is not None:
        return "reference"
    if h5py.check_vlen_dtype(dtype) is not None:
        return "variable-length sequence"
    if dtype.fields is not None:
        return f"compound (fields {', '.join(list(dtype.fields)[:5])})"
    if dtype.subdtype is not None:
        return f"array ({dtype.subdtype[1]} of {dtype.subdtype[0]} per element)"
    if dtype.kind == "V":
        return "opaque"
    return "object"


def _check_storage(obj: Any, where: str, file: Path, depth: int) -> bool:
    """Check filters and virtual sources can be read; return True if hdf5plugin is needed."""
    import h5py

    if depth > _MAX_DEPTH:
        raise UsageError(f"{where}: virtual sources nest deeper than {_MAX_DEPTH} levels")
    plugins = _check_filters(obj, where)
    _check_external_storage(obj, where)
    if not obj.is_virtual:
        return plugins
    for source in obj.virtual_sources():
        name = source.file_name
        found = file if name == "." else locate(name, str(file), "HDF5_VDS_PREFIX")
        if found is None:
            raise UsageError(
                f"{where} is a virtual dataset whose source file {name!r} was not found "
                f"(looked beside '{file}', in $HDF5_VDS_PREFIX and the current directory): "
                "HDF5 would read fill values in its place"
            )
        origin = f"{found}:{source.dset_name}"
        try:
            with h5py.File(found, "r", locking=False) as h5:
                target = h5.get(source.dset_name)
                if not isinstance(target, h5py.Dataset):
                    raise UsageError(f"{where} is a virtual dataset with no source {origin}")
                plugins |= _check_storage(target, f"{where} (source {origin})", found, depth + 1)
        except OSError as exc:
            raise UsageError(f"{where}: cannot read its virtual source {origin}: {exc}") from None
    return plugins


def _check_external_storage(obj: Any, where: str) -> None:
    """Check the raw files of a dataset stored outside HDF5 are there and long enough.

    HDF5 finds them under ``$HDF5_EXTFILE_PREFIX`` if set, else relative to the current
    directory (not the HDF5 file's), and reads a short file's missing part as zeros.
    """
    plist = obj.id.get_create_plist()
    needed = obj.nbytes
    prefix = os.environ.get("HDF5_EXTFILE_PREFIX", "")
    prefix = prefix.replace("${ORIGIN}", str(Path(obj.file.filename).resolve().parent))
    for index in range(plist.get_external_count()):
        name, offset, size = plist.get_external(index)
        raw = Path(prefix) / os.fsdecode(name) if prefix else Path(os.fsdecode(name))
        take = min(size, needed)
        needed -= take
        if not raw.is_file() or raw.stat().st_size < offset + take:
            state = "not found" if not raw.is_file() else "shorter than the dataset needs"
            raise UsageError(
                f"{where} keeps its values in external raw file '{raw}', which is {state} "
                "(HDF5 looks in $HDF5_EXTFILE_PREFIX, else the current directory: "
                "HDF5_EXTFILE_PREFIX='${ORIGIN}' means beside the HDF5 file)"
            )


def _check_filters(obj: Any, where: str) -> bool:
    """Raise if a filter of ``obj`` is unavailable; return True if hdf5plugin provides one."""
    missing = unavailable_filters(obj)
    if missing and _import_hdf5plugin():
        missing = unavailable_filters(obj)
        if not missing:
            return True
    if missing:
        raise UsageError(f"{where} {missing[0]}")
    return False


def unavailable_filters(obj: Any) -> list[str]:
    """Describe each compression filter of a dataset that this process cannot apply."""
    from h5py import h5z

    plist = obj.id.get_create_plist()
    problems = []
    for index in range(plist.get_nfilters()):
        code, _, _, stored = plist.get_filter(index)
        if h5z.filter_avail(code):
            continue
        name = HDF5PLUGIN_FILTERS.get(code) or stored.decode(errors="replace")[:40] or "unknown"
        hint = "`pip install hdf5plugin`, or " if code in HDF5PLUGIN_FILTERS else ""
        problems.append(
            f"is compressed with filter {code} ({name}), which is not available: install it "
            f"with {hint}set HDF5_PLUGIN_PATH to the directory of its HDF5 plugin"
        )
    return problems


def _import_hdf5plugin() -> bool:
    """Register hdf5plugin's filters if it is installed (the ``hdf5plugin`` extra)."""
    try:
        import hdf5plugin  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def _datasets(h5: Any, limit: int = 1000) -> list[tuple[str, Any, Any]]:
    """Return (name, shape, dtype) of the first ``limit`` datasets of a file."""
    import h5py

    found: list[tuple[str, Any, Any]] = []

    def visit(name: str, obj: Any) -> bool | None:
        if isinstance(obj, h5py.Dataset):
            try:
                found.append(("/" + name, obj.shape, obj.dtype))
            except (TypeError, ValueError):  # a type h5py cannot map: list it anyway
                found.append(("/" + name, obj.shape, "?"))
        return True if len(found) >= limit else None

    h5.visititems(visit)
    return found


def _listing(h5: Any) -> str:
    found = _datasets(h5)
    if not found:
        return "the file has no datasets"
    shown = "; ".join(f"{name} {shape} {dtype}" for name, shape, dtype in found[:_LISTED])
    more = f"; ... ({len(found) - _LISTED} more)" if len(found) > _LISTED else ""
    return f"datasets: {shown}{more}"


def generated(n_rows: int) -> Source:
    """Describe the rows of a generating kernel (no input file)."""
    if n_rows < 1:
        raise UsageError(f"a generating kernel needs at least 1 row (sample), got {n_rows}")
    return Source(n_rows=n_rows, row_shape=(), dtype="<f8")
