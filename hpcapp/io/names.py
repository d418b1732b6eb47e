"""Find the dataset an input names: follow its links, or say what the file holds instead."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from hpcapp.errors import UsageError

LISTED = 20  # datasets listed when the asked-for one is missing


def split_spec(spec: str) -> tuple[str, str]:
    """Split ``FILE.h5:/path/to/dataset`` at the last colon that precedes a slash."""
    path, sep, dataset = spec.rpartition(":")
    if not sep or not path or not dataset:
        raise UsageError(
            f"input {spec!r} must be FILE.h5:/path/to/dataset (e.g. data.h5:/temperature)"
        )
    return path, dataset if dataset.startswith("/") else "/" + dataset


def follow(h5: Any, path: str, dataset: str) -> Any:
    """Return the object at ``dataset``, naming the broken link or the missing name if not."""
    import h5py

    group = h5
    parts = [part for part in dataset.split("/") if part]
    for depth, part in enumerate(parts):
        here = "/" + "/".join(parts[: depth + 1])
        link = group.get(part, getlink=True) if isinstance(group, h5py.Group) else None
        if link is None:
            names = [name for name, _, _ in datasets(h5)]
            close = difflib.get_close_matches(dataset, names, n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(repr(n) for n in close)}? " if close else ""
            raise UsageError(f"{path!r} has no dataset {dataset!r}: {hint}{listing(h5)}")
        try:
            group = group[part]
        except (KeyError, OSError):
            raise UsageError(_broken_link(link, group.file.filename, f"{path}:{here}")) from None
    if not isinstance(group, h5py.Dataset):
        raise UsageError(f"{path}:{dataset} is a group, not a dataset ({listing(h5)})")
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


def datasets(h5: Any, limit: int = 1000) -> list[tuple[str, Any, Any]]:
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


def listing(h5: Any, limit: int = 1000) -> str:
    """Return ``datasets: NAME SHAPE DTYPE; ...`` for the first few datasets, on one line."""
    found = datasets(h5, limit)
    if not found:
        return "the file has no datasets"
    shown = "; ".join(f"{name} {shape} {dtype}" for name, shape, dtype in found[:LISTED])
    at_least = "at least " if len(found) == limit else ""
    more = f"; ... ({at_least}{len(found) - LISTED} more)" if len(found) > LISTED else ""
    return f"datasets: {shown}{more}"
