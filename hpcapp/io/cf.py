"""CF decoding of input values, as xarray does by default: mask missing cells, unpack integers.

Cells equal to ``_FillValue`` or a ``missing_value``, and cells outside ``valid_min`` /
``valid_max`` / ``valid_range`` (all compared with the values as stored), become NaN; packed
values become ``stored * scale_factor + add_offset`` in the dtype of those attributes. Kernels
then see missing cells as NaN, which ``stats`` already leaves out of every statistic and counts
in ``nan_count`` (NaN stored in the file and CF-missing cells are both counted there).

Every rank decodes its own chunks right after reading them, into a second reused buffer, so
memory stays one raw chunk plus one decoded chunk.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

_MASK_ATTRS = ("_FillValue", "missing_value", "valid_min", "valid_max", "valid_range")
_PACK_ATTRS = ("scale_factor", "add_offset")


@dataclasses.dataclass(frozen=True)
class CFDecoding:
    """How to turn stored values into the values a kernel sees (small and picklable)."""

    stored_dtype: str
    dtype: str  # of the decoded values
    missing: tuple[float, ...] = ()  # stored values meaning "no data"
    valid_min: float | None = None
    valid_max: float | None = None
    scale_factor: float | None = None
    add_offset: float | None = None
    units: str | None = None  # of the decoded values
    unsigned: bool = False  # ``_Unsigned = "true"``: signed stored integers are unsigned values

    @property
    def changes_values(self) -> bool:
        """Return whether decoding does anything (else the kernel gets the read buffer)."""
        return bool(
            self.unsigned
            or self.missing
            or self.valid_min is not None
            or self.valid_max is not None
            or self.scale_factor is not None
            or self.add_offset is not None
        )


def _values(value: Any) -> list[Any]:
    return [v.item() for v in np.asarray(value).ravel()]


def attr_text(value: Any) -> str | None:
    """Return an HDF5 attribute's value as text (bytes decoded, first element of an array)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return attr_text(value.ravel()[0]) if value.size else None
    return str(value)


def float_dtype_for(stored: np.dtype) -> np.dtype:
    """Return the float dtype masked values of ``stored`` become (xarray's choice)."""
    if stored.kind == "f":
        return stored
    return np.dtype(np.float32) if stored.itemsize <= 2 else np.dtype(np.float64)


def decoding_of(attrs: Mapping[str, Any], stored: np.dtype, raw: bool = False) -> CFDecoding:
    """Read the CF attributes of a variable; ``raw`` keeps the values as stored."""
    stored = np.dtype(stored)
    units = attr_text(attrs.get("units"))
    scale = attrs.get("scale_factor")
    offset = attrs.get("add_offset")
    packed = scale is not None or offset is not None
    if raw:
        # Stored packed integers are not in ``units``: say nothing rather than something wrong.
        return CFDecoding(stored.str, stored.str, units=None if packed else units)
    # netCDF-3's unsigned bytes (and shorts, ints) stored as signed, as xarray reads them: the
    # same bits as unsigned, fill and valid values included.
    unsigned = stored.kind == "i" and (attr_text(attrs.get("_Unsigned")) or "").lower() == "true"
    signed = np.dtype(f"i{stored.itemsize}")
    if unsigned:
        stored = np.dtype(f"u{stored.itemsize}")

    def values_of(name: str) -> list[Any]:
        value = np.asarray(attrs[name])
        if unsigned and value.dtype.kind == "i":
            value = value.astype(signed).view(stored)
        return _values(value)

    missing: list[float] = []
    for name in ("_FillValue", "missing_value"):
        if name in attrs:
            missing += [v for v in values_of(name) if v not in missing]
    low = high = None
    if "valid_range" in attrs:
        low, high = values_of("valid_range")[:2]
    if "valid_min" in attrs:
        low = values_of("valid_min")[0]
    if "valid_max" in attrs:
        high = values_of("valid_max")[0]
    if packed:
        dtype = np.result_type(*(np.asarray(a).dtype for a in (scale, offset) if a is not None))
        if dtype.kind != "f":
            dtype = float_dtype_for(stored)
    elif missing or low is not None or high is not None:
        dtype = float_dtype_for(stored)
    else:
        dtype = stored
    if stored.kind == "f":
        missing = [v for v in missing if not np.isnan(v)]  # NaN is missing anyway
    return CFDecoding(
        stored_dtype=stored.str,
        dtype=np.dtype(dtype).str,
        missing=tuple(missing),
        valid_min=low,
        valid_max=high,
        scale_factor=None if scale is None else _values(scale)[0],
        add_offset=None if offset is None else _values(offset)[0],
        units=units,
        unsigned=unsigned,
    )


class Decoder:
    """Decode chunks into one reused buffer of the decoded dtype."""

    def __init__(self, decoding: CFDecoding, chunk_rows: int, row_shape: tuple[int, ...]) -> None:
        self.decoding = decoding
        self._buffer = np.empty((chunk_rows, *row_shape), dtype=np.dtype(decoding.dtype))
        limits = (decoding.valid_min, decoding.valid_max)
        self._masks = bool(decoding.missing) or any(v is not None for v in limits)
        mask_shape = (chunk_rows, *row_shape) if self._masks else (0,)
        self._mask = np.empty(mask_shape, dtype=bool)
        self._scratch = np.empty(mask_shape, dtype=bool)

    def __call__(self, stored: np.ndarray) -> np.ndarray:
        """Return the decoded values of ``stored`` (a view of the reused buffer)."""
        d = self.decoding
        if d.unsigned:
            stored = stored.view(stored.dtype.str.replace("i", "u"))
        n = len(stored)
        out, mask, scratch = self._buffer[:n], self._mask[:n], self._scratch[:n]
        mask[...] = False
        for value in d.missing:
            np.equal(stored, np.asarray(value).astype(stored.dtype), out=scratch)
            mask |= scratch
        if d.valid_min is not None:
            mask |= np.less(stored, d.valid_min, out=scratch)
        if d.valid_max is not None:
            mask |= np.greater(stored, d.valid_max, out=scratch)
        np.copyto(out, stored, casting="unsafe")
        # In place and in this order, as xarray's decoding: the same roundings, the same numbers.
        with np.errstate(over="ignore", invalid="ignore"):
            if d.scale_factor is not None:
                np.multiply(out, np.asarray(d.scale_factor, out.dtype), out=out)
            if d.add_offset is not None:
                np.add(out, np.asarray(d.add_offset, out.dtype), out=out)
        if self._masks and out.dtype.kind == "f":
            np.copyto(out, np.nan, where=mask)
        return out


def make_decoder(source: Any, chunk_rows: int) -> Any:
    """Return a function decoding one read chunk of ``source`` (identity if nothing to do)."""
    decoding = getattr(source, "cf", None)
    if decoding is None or not decoding.changes_values:
        return lambda item: item
    decode = Decoder(decoding, min(chunk_rows, source.n_rows), source.row_shape)
    return lambda item: decode(item) if isinstance(item, np.ndarray) else item
