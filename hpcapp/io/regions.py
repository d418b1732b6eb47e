"""Fields of ``--mask`` and ``--regions``: read once on rank 0, CF-decoded, placed on a record.

Both are variables of a file (``FILE:/VAR``) over some of the input's non-record dimensions,
matched by name as ``--weights FILE:/VAR`` is (:mod:`hpcapp.io.weights`), cut to a
``--sel``/``--isel`` box, and decoded as the input is (``_FillValue``/``missing_value`` masked,
packing applied, the valid range with ``--mask-valid-range``). A mask keeps a cell where it is
nonzero and not missing. A region raster gives each cell an integer id; a missing cell is in no
region. Ids must be whole numbers, at most :data:`MAX_REGIONS` distinct ones; CF
``flag_values``/``flag_meanings`` name them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np

from hpcapp.errors import UsageError
from hpcapp.io.coding.variables import Decoder, attr_text, decoding_of
from hpcapp.io.sources.hdf5 import Hdf5Source
from hpcapp.io.weights import input_axes, on_record

MAX_REGIONS = 10_000  # results grow with the ids: a continuous field is refused, not summed


@dataclasses.dataclass(frozen=True)
class Regions:
    """Each cell's region, as a position in ``ids`` (-1: no region), broadcastable to a record."""

    index: np.ndarray  # int32, (1, *row_shape) with 1 on the dims the raster does not cover
    ids: np.ndarray  # int64, sorted
    names: tuple[str, ...] | None  # from flag_values/flag_meanings, one per id ("" if unnamed)
    spec: str

    def describe(self) -> str:
        """Return ``3 regions: 1 land, 2 ocean, 3 ice`` (at most 6 shown)."""
        names = self.names or ("",) * len(self.ids)
        shown = [f"{i} {n}".strip() for i, n in zip(self.ids.tolist(), names, strict=True)]
        more = ", ..." if len(shown) > 6 else ""
        return f"{len(shown)} region{'s' * (len(shown) != 1)}: {', '.join(shown[:6])}{more}"

    def identity(self) -> dict[str, Any]:
        """Return what a checkpoint of a job with these regions must match."""
        digest = hashlib.sha256(np.ascontiguousarray(self.index).tobytes()).hexdigest()
        return {"spec": self.spec, "ids": self.ids.tolist(), "sha256": digest}


def _read(source: Hdf5Source, spec: str, option: str, valid_range: bool) -> tuple[Any, ...]:
    """Return (decoded values placed on a record, the variable's attributes, its input axes)."""
    import h5py

    path, _, name = spec.rpartition(":")
    if not path or not name:
        raise UsageError(f"{option}: give FILE:/VAR, not {spec!r}")
    try:
        with h5py.File(path, "r", locking=False) as h5:
            variable = h5.get(name)
            if not isinstance(variable, h5py.Dataset) or variable.dtype.kind not in "iufb":
                raise UsageError(f"{option}: {path} has no numeric variable {name!r}")
            axes = input_axes(variable, source, spec, option)
            attrs = dict(variable.attrs)
            stored = np.asarray(variable[()])
    except OSError as exc:
        raise UsageError(f"{option}: cannot read {path}: {exc}") from None
    stored = stored.astype(np.uint8) if stored.dtype.kind == "b" else stored
    decoding = decoding_of(attrs, stored.dtype, where=spec, mask_valid_range=valid_range)
    values = stored
    if decoding.changes_values and stored.ndim:
        values = Decoder(decoding, stored.shape[0], stored.shape[1:])(stored)
    decoded = np.asarray(values, dtype=np.float64)
    return on_record(decoded, axes, source, spec, option), attrs, axes


def load_mask(source: Any, spec: str, valid_range: bool = False) -> np.ndarray:
    """Return ``--mask FILE:/VAR`` as booleans broadcastable to a record (True: kept)."""
    if not isinstance(source, Hdf5Source):
        raise UsageError("--mask needs an input file with named dimensions")
    values, _, _ = _read(source, spec, "--mask", valid_range)
    return np.isfinite(values) & (values != 0)


