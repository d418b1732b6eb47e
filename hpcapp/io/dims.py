"""Dimension names, coordinates and ``--over`` of an N-D input (rank 0, before any work).

Names come from the input's dimension scales (netCDF-4 files have them), else from ``--dims``,
else ``dim_0, dim_1, ...``. A dimension's coordinate variable is the scale attached to it when
that scale is a variable of the dimension's length (netCDF's placeholder scales are not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpcapp.errors import UsageError
from hpcapp.io.names import NETCDF_DIM_ONLY, split_spec

if TYPE_CHECKING:
    from hpcapp.io.sources.base import Source

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


def scale_name(dim: Any) -> tuple[str | None, str | None]:
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


def parse_names(text: str | None, ndim: int) -> list[str] | None:
    if not text:
        return None
    names = [n.strip() for n in text.split(",")]
    if len(names) != ndim or not all(n.isidentifier() for n in names) or len(set(names)) < ndim:
        raise UsageError(
            f"--dims needs {ndim} distinct names (identifiers) for a {ndim}-D input, "
            f"comma-separated (e.g. {','.join(f'dim_{i}' for i in range(ndim))}), got {text!r}"
        )
    return names


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
    source = source.describe(config.dims, config.raw, config.mask_valid_range)
    if not source.dims:  # generated rows: no dimensions to name or reduce over
        if config.over or config.dims:
            raise UsageError(
                f"kernel {config.kernel!r} generates its data: --over and --dims apply to an INPUT"
            )
        return source, (0,)
    over = parse_over(config.over, source.dims) if config.over else (0,)
    if over != (0,) and not kernel.over:
        raise UsageError(
            f"kernel {config.kernel!r} reduces over the first dimension only: to accept "
            "--over, declare it with @hpcapp.kernel(over=True), which calls it with over=, the "
            f"tuple of axes to reduce, like {over} for --over {config.over}"
        )
    return source, over
