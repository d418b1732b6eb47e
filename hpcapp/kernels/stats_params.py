"""Parse and check the ``stats`` histogram parameters (``bins``, ``range``) before any work.

``range`` is one ``LO,HI`` pair for every column or one pair per column: ``-p range=0,1``,
``-p range=0:40`` or ``-p range=0:40,250:350`` on the command line, ``range = [0, 1]`` or
``range = [[0, 40], [250, 350]]`` in TOML. Refused (ValueError, which the caller turns into a
usage error before any chunk is read): ``bins`` given without ``range`` (no histogram would be
made); ``bins`` not an integer in ``[1, MAX_BINS]``; a bound that is not a finite number;
``LO >= HI``; a number of pairs other than 1 or the number of columns; a range whose width or
``bins / width`` is not a finite normal number in the data's float type (float16 for float16
data, float32 for float32, float64 otherwise: numpy computes the bins in that type, and an
infinite scale sent the compiled loop's bins anywhere); a range ``numpy.histogram`` itself
refuses for the data type (bins narrower than its float spacing); and a histogram too large for
the compiled loop's 32-bit counter slots.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Collection
from typing import Any

import numpy as np

# numpy needs a distinct float edge per bin, and float32 data has 2**24 values per binade;
# beyond this the histogram alone (4 counter copies x 8 bytes x bins per column in each chunk,
# bins x 8 bytes per column in every merge message) costs more than the data it describes.
MAX_BINS = 1 << 24
# The compiled loop's counter slots are int32: 4 copies x columns x (bins + 2) must stay below.
MAX_SLOTS = 1 << 31
HIST_COPIES = 4
NEEDS_RANGE = "bins needs range: -p range=LO,HI (a histogram needs a fixed range)"


@dataclasses.dataclass(frozen=True)
class Histogram:
    """A checked histogram request: bins and one (lo, hi) pair, or one per column."""

    bins: int
    ranges: tuple[tuple[float, float], ...]

    @property
    def shared(self) -> bool:
        """Return whether every column has the same range."""
        return len(set(self.ranges)) == 1

    def column_ranges(self, n_cols: int) -> list[tuple[float, float]]:
        """Return the range of each of ``n_cols`` columns."""
        return list(self.ranges) * n_cols if len(self.ranges) == 1 else list(self.ranges)


def _number(value: Any) -> float:
    """Return a range bound as a float, refusing anything but an int, float or numeric string."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"range bounds must be numbers, got {value!r}")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"range bound {value!r} is not a number") from None


def _pair(value: Any) -> tuple[float, float]:
    """Return one (lo, hi) pair from ``"LO:HI"`` or a two-item list."""
    if isinstance(value, str):
        parts = value.split(":")
        if len(parts) != 2:
            raise ValueError(f"a per-column range is LO:HI, got {value!r}")
        value = parts
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"a range is a pair LO,HI, got {value!r}")
    return _number(value[0]), _number(value[1])


def parse_ranges(value: Any) -> tuple[tuple[float, float], ...]:
    """Return the range as a tuple of (lo, hi) pairs: one for all columns, or one per column."""
    if isinstance(value, str):
        value = value.split(",") if "," in value else [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"range must be LO,HI or LO:HI,LO:HI,... got {value!r}")
    if all(isinstance(v, (list, tuple, str)) for v in value) and not (
        len(value) == 2 and all(isinstance(v, str) and ":" not in v for v in value)
    ):
        pairs = tuple(_pair(v) for v in value)
    else:
        pairs = (_pair(value),)
    for lo, hi in pairs:
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"range [{lo}, {hi}] is not finite")
        if not lo < hi:
            raise ValueError(f"range [{lo}, {hi}] needs LO < HI")
    return pairs


def edge_dtype(dtype: np.dtype) -> np.dtype:
    """Return the dtype numpy.histogram computes the bins of ``dtype`` data in."""
    if dtype.kind == "f":
        return dtype.newbyteorder("=")
    return np.dtype(np.float64)


@functools.lru_cache(maxsize=256)
def _check_range_for(dtype_str: str, bins: int, lo: float, hi: float) -> None:
    """Refuse a range whose bins numpy (or our loop) cannot compute in the data's float type."""
    work = edge_dtype(np.dtype(dtype_str))
    info = np.finfo(work)
    with np.errstate(all="ignore"):
        width = work.type(hi) - work.type(lo)
        scale = work.type(bins) / width
        wide = float(hi) - float(lo)
    name = work.name
    if not (math.isfinite(float(width)) and math.isfinite(wide) and float(width) >= info.tiny):
        raise ValueError(f"range [{lo}, {hi}] has a width that is not a normal {name} number")
    if not math.isfinite(float(scale)):
        raise ValueError(f"range [{lo}, {hi}] is too narrow for {bins} bins in {name}")
    try:
        with np.errstate(all="ignore"):
            edges = np.histogram_bin_edges(np.empty(0, work), bins, (lo, hi))
    except ValueError as exc:
        raise ValueError(f"range [{lo}, {hi}] with {bins} bins for {name} data: {exc}") from None
    if not np.all(np.isfinite(edges)):
        raise ValueError(f"range [{lo}, {hi}] does not fit {name}")


def check_params(
    bins: int = 64,
    range: Any = None,
    *,
    dtype: Any = None,
    row_shape: tuple[int, ...] | None = None,
    given_params: Collection[str] = (),
) -> Histogram | None:
    """Validate the histogram parameters; return them, or ``None`` for no histogram.

    ``given_params`` names the parameters the user gave: ``bins`` given without ``range`` is
    refused, since it would silently make no histogram (the default ``bins`` is fine alone).
    """
    if not isinstance(bins, int) or isinstance(bins, bool) or not 1 <= bins <= MAX_BINS:
        raise ValueError(f"bins must be an integer from 1 to {MAX_BINS} (2**24), got {bins!r}")
    if range is None:
        if "bins" in given_params:
            raise ValueError(NEEDS_RANGE)
        return None
    pairs = parse_ranges(range)
    if row_shape is not None:
        n_cols = int(np.prod(row_shape, dtype=np.int64))
        if len(pairs) not in (1, n_cols):
            raise ValueError(
                f"range has {len(pairs)} LO:HI pairs but the data has {n_cols} columns: "
                "give one pair for all columns or one per column"
            )
        if HIST_COPIES * n_cols * (bins + 2) >= MAX_SLOTS:
            raise ValueError(
                f"a histogram of {n_cols} columns x {bins} bins is too large: "
                f"columns x (bins + 2) must stay below {MAX_SLOTS // HIST_COPIES}"
            )
    if dtype is not None:
        data = np.dtype(dtype)
        if data.kind == "b":
            data = np.dtype(np.uint8)
        for lo, hi in sorted(set(pairs)):
            _check_range_for(data.newbyteorder("=").str, bins, lo, hi)
    return Histogram(bins, pairs)