def _names(attrs: dict[str, Any], ids: np.ndarray, spec: str) -> tuple[str, ...] | None:
    """Return each id's name from ``flag_values``/``flag_meanings``, or None without them."""
    if "flag_values" not in attrs or "flag_meanings" not in attrs:
        return None
    values = np.asarray(attrs["flag_values"]).ravel()
    meanings = (attr_text(attrs["flag_meanings"]) or "").split()
    if values.dtype.kind not in "iuf" or len(values) != len(meanings):
        raise UsageError(
            f"--regions: {spec}: attribute flag_meanings has {len(meanings)} words for "
            f"{len(values)} flag_values: CF needs one meaning per value"
        )
    named = {float(v): m for v, m in zip(values.tolist(), meanings, strict=True)}
    return tuple(named.get(float(i), "") for i in ids.tolist())


def load_regions(
    source: Any, spec: str, over: tuple[int, ...], mask: np.ndarray | None, valid_range: bool
) -> Regions:
    """Return the regions of ``--regions FILE:/VAR``; refuse ids not whole or too many."""
    if not isinstance(source, Hdf5Source):
        raise UsageError("--regions needs an input file with named dimensions")
    values, attrs, axes = _read(source, spec, "--regions", valid_range)
    kept = [source.dims[a] for a in axes if a not in over]
    if kept:
        raise UsageError(
            f"--regions: {spec} runs along {kept[0]!r}, which --over keeps: every dimension "
            "of the regions must be reduced over (add it to --over)"
        )
    found = np.isfinite(values)
    whole = values[found]
    if np.any(whole != np.round(whole)) or np.any(np.abs(whole) >= 2.0**53):
        bad = whole[(whole != np.round(whole)) | (np.abs(whole) >= 2.0**53)][0]
        raise UsageError(
            f"--regions: {spec} holds {bad!r}, not an integer: region ids must be whole numbers"
        )
    ids = np.unique(whole)
    if len(ids) > MAX_REGIONS:
        raise UsageError(
            f"--regions: {spec} holds {len(ids)} distinct ids, more than {MAX_REGIONS}: "
            "give a raster of region ids, not a continuous field"
        )
    if mask is not None:
        shape = np.broadcast_shapes(values.shape, mask.shape)
        values, found = np.broadcast_to(values, shape), np.broadcast_to(found, shape) & mask
    if not len(ids) or not found.any():
        raise UsageError(f"--regions: {spec} holds no region id (every cell missing or masked)")
    index = np.where(found, np.searchsorted(ids, np.where(found, values, ids[0])), -1)
    ints = ids.astype(np.int64)
    return Regions(index.astype(np.int32), ints, _names(attrs, ids, spec), spec)


@dataclasses.dataclass(frozen=True)
class Zones:
    """A job's ``--mask`` (booleans, True: kept) and ``--regions`` (the mask folded in)."""

    mask: np.ndarray | None
    regions: Regions | None
    mask_spec: str | None

    def identity(self) -> dict[str, Any]:
        """Return what a checkpoint of a masked or regional job must match."""
        found: dict[str, Any] = {}
        if self.mask is not None:
            digest = hashlib.sha256(np.ascontiguousarray(self.mask).tobytes()).hexdigest()
            found["mask"] = {"spec": self.mask_spec, "sha256": digest}
        if self.regions is not None:
            found["regions"] = self.regions.identity()
        return found


def load_zones(
    source: Any, mask: str | None, regions: str | None, over: tuple[int, ...], valid: bool
) -> Zones | None:
    """Return the ``--mask``/``--regions`` fields of a job (None when it has neither)."""
    if not mask and not regions:
        return None
    keep = load_mask(source, mask, valid) if mask else None
    found = load_regions(source, regions, over, keep, valid) if regions else None
    return Zones(keep, found, mask)
