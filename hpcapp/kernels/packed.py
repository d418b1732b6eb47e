"""Chunks of stored integers that a kernel decodes itself: CF packing as a linear unpack.

A CF coder (:mod:`hpcapp.io.coding.variables`) that is a mask by stored value plus
``scale_factor``/``add_offset`` declares it as a :class:`LinearUnpack` (its ``linear_unpack``
property), checked there against its own numpy decoding. A kernel declared ``packed=True`` (the
built-in ``stats``) then gets each chunk as ``Packed(stored, unpack)`` and decodes it in its
compiled pass, value by value, without a decoded copy of the chunk; ``Packed.decoded()`` gives
the decoded values with numpy for the paths that need an array.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

# The stored values a compiled loop compares each value with, besides the kept range.
MAX_FILLS = 4
# Stored and decoded dtypes the compiled loops take (32-bit integers only decode to float64).
STORED_CODES = ("i1", "u1", "i2", "u2", "i4", "u4")


@dataclasses.dataclass(frozen=True)
class LinearUnpack:
    """Stored integers to values: NaN where masked, else ``T(raw) * scale`` then ``+ offset``.

    A stored value is masked when it is one of ``fills`` or outside ``[keep_lo, keep_hi]``.
    ``T`` is ``dtype``; each operation rounds in ``T``, as numpy's in-place decoding does. The
    identities stand for an absent attribute: ``x * 1.0`` and ``x + -0.0`` are ``x`` for every
    ``x``, signed zeros included (``+0.0`` would turn ``-0.0`` into ``+0.0``).
    """

    stored: str  # the integers the stored bits mean (after ``_Unsigned``)
    dtype: str  # float32 or float64
    fills: tuple[int, ...] = ()
    keep_lo: int = 0
    keep_hi: int = 0
    scale: float = 1.0
    offset: float = -0.0

    def __post_init__(self) -> None:
        stored, dtype = np.dtype(self.stored), np.dtype(self.dtype)
        if stored.str[1:] not in STORED_CODES or dtype.kind != "f" or dtype.itemsize < 4:
            raise ValueError(f"no compiled unpacking of {stored} into {dtype}")
        if stored.itemsize == 4 and dtype.itemsize != 8:
            raise ValueError("32-bit integers unpack to float64 only")
        if len(self.fills) > MAX_FILLS:
            raise ValueError(f"at most {MAX_FILLS} fill values, got {len(self.fills)}")

    def decode(self, stored: np.ndarray) -> np.ndarray:
        """Return the decoded values of ``stored`` (a new array), with numpy."""
        raw = np.asarray(stored).astype(np.dtype(self.stored), copy=False)  # native order
        out = raw.astype(np.dtype(self.dtype))
        mask = (raw < self.keep_lo) | (raw > self.keep_hi)
        for fill in self.fills:
            mask |= raw == fill
        with np.errstate(over="ignore", invalid="ignore"):
            np.multiply(out, out.dtype.type(self.scale), out=out)
            np.add(out, out.dtype.type(self.offset), out=out)
        out[mask] = np.nan
        return out

    def loop_arguments(self) -> tuple[object, ...]:
        """Return what the compiled loop takes: fills (four), their count, range, scale, offset."""
        stored, dtype = np.dtype(self.stored).type, np.dtype(self.dtype).type
        padded = (*self.fills, *(0,) * (MAX_FILLS - len(self.fills)))
        return (
            tuple(stored(f) for f in padded),
            len(self.fills),
            stored(self.keep_lo),
            stored(self.keep_hi),
            dtype(self.scale),
            dtype(self.offset),
        )


class Packed(NamedTuple):
    """One chunk as stored integers with the unpacking that gives its values."""

    stored: np.ndarray
    unpack: LinearUnpack

    @property
    def shape(self) -> tuple[int, ...]:
        """Return the chunk's shape (that of its values)."""
        return tuple(self.stored.shape)

    def decoded(self) -> np.ndarray:
        """Return the chunk's values decoded with numpy (a new array)."""
        return self.unpack.decode(self.stored)

    def with_stored(self, stored: np.ndarray) -> Packed:
        """Return a chunk of other stored values (a reshaped or transposed view) unpacked alike."""
        return Packed(stored, self.unpack)
