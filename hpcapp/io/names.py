"""Find the dataset an input names: follow its links, or say what the file holds instead."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from hpcapp.errors import UsageError

# What netCDF-4 writes in the NAME attribute of a dimension that has no coordinate variable.
NETCDF_DIM_ONLY = "This is a netCDF dimension but not a netCDF variable."

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
            close = difflib.get_close_matches(dataset, data_variables(h5), n=3, cutoff=0.6)
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


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def kinds(h5: Any, limit: int = 1000) -> dict[str, str]:
    """Return what each of the first ``limit`` datasets is: data, coordinate, bounds, dimension.

    netCDF-4 stores a dimension without values as a placeholder dataset (``bnds``), and a
    coordinate variable (``lat``) as a dimension scale; CF names bounds variables (``lat_bnds``)
    in a ``bounds`` (or ``climatology``) attribute. The rest are data variables.
    """
    import h5py

    found: dict[str, str] = {}
    named: set[str] = set()

    def visit(name: str, obj: Any) -> bool | None:
        if isinstance(obj, h5py.Dataset):
            attrs = obj.attrs
            kind = "data"
            if _text(attrs.get("CLASS", "")) == "DIMENSION_SCALE":
                placeholder = _text(attrs.get("NAME", "")).startswith(NETCDF_DIM_ONLY)
                kind = "dimension" if placeholder else "coordinate"
            found["/" + name] = kind
            parent = "/" + name.rpartition("/")[0]
            for key in ("bounds", "climatology"):
                if key in attrs:
                    target = _text(attrs[key]).strip()
                    named.add(
                        target if target.startswith("/") else f"{parent.rstrip('/')}/{target}"
                    )
        return True if len(found) >= limit else None

    h5.visititems(visit)
    return {
        name: "bounds" if name in named and kind == "data" else kind for name, kind in found.items()
    }


def data_variables(h5: Any, limit: int = 1000) -> list[str]:
    """Return the names of the data variables (what an input is meant to name), in order."""
    return [name for name, kind in kinds(h5, limit).items() if kind == "data"]


def listing(h5: Any, limit: int = 1000) -> str:
    """Return ``data variables: NAME SHAPE DTYPE; ...`` (then the others by name), on one line.

    Without netCDF coordinates or bounds every dataset is data: ``datasets: ...``.
    """
    found = datasets(h5, limit)
    if not found:
        return "the file has no datasets"
    kind = kinds(h5, limit)
    data = [item for item in found if kind.get(item[0]) == "data"]
    others = [name for name, _, _ in found if kind.get(name) in ("coordinate", "bounds")]
    shown = "; ".join(f"{name} {shape} {dtype}" for name, shape, dtype in data[:LISTED])
    at_least = "at least " if len(found) == limit else ""
    more = f"; ... ({at_least}{len(data) - LISTED} more)" if len(data) > LISTED else ""
    if not others and len(data) == len(found):
        return f"datasets: {shown}{more}"
    also = f"; coordinates and bounds: {', '.join(others)}" if others else ""
    return f"data variables: {shown or 'none'}{more}{also}"
