"""Deflated chunks read through libdeflate (hpcapp/io/inflate.py) give HDF5's bytes, or HDF5 reads.

The reference is h5py reading the same box through HDF5's own filters; the direct path is
counted, so a test cannot pass by silently falling back.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcapp.io import inflate
from tests.input_helpers import stats
from tests.ncdata import write_netcdf

pytest.importorskip("deflate", reason="libdeflate (pip install hpcapp[fast]) is not installed")


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the chunks the direct path inflates; let small test chunks take it."""
    calls = [0]
    values = inflate.DirectReader._values

    def counting(self: inflate.DirectReader, stored: bytes, into=None) -> np.ndarray:
        calls[0] += 1
        return values(self, stored, into)

    monkeypatch.setattr(inflate.DirectReader, "_values", counting)
    monkeypatch.setattr(inflate, "MIN_CHUNK_BYTES", 0)
    return calls


@st.composite
def cases(draw: st.DrawFn) -> tuple[np.ndarray, tuple[int, ...], bool, tuple[slice, ...]]:
    """A dataset, its chunk shape, whether shuffled, and a box to read."""
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
    chunk = tuple(draw(st.integers(1, n)) for n in shape)
    dtype = draw(st.sampled_from(["<i2", ">i2", "u1", "<i4", "<f4", ">f8", "<u2"]))
    box = []
    for n in shape:
        a = draw(st.integers(0, n - 1))
        box.append(slice(a, draw(st.integers(a + 1, n))))
    seed = draw(st.integers(0, 2**16))
    data = np.random.default_rng(seed).integers(-100, 100, shape).astype(dtype)
    return data, chunk, draw(st.booleans()), tuple(box)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=cases())
def test_direct_read_is_hdf5s_bytes(tmp_path: Path, counted: list[int], case) -> None:
    """Any box of any chunked, deflated (and shuffled) dataset reads the bytes HDF5 reads."""
    data, chunk, shuffle, box = case
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=data, chunks=chunk, compression="gzip", shuffle=shuffle)
    with h5py.File(path, "r") as f:
        dataset = f["x"]
        want = dataset[box]
        reader = inflate.direct_reader(dataset.id)
        assert reader is not None
        got = np.full(want.shape, 7, want.dtype)
        before = counted[0]
        reader.read(dataset.id, tuple(s.start for s in box), got)
    assert counted[0] > before
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()


def test_pipelines_it_does_not_take(tmp_path: Path, counted: list[int]) -> None:
    """Other filters, no filter, contiguous and type-converting reads are left to HDF5."""
    data = np.arange(64, dtype="<i2").reshape(8, 8)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("lzf", data=data, chunks=(4, 4), compression="lzf")
        f.create_dataset("fletcher", data=data, chunks=(4, 4), compression="gzip", fletcher32=True)
        f.create_dataset("plain", data=data, chunks=(4, 4))
        f.create_dataset("contiguous", data=data)
        f.create_dataset("gzip", data=data, chunks=(4, 4), compression="gzip")
    with h5py.File(tmp_path / "d.h5", "r") as f:
        for name in ("lzf", "fletcher", "plain", "contiguous"):
            assert inflate.direct_reader(f[name].id) is None, name
        reader = inflate.direct_reader(f["gzip"].id)
        assert reader is not None
        for other in ("f8", "i1", "i4"):  # HDF5 converts (and clips) its own way: not here
            with pytest.raises(inflate.Fallback):
                reader.read(f["gzip"].id, (0, 0), np.empty((8, 8), other))


def test_unwritten_chunk_falls_back(tmp_path: Path, counted: list[int]) -> None:
    """A chunk never written has no stored bytes: the read raises Fallback, HDF5 gives the fill."""
    with h5py.File(tmp_path / "d.h5", "w") as f:
        d = f.create_dataset("x", (8, 8), "<i2", chunks=(4, 4), compression="gzip", fillvalue=-9)
        d[:4] = 1
    with h5py.File(tmp_path / "d.h5", "r") as f:
        reader = inflate.direct_reader(f["x"].id)
        assert reader is not None
        out = np.empty((8, 8), "<i2")
        reader.read(f["x"].id, (0, 0), out[:4])
        assert (out[:4] == 1).all()
        with pytest.raises(inflate.Fallback):
            reader.read(f["x"].id, (0, 0), out)


def test_jobs_give_the_same_bits(tmp_path: Path, counted: list[int], monkeypatch) -> None:
    """A packed, shuffled, deflated netCDF input and a many-file one: same results either way."""
    rng = np.random.default_rng(3)
    stored = rng.integers(-3000, 3000, (24, 6, 10)).astype("i2")
    stored[3, 2, 4] = -32767
    attrs = {"scale_factor": 0.01, "add_offset": 280.0}
    fill = np.int16(-32767)
    one = write_netcdf(tmp_path / "one.nc", stored, attrs=attrs, fill_value=fill, zlib=True)
    for i in range(3):
        part = stored[8 * i : 8 * (i + 1)]
        write_netcdf(tmp_path / f"y{i}.nc", part, attrs=attrs, fill_value=fill, zlib=True)
    many = str(tmp_path / "y*.nc") + ":/tas"
    for n, spec in enumerate((one, many)):
        before = counted[0]
        direct = stats(spec, tmp_path / f"a{n}.h5", chunk_rows=5, extra=["--over", "time"])
        assert counted[0] > before, spec
        monkeypatch.setenv("HPCAPP_HDF5_INFLATE", "1")
        before = counted[0]
        through_hdf5 = stats(spec, tmp_path / f"b{n}.h5", chunk_rows=5, extra=["--over", "time"])
        assert counted[0] == before
        monkeypatch.delenv("HPCAPP_HDF5_INFLATE")
        assert direct.keys() == through_hdf5.keys()
        for key, value in direct.items():
            assert np.asarray(value).tobytes() == np.asarray(through_hdf5[key]).tobytes(), key
