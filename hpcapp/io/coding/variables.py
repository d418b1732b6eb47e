"""CF decoding of input values, as xarray decodes by default: mask fill values, unpack integers.

The rules are xarray's (``xarray.coding.variables``: ``CFMaskCoder`` then ``CFScaleOffsetCoder``),
so the values a kernel sees equal ``xr.open_dataset(path)[name].values`` value for value and in
the same float dtype:

- the stored values are first cast to the decoded dtype: for packed data the dtype xarray derives
  from ``scale_factor``/``add_offset`` (float64 for 32-bit integers or when ``add_offset`` is
  alone or differs in type from ``scale_factor``; else their float type); unpacked integers with a
  fill value become float32 (8 and 16 bits) or float64; floats keep their dtype;
- a cell is missing where that cast value equals a ``_FillValue`` or ``missing_value``, compared
  as numpy compares the cast value with the attribute in the attribute's own type. So a fill
  value the stored type cannot hold (``missing_value = 1e20`` or ``-999.5`` on int16, ``NaN``
  on integers, a double ``1e20`` on float32 data) masks nothing, as in xarray and netCDF-C;
- then ``value * scale_factor + add_offset``, in place in the decoded dtype.

Where hpcapp deliberately differs (the README lists these, with the reasons): text or non-finite
packing attributes and text fill values are refused (xarray fails or ignores them);
``missing_value`` follows ``_Unsigned`` as ``_FillValue`` does (netCDF-C's reading; xarray
converts only ``_FillValue``); integer ``scale_factor``/``add_offset`` decode to float64 (xarray
would keep integers). ``valid_min``/``valid_max``/``valid_range`` are ignored by default, as by
xarray; ``--mask-valid-range`` also masks values outside them, compared with the stored values as
netCDF-C does. ``--raw`` decodes nothing.

Every rank decodes its own chunks right after reading them, into a second reused buffer, so
memory stays one raw chunk plus one decoded chunk.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from hpcapp.errors import UsageError
from hpcapp.kernels.packed import MAX_FILLS, STORED_CODES, LinearUnpack

_FILL_ATTRS = ("_FillValue", "missing_value")
_PACK_ATTRS = ("scale_factor", "add_offset")
# What a decoding follows, recorded in the job identity (so in every output and checkpoint).
POLICY_XARRAY = "xarray-default"
POLICY_VALID_RANGE = "xarray-default+valid-range"
POLICY_RAW = "raw"


@dataclasses.dataclass(frozen=True)
class CFDecoding:
    """How to turn stored values into the values a kernel sees (small and picklable)."""

    stored_dtype: str  # after _Unsigned: the integers the stored bits mean
    dtype: str  # of the decoded values
    # (value, numpy dtype of the attribute): compared with the values cast to ``dtype``.
    missing: tuple[tuple[Any, str], ...] = ()
    valid_min: float | None = None  # --mask-valid-range: compared with the stored values
    valid_max: float | None = None
    scale_factor: float | None = None
    add_offset: float | None = None
    units: str | None = None  # of the decoded values
    unsigned: bool = False  # ``_Unsigned = "true"``: signed stored integers are unsigned values
    signed: bool = False  # ``_Unsigned = "false"`` on unsigned integers: signed values
    policy: str = POLICY_XARRAY

    @property
    def changes_values(self) -> bool:
        """Return whether decoding does anything (else the kernel gets the read buffer)."""
        return bool(
            self.unsigned
            or self.signed
            or self.missing
            or self.valid_min is not None
            or self.valid_max is not None
            or self.scale_factor is not None
            or self.add_offset is not None
        )

    @property
    def linear_unpack(self) -> LinearUnpack | None:
        """Return this coder as a mask by stored value plus unpacking, if it is one exactly.

        ``None`` when the compiled loops cannot decode it to the same bits as :class:`Decoder`
        (other dtypes, more than ``MAX_FILLS`` masked values inside the kept range, or a
        check that fails): kernels then get the values decoded here.
        """
        return _linear_unpack(self) if self.changes_values else None


@functools.lru_cache(maxsize=64)
def _linear_unpack(d: CFDecoding) -> LinearUnpack | None:
    """Return ``d`` as a :class:`LinearUnpack` checked against :class:`Decoder` (or None)."""
    stored, dtype = np.dtype(d.stored_dtype).newbyteorder("="), np.dtype(d.dtype)
    if stored.str[1:] not in STORED_CODES or dtype.kind != "f" or dtype.itemsize < 4:
        return None
    if stored.itemsize == 4 and dtype.itemsize != 8:
        return None
    info = np.iinfo(stored)
    if stored.itemsize <= 2:  # every stored value: the mask is the decoder's own
        probe = np.arange(info.min, info.max + 1, dtype=stored)
    else:  # the values that can decide the mask, and their neighbours
        points = [info.min, info.max, 0, 1, -1]
        for value, _ in d.missing:
            if math.isfinite(value) and float(value) == math.floor(value):
                points.append(int(value))
        for limit in (d.valid_min, d.valid_max):
            if limit is not None:
                points += [math.floor(limit), math.ceil(limit)]
        near = [p + k for p in points for k in (-1, 0, 1)]
        probe = np.unique(np.clip(near, info.min, info.max)).astype(stored)
    want = Decoder(dataclasses.replace(d, stored_dtype=stored.str), len(probe), ())(probe)
    masked = np.isnan(want)
    kept = probe[~masked]
    if stored.itemsize <= 2:
        low, high = (int(kept.min()), int(kept.max())) if kept.size else (info.max, info.min)
    else:  # the kept range from the limits (the probe checks it at both ends)
        low = info.min if d.valid_min is None else max(info.min, math.ceil(d.valid_min))
        high = info.max if d.valid_max is None else min(info.max, math.floor(d.valid_max))
    inside = (probe >= low) & (probe <= high)
    fills = tuple(int(v) for v in probe[masked & inside])
    if len(fills) > MAX_FILLS:
        return None
    unpack = LinearUnpack(
        stored.str,
        dtype.str,
        fills,
        int(low),
        int(high),
        1.0 if d.scale_factor is None else d.scale_factor,
        -0.0 if d.add_offset is None else d.add_offset,
    )
    got = unpack.decode(probe)
    return unpack if got.tobytes() == want.tobytes() else None


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
    """Return the float dtype masked values of ``stored`` become (xarray's ``maybe_promote``)."""
    if stored.kind == "f":
        return stored
    return np.dtype(np.float32) if stored.itemsize <= 2 else np.dtype(np.float64)


def packed_dtype(stored: np.dtype, scale: np.dtype | None, offset: np.dtype | None) -> np.dtype:
    """Return the dtype packed ``stored`` values decode to (xarray's ``_choose_float_dtype``)."""
    scale, offset = (None if t is None else t.newbyteorder("=") for t in (scale, offset))
    if scale is not None and scale == offset and scale in (np.float32, np.float64):
        if stored.kind in "iu" and stored.itemsize == 4:
            return np.dtype(np.float64)  # float32 cannot hold every 32-bit integer
        return scale
    if offset is not None or scale is None or scale.kind != "f":
        # An offset alone (or of another type) may be large: float64. Integer packing
        # attributes: float64 too, where xarray would keep integers (and could overflow).
        return np.dtype(np.float64)
    return scale


def _numeric(
    attrs: Mapping[str, Any], name: str, where: str, single: bool, finite: bool = False
) -> np.ndarray:
    """Return a CF attribute as a numeric array; refuse text, booleans and (``single``) lists."""
    value = np.asarray(attrs[name])
    if value.dtype.kind not in "iuf" or value.size == 0:
        shown = attr_text(value) if value.dtype.kind in "SUO" else repr(value.tolist())
        raise UsageError(
            f"{where}: attribute {name} = {shown!r} is not a number ({value.dtype}): CF needs "
            "a numeric attribute; fix the file (e.g. `ncatted`) or pass --raw"
        )
    value = value.ravel()
    if single and value.size != 1:
        raise UsageError(f"{where}: attribute {name} has {value.size} values; CF needs one")
    if finite and not np.isfinite(value).all():
        raise UsageError(
            f"{where}: attribute {name} = {value[0]} is not finite: every value would be NaN"
        )
    return value


def decoding_of(
    attrs: Mapping[str, Any],
    stored: np.dtype,
    raw: bool = False,
    *,
    where: str = "input",
    mask_valid_range: bool = False,
) -> CFDecoding:
    """Read the CF attributes of a variable; ``raw`` keeps the values as stored.

    ``where`` (``FILE:/variable``) names the variable in refusals of malformed attributes.
    """
    stored = np.dtype(stored)
    units = attr_text(attrs.get("units"))
    packed = any(name in attrs for name in _PACK_ATTRS)
    if raw:
        # Stored packed integers are not in ``units``: say nothing rather than something wrong.
        return CFDecoding(
            stored.str, stored.str, units=None if packed else units, policy=POLICY_RAW
        )
    pack = {n: _numeric(attrs, n, where, True, finite=True) for n in _PACK_ATTRS if n in attrs}
    flag = (attr_text(attrs.get("_Unsigned")) or "").strip().lower()
    unsigned = stored.kind == "i" and flag == "true"
    signed = stored.kind == "u" and flag == "false"
    if unsigned:
        stored = np.dtype(f"u{stored.itemsize}")
    elif signed:
        stored = np.dtype(f"i{stored.itemsize}")

    def as_stored(value: np.ndarray) -> np.ndarray:
        """Read an integer attribute of a variable with ``_Unsigned`` as the values it means."""
        if not (unsigned or signed) or value.dtype.kind not in "iu":
            return value
        bits = np.dtype(f"{'i' if unsigned else 'u'}{stored.itemsize}")  # the stored type
        if np.array_equal(value.astype(stored), value):
            return value  # already the value meant
        if np.array_equal(value.astype(bits), value):
            return value.astype(bits).view(stored)  # the same bits, read as meant
        return value  # fits neither: masks nothing (never cast into the type)

    missing: list[tuple[Any, str]] = []
    for name in _FILL_ATTRS:
        if name not in attrs:
            continue
        for value in as_stored(_numeric(attrs, name, where, False)):
            if np.isnan(value):
                continue  # xarray drops a NaN fill: NaN cells are missing anyway
            item = (value.item(), value.dtype.str)
            if item not in missing:
                missing.append(item)
    if packed and stored.kind == "f" and not missing and any(n in attrs for n in _FILL_ATTRS):
        # xarray: a fill attribute that masks nothing (NaN) still tells its unpacking to keep
        # the dtype the masking left, here the stored floats' own.
        dtype = stored
    elif packed:
        types = [pack[name].dtype if name in pack else None for name in _PACK_ATTRS]
        dtype = packed_dtype(stored, types[0], types[1])
    elif missing:
        dtype = float_dtype_for(stored)
    else:
        dtype = stored
    low = high = None
    if mask_valid_range:
        low, high = _valid_limits(attrs, where, as_stored)
        if (low is not None or high is not None) and not packed and not missing:
            dtype = float_dtype_for(stored)
    scale, offset = (float(pack[n][0]) if n in pack else None for n in _PACK_ATTRS)
    return CFDecoding(
        stored_dtype=stored.str,
        dtype=np.dtype(dtype).str,
        missing=tuple(missing),
        valid_min=low,
        valid_max=high,
        scale_factor=scale,
        add_offset=offset,
        units=units,
        unsigned=unsigned,
        signed=signed,
        policy=POLICY_VALID_RANGE if mask_valid_range else POLICY_XARRAY,
    )


def _valid_limits(attrs: Mapping[str, Any], where: str, as_stored: Any) -> tuple[Any, Any]:
    """Return (valid_min, valid_max) from ``valid_range`` or ``valid_min``/``valid_max``."""
    low = high = None
    if "valid_range" in attrs:
        pair = as_stored(_numeric(attrs, "valid_range", where, False))
        if pair.size != 2:
            raise UsageError(f"{where}: attribute valid_range has {pair.size} values, not 2")
        low, high = pair[0].item(), pair[1].item()
    if "valid_min" in attrs:
        low = as_stored(_numeric(attrs, "valid_min", where, True))[0].item()
    if "valid_max" in attrs:
        high = as_stored(_numeric(attrs, "valid_max", where, True))[0].item()
    for value in (low, high):
        if value is not None and math.isnan(value):
            raise UsageError(f"{where}: a valid_min/valid_max/valid_range value is NaN")
    if low is not None and high is not None and low > high:
        raise UsageError(
            f"{where}: valid range [{low}, {high}] is empty (min > max): --mask-valid-range "
            "would mask every value"
        )
    return low, high


class Decoder:
    """Decode chunks into one reused buffer of the decoded dtype.

    ``parts`` are the other coders its chunks may hold rows of (files of one input, each packed
    its own way: the same stored and decoded dtypes, other packing or fill values); a call then
    says which rows each coder decodes.
    """

    def __init__(
        self,
        decoding: CFDecoding,
        chunk_rows: int,
        row_shape: tuple[int, ...],
        parts: tuple[CFDecoding, ...] = (),
    ) -> None:
        self.decoding = decoding
        self._buffer = np.empty((chunk_rows, *row_shape), dtype=np.dtype(decoding.dtype))
        self._masks = any(_masks(d) for d in (decoding, *parts))
        mask_shape = (chunk_rows, *row_shape) if self._masks else (0,)
        self._mask = np.empty(mask_shape, dtype=bool)
        self._scratch = np.empty(mask_shape, dtype=bool)
        self._fills: dict[CFDecoding, list[Any]] = {}

    def __call__(
        self, stored: np.ndarray, pieces: list[tuple[int, int, CFDecoding]] | None = None
    ) -> np.ndarray:
        """Return the decoded values of ``stored`` (a view of the reused buffer).

        ``pieces`` (first row, end row, coder) cover the rows; default: all by ``decoding``.
        """
        n = len(stored)
        out = self._buffer[:n]
        for first, end, decoding in pieces or [(0, n, self.decoding)]:
            self._decode(stored[first:end], out[first:end], decoding, first)
        return out

    def _decode(self, stored: np.ndarray, out: np.ndarray, d: CFDecoding, first: int) -> None:
        if d.unsigned or d.signed:
            stored = stored.view(np.dtype(d.stored_dtype))
        n = len(stored)
        mask, scratch = self._mask[first : first + n], self._scratch[first : first + n]
        np.copyto(out, stored, casting="unsafe")
        masks = _masks(d)
        if masks:
            mask[...] = False
            for fill in self._fills_of(d):
                mask |= np.equal(out, fill, out=scratch)
            if d.valid_min is not None:
                mask |= np.less(stored, d.valid_min, out=scratch)
            if d.valid_max is not None:
                mask |= np.greater(stored, d.valid_max, out=scratch)
        # In place and in this order, as xarray's decoding: the same roundings, the same numbers.
        with np.errstate(over="ignore", invalid="ignore"):
            if d.scale_factor is not None:
                np.multiply(out, np.asarray(d.scale_factor, out.dtype), out=out)
            if d.add_offset is not None:
                np.add(out, np.asarray(d.add_offset, out.dtype), out=out)
        if masks and out.dtype.kind == "f":
            np.copyto(out, np.nan, where=mask)

    def _fills_of(self, decoding: CFDecoding) -> list[Any]:
        # Each fill value as a numpy scalar of its attribute's type: numpy then compares it
        # with the cast values in the promoted type, exactly as xarray's ``data == fv``.
        if decoding not in self._fills:
            self._fills[decoding] = [np.dtype(kind).type(v) for v, kind in decoding.missing]
        return self._fills[decoding]


def _masks(decoding: CFDecoding) -> bool:
    """Return whether a coder masks some values (fill values or a valid range)."""
    limits = (decoding.valid_min, decoding.valid_max)
    return bool(decoding.missing) or any(v is not None for v in limits)


def make_decoder(source: Any, chunk_rows: int) -> Any:
    """Return a function decoding one read chunk of ``source`` (identity if nothing to do)."""
    decoding = getattr(source, "cf", None)
    if decoding is None or not decoding.changes_values:
        return lambda item: item
    decode = Decoder(decoding, min(chunk_rows, source.n_rows), source.row_shape)
    return lambda item: decode(item) if isinstance(item, np.ndarray) else item
