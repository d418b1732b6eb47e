"""Read gzip-compressed HDF5 chunks with libdeflate instead of HDF5's zlib filter, same bytes.

Most netCDF-4 climate files are stored deflated (``zlib=True``), often shuffled. Inflating is
most of the time of reading them: HDF5's deflate filter runs zlib, which libdeflate (the
``deflate`` package, an optional dependency: ``pip install hpcapp[fast]``) beats by 1.7-2x on such
chunks (``python scripts/bench.py inflate``). Where a dataset's filter pipeline is exactly
deflate, or shuffle then deflate, and its chunks are big enough for a Python call per chunk not
to matter, :func:`direct_reader` returns a :class:`DirectReader`: it takes each stored chunk the
read touches as it is on disk (``H5Dread_chunk``), inflates it, undoes the byte shuffle and
copies the part the read wants. The bytes are the ones HDF5 would give: inflating is exact, and
a chunk this cannot take as stored (a filter skipped for it, a chunk never written) makes the
whole read fall back to HDF5. ``HPCAPP_HDF5_INFLATE=1`` turns the direct path off.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

import numpy as np

_DEFLATE, _SHUFFLE = 1, 2  # HDF5's filter ids (H5Z_FILTER_DEFLATE, H5Z_FILTER_SHUFFLE)
# Below this many bytes a chunk's Python overhead (a call to HDF5, to libdeflate, a copy) is no
# longer small against inflating it: HDF5's own loop reads those faster.
MIN_CHUNK_BYTES = 32 * 1024
_ENV = "HPCAPP_HDF5_INFLATE"


class Fallback(Exception):  # noqa: N818 - not an error: the read goes through HDF5 instead
    """A chunk cannot be taken as stored: read the box through HDF5's filters."""


def _inflater() -> Callable[[bytes, int], bytes | bytearray] | None:
    """Return libdeflate's zlib inflate (data, size) -> bytes, or None when not installed."""
    try:
        import deflate
    except ImportError:
        return None
    return deflate.zlib_decompress


def direct_reader(dsid: Any) -> DirectReader | None:
    """Return a reader of ``dsid`` (an ``h5py.h5d.DatasetID``) through libdeflate, or None."""
    if os.environ.get(_ENV) == "1":
        return None
    inflate = _inflater()
    if inflate is None:
        return None
    try:
        import h5py

        plist = dsid.get_create_plist()
        if plist.get_layout() != h5py.h5d.CHUNKED:
            return None
        # The filter ids in the order they are applied on write.
        filters = tuple(plist.get_filter(i)[0] for i in range(plist.get_nfilters()))
        chunk = tuple(int(n) for n in plist.get_chunk())
        dtype = np.dtype(dsid.dtype)
    except Exception:  # anything unusual about the dataset: HDF5 reads it
        return None
    if filters not in ((_DEFLATE,), (_SHUFFLE, _DEFLATE)) or dtype.kind not in "iuf":
        return None
    if int(np.prod(chunk)) * dtype.itemsize < MIN_CHUNK_BYTES:
        return None
    return DirectReader(chunk, dtype, filters[0] == _SHUFFLE, inflate)


class DirectReader:
    """Read boxes of one chunked, deflated dataset chunk by chunk (see the module)."""

    def __init__(
        self,
        chunk: tuple[int, ...],
        dtype: np.dtype,
        shuffled: bool,
        inflate: Callable[[bytes, int], bytes | bytearray],
    ) -> None:
        self.chunk = chunk
        self.dtype = dtype
        self.shuffled = shuffled
        self.inflate = inflate
        self.chunk_bytes = int(np.prod(chunk)) * dtype.itemsize
        self._plain = np.empty(self.chunk_bytes, np.uint8)  # one unshuffled chunk, reused

    def read(self, dsid: Any, start: tuple[int, ...], out: np.ndarray) -> None:
        """Read the box at ``start`` of ``out``'s shape into ``out``; raise Fallback if needed."""
        if (out.dtype.kind, out.dtype.itemsize) != (self.dtype.kind, self.dtype.itemsize):
            # HDF5 converts types its own way (it clips integers, numpy wraps): leave it to HDF5.
            raise Fallback(f"read into {out.dtype}, stored as {self.dtype}")
        if any(n == 0 for n in out.shape):
            return
        dims = list(zip(start, out.shape, self.chunk, strict=True))
        ranges = [range(s // c, (s + n - 1) // c + 1) for s, n, c in dims]
        for index in itertools.product(*ranges):
            corner = tuple(i * c for i, (_, _, c) in zip(index, dims, strict=True))
            try:
                mask, stored = dsid.read_direct_chunk(corner)
            except Exception as exc:  # not allocated (never written): HDF5 gives its fill
                raise Fallback(str(exc)) from exc
            if mask:  # a filter was skipped for this chunk
                raise Fallback(f"filter mask {mask} on chunk {corner}")
            take, put = [], []
            for at, (s, n, c) in zip(corner, dims, strict=True):
                lo, hi = max(s, at), min(s + n, at + c)
                take.append(slice(lo - at, hi - at))
                put.append(slice(lo - s, hi - s))
            target = out[tuple(put)]
            whole = target.shape == self.chunk and target.flags.c_contiguous
            # A whole chunk is unshuffled straight into its place: no copy in between.
            values = self._values(stored, target if whole and target.dtype == self.dtype else None)
            if values is not target:
                target[...] = values[tuple(take)]

    def _values(self, stored: bytes, into: np.ndarray | None = None) -> np.ndarray:
        """Inflate (and unshuffle) one stored chunk into ``into`` (its shape), else a new view."""
        try:
            raw = self.inflate(stored, self.chunk_bytes)
        except Exception as exc:  # corrupt, or not what the pipeline says: HDF5 decides
            raise Fallback(f"inflate: {exc}") from exc
        if len(raw) != self.chunk_bytes:
            raise Fallback(f"inflated {len(raw)} bytes, not {self.chunk_bytes}")
        data = np.frombuffer(raw, np.uint8)
        size = self.dtype.itemsize
        plain = self._plain if into is None else into.reshape(-1).view(np.uint8)
        if self.shuffled and size > 1:
            # HDF5's shuffle stores every value's byte 0, then every byte 1, ...
            count = self.chunk_bytes // size
            for byte in range(size):
                plain[byte::size] = data[byte * count : (byte + 1) * count]
        elif into is not None:
            plain[:] = data
        else:
            plain = data
        return into if into is not None else plain.view(self.dtype).reshape(self.chunk)
