"""Dimension names, coordinates and ``--over`` of an N-D input (rank 0, before any work).

Names come from the input's dimension scales (netCDF-4 files have them), else from ``--dims``,
else ``dim_0, dim_1, ...``. A dimension's coordinate variable is the scale attached to it when
that scale is a variable of the dimension's length (netCDF's placeholder scales are not).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hpcapp.errors import UsageError
from hpcapp.io.source import Source, split_spec

# netCDF-4 marks a dimension with no coordinate variable by a scale with this NAME.
NETCDF_DIM_ONLY = "This is a netCDF dimension but not a netCDF variable."
# The first bytes of netCDF-3 files (classic, 64-bit offset, 64-bit data): not HDF5.
NETCDF3_MAGIC = (b"CDF\x01", b"CDF\x02", b"CDF\x05")


def refuse_netcdf3(spec: str) -> None:
    """Raise UsageError with the conversion command if the input is a netCDF-3 file."""
    try:
        path, _ = split_spec(spec)
    except UsageError:
        return  # no :/dataset: inspect_input lists the file's datasets
    try:
        with open(path, "rb") as file:
            magic = file.read(4)
    except OSError:
        return  # inspect_input reports a missing or unreadable file
    if magic in NETCDF3_MAGIC:
        raise UsageError(
            f"input file {path!r} is a netCDF-3 (classic) file, not HDF5: convert it with "
            f"`nccopy -k nc4 {path} converted.nc` and pass converted.nc"
        )


def _scale_name(dim: Any) -> tuple[str | None, str | None]:
    """Return (dimension name, coordinate dataset) from a dimension's first attached scale."""
    import h5py

    if len(dim) == 0:
        return (dim.label or None), None
    scale = dim[0]
    name = scale.name.rsplit("/", 1)[-1]
    placeholder = str(_attr_text(scale.attrs.get("NAME", ""))).startswith(NETCDF_DIM_ONLY)
    is_coord = isinstance(scale, h5py.Dataset) and scale.ndim == 1 and not placeholder
    return name, (scale.name if is_coord else None)


def _attr_text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _parse_names(text: str | None, ndim: int) -> list[str] | None:
    if not text:
        return None
    names = [n.strip() for n in text.split(",")]
    if len(names) != ndim or not all(n.isidentifier() for n in names) or len(set(names)) < ndim:
        raise UsageError(
            f"--dims needs {ndim} distinct names (identifiers) for a {ndim}-D input, "
            f"comma-separated (e.g. {','.join(f'dim_{i}' for i in range(ndim))}), got {text!r}"
        )
    return names


def describe(
    source: Source, dims_option: str | None, raw: bool, mask_valid_range: bool = False
) -> Source:
    """Return ``source`` with its dimension names, coordinates and CF decoding filled in."""
    from hpcapp.io.cf import decoding_of
    from hpcapp.io.source import open_input

    ndim = 1 + len(source.row_shape)
    given = _parse_names(dims_option, ndim)
    with open_input(source) as h5:  # as inspect_input opened it (SWMR, plugins, locking)
        dataset = h5[source.dataset]
        found = [_scale_name(dataset.dims[i]) for i in range(ndim)]
        shape = dataset.shape
        coords: list[str | None] = []
        for i, (_, coord) in enumerate(found):
            ok = (
                coord is not None
                and h5[coord].shape == (shape[i],)
                and h5[coord].dtype.kind in "iuf"
            )
            coords.append(coord if ok else None)
        attrs = dict(dataset.attrs)
        where = f"{source.path}:{source.dataset}"
        decoding = decoding_of(
            attrs, dataset.dtype, raw, where=where, mask_valid_range=mask_valid_range
        )
    names = []
    for i, (name, _) in enumerate(found):
        if name and given and given[i] != name:
            raise UsageError(
                f"{source.spec} names its dimension {i} {name!r}, but --dims says "
                f"{given[i]!r}: --dims is for inputs that do not name their dimensions"
            )
        names.append(name or (given[i] if given else f"dim_{i}"))
    if len(set(names)) < ndim:
        raise UsageError(f"{source.spec} has repeated dimension names {names}: pass --dims")
    return dataclasses.replace(source, dims=tuple(names), coords=tuple(coords), cf=decoding)


def parse_over(text: str, dims: tuple[str, ...]) -> tuple[int, ...]:
    """Turn ``--over`` (names or axis numbers, comma-separated) into sorted axes."""
    axes: list[int] = []
    for item in (part.strip() for part in text.split(",")):
        if item in dims:
            axis = dims.index(item)
        elif item.lstrip("-").isdigit() and -len(dims) <= int(item) < len(dims):
            axis = int(item) % len(dims)
        else:
            raise UsageError(
                f"--over {text!r}: {item!r} is not a dimension of the input "
                f"(dimensions: {', '.join(dims)}; or axis numbers 0-{len(dims) - 1})"
            )
        if axis in axes:
            raise UsageError(f"--over {text!r} names dimension {dims[axis]!r} twice")
        axes.append(axis)
    return tuple(sorted(axes))


def plan_dims(config: Any, kernel: Any, source: Source) -> tuple[Source, tuple[int, ...]]:
    """Describe the input's dimensions and resolve ``--over``; return (source, axes to reduce).

    A kernel declared ``@hpcapp.kernel(over=True)`` is called with ``over``, the sorted tuple
    of axes to reduce (default ``(0,)``); any other kernel reduces over the first dimension
    only, and any other ``--over`` is refused.
    """
    if source.path is None:
        if config.over or config.dims:
            raise UsageError(
                f"kernel {config.kernel!r} generates its data: --over and --dims apply to an INPUT"
            )
        return source, (0,)
    source = describe(source, config.dims, config.raw, config.mask_valid_range)
    over = parse_over(config.over, source.dims) if config.over else (0,)
    if over != (0,) and not kernel.over:
        raise UsageError(
            f"kernel {config.kernel!r} reduces over the first dimension only: to accept "
            "--over, declare it with @hpcapp.kernel(over=True), which calls it with over=, the "
            f"tuple of axes to reduce, like {over} for --over {config.over}"
        )
    return source, over


def identity(source: Source) -> dict[str, Any]:
    """Return what of the N-D description a checkpoint must match (names, decoding)."""
    import json

    described = {
        "dims": list(source.dims),
        "cf": dataclasses.asdict(source.cf) if source.cf is not None else None,
    }
    return json.loads(json.dumps(described))  # as a manifest reads back: lists, not tuples
