"""Check that HDF5 can read a dataset's values rather than fill values or a filter error.

Virtual datasets read fill values where a source file is missing, and external raw files read
zeros past their end; a compression filter without its plugin fails only at the first read.
Each is refused here, before any work, naming the file and what is missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hpcapp.errors import UsageError
from hpcapp.io.names import locate

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
MAX_DEPTH = 8  # virtual sources followed before giving up (a cycle?)


def check_storage(obj: Any, where: str, file: Path, depth: int) -> bool:
    """Check filters and virtual sources can be read; return True if hdf5plugin is needed."""
    if depth > MAX_DEPTH:
        raise UsageError(f"{where}: virtual sources nest deeper than {MAX_DEPTH} levels")
    plugins = _check_filters(obj, where)
    _check_external_storage(obj, where)
    if not obj.is_virtual:
        return plugins
    checked: dict[tuple[Path, str], Any] = {}  # many mappings may share one source
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
        key = (found, source.dset_name)
        if key not in checked:
            checked[key], needs = _check_source(found, source.dset_name, where, depth)
            plugins |= needs
        _check_source_shape(source, checked[key], where, origin)
    return plugins


def _check_source(file: Path, name: str, where: str, depth: int) -> tuple[Any, bool]:
    """Check one source dataset of a virtual dataset; return its shape and plugin need."""
    import h5py

    origin = f"{file}:{name}"
    try:
        with h5py.File(file, "r", locking=False) as h5:
            target = h5.get(name)
            if not isinstance(target, h5py.Dataset):
                raise UsageError(f"{where} is a virtual dataset with no source {origin}")
            needs = check_storage(target, f"{where} (source {origin})", file, depth + 1)
            return target.shape, needs
    except OSError as exc:
        raise UsageError(f"{where}: cannot read its virtual source {origin}: {exc}") from None


def _check_source_shape(mapping: Any, shape: Any, where: str, origin: str) -> None:
    """Refuse a mapping that does not fit its source (HDF5 fails on the read)."""
    import math

    from h5py import h5s

    problem = None
    try:
        if mapping.src_space.get_select_type() == h5s.SEL_ALL:  # all of it: sizes must match
            needed = mapping.vspace.get_select_npoints()
            if shape is None or needed != math.prod(shape):
                problem = f"maps {needed} values from {origin}, which has shape {shape}"
        else:
            _, last = mapping.src_space.get_select_bounds()
            if shape is None or len(last) != len(shape) or any(map(int.__ge__, last, shape)):
                reach = tuple(i + 1 for i in last)
                problem = f"maps values up to {reach} of {origin}, which has shape {shape}"
    except (ValueError, RuntimeError):  # an unlimited selection: HDF5 reads what exists
        return
    if problem:
        raise UsageError(f"{where} is a virtual dataset that {problem}")


def _check_external_storage(obj: Any, where: str) -> None:
    """Check the raw files of a dataset stored outside HDF5 are there and long enough.

    HDF5 finds them under ``$HDF5_EXTFILE_PREFIX`` if set, else relative to the current
    directory (not the HDF5 file's), and reads a short file's missing part as zeros.
    """
    plist = obj.id.get_create_plist()
    needed = obj.nbytes
    prefix = os.environ.get("HDF5_EXTFILE_PREFIX", "")
    if "${ORIGIN}" in prefix:  # resolved only when used: inspecting 10,000 files adds up
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
    if missing and import_hdf5plugin():
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
            f"is compressed with filter {code} ({name}), which is not available: {hint}set "
            "HDF5_PLUGIN_PATH to the directory of its HDF5 plugin"
        )
    return problems


def import_hdf5plugin() -> bool:
    """Register hdf5plugin's filters if it is installed (the ``hdf5plugin`` extra)."""
    try:
        import hdf5plugin  # noqa: F401
    except (ImportError, OSError):
        return False
    return True
