"""``rolling`` mean/sum by strips of cells, decoding packed chunks itself; halo chunk counts."""

import numpy as np
import pytest
import xarray as xr
from helpers import root_attrs, run_here
from ncdata import write_netcdf

from hpcapp.io.records import HALO_CHUNKS, halo_chunk_rows
from hpcapp.kernels import rolling
from hpcapp.partition import count_chunks

PACKING = {"scale_factor": np.float32(0.01), "add_offset": np.float32(273.15)}


def packed_file(path, shape=(40, 3, 5), seed=3):
    """Write packed int16 with a _FillValue and a valid_max masking more values; return spec."""
    rng = np.random.default_rng(seed)
    stored = rng.integers(-3000, 3000, shape).astype("i2")
    stored[rng.random(shape) < 0.15] = -32767
    stored[5, 0, 1] = 2999  # above valid_max: masked too
    attrs = {**PACKING, "valid_max": np.int16(2990)}
    return write_netcdf(path, stored, attrs=attrs, fill_value=np.int16(-32767))


def decoded_file(packed, path):
    """Write the values xarray decodes from ``packed`` as plain float32 (NaN where masked)."""
    with xr.open_dataset(packed.split(":")[0]) as ds:
        values = ds.tas.values
    assert values.dtype == np.float32
    return write_netcdf(path, values)


@pytest.mark.parametrize("stat", ["mean", "sum", "std", "max"])
@pytest.mark.parametrize(("window", "center", "least"), [(4, False, None), (7, True, 2)])
def test_packed_chunks_give_the_bits_of_decoded_ones(tmp_path, stat, window, center, least):
    """mean/sum decode the stored integers in their loop; the others decode with numpy."""
    packed = packed_file(tmp_path / "packed.nc")
    plain = decoded_file(packed, tmp_path / "plain.nc")
    params = {"window": window, "stat": stat, "center": center, "min_periods": least}
    got = run_here("rolling", packed, params=params, chunk_rows=6)["rolling"]
    expected = run_here("rolling", plain, params=params, chunk_rows=40)["rolling"]
    assert got.dtype == np.float32 and got.tobytes() == expected.tobytes()
    with xr.open_dataset(tmp_path / "packed.nc") as ds:
        windows = ds.tas.rolling(time=window, center=center, min_periods=least)
        peer = getattr(windows, stat)().values
    np.testing.assert_array_equal(np.isnan(got), np.isnan(peer))
    np.testing.assert_allclose(got, peer, rtol=1e-6)


@pytest.mark.parametrize("strip_bytes", [0, 40 * 4 * 3, 40 * 8 * 7])
@pytest.mark.parametrize("packed", [True, False])
def test_strips_of_cells_give_the_bits_of_one_strip(tmp_path, monkeypatch, strip_bytes, packed):
    """One cell a strip, or 3 or 7 (15 cells: a last strip narrower), as all 15 at once."""
    spec = packed_file(tmp_path / "in.nc")
    if not packed:  # float64 with infinities: their windows are summed directly
        values = np.random.default_rng(6).normal(size=(40, 3, 5))
        values[4, 1, 2], values[9, 2, 4], values[30, 0, 0] = np.inf, -np.inf, np.nan
        spec = write_netcdf(tmp_path / "plain.nc", values)
    params = {"window": 6, "stat": "mean", "center": True, "min_periods": 1}
    whole = run_here("rolling", spec, params=params, chunk_rows=40)["rolling"]
    monkeypatch.setattr(rolling, "STRIP_BYTES", strip_bytes)
    for rows in (40, 9):
        got = run_here("rolling", spec, params=params, chunk_rows=rows)["rolling"]
        assert got.tobytes() == whole.tobytes()
    with xr.open_dataset(spec.split(":")[0]) as ds, np.errstate(invalid="ignore"):
        peer = ds.tas.rolling(time=6, center=True, min_periods=1).mean().values
    np.testing.assert_array_equal(np.isnan(whole), np.isnan(peer))
    np.testing.assert_allclose(whole, peer, rtol=1e-6 if packed else 1e-12)


@pytest.mark.parametrize("n_rows", [100, 1000, 2000, 3650, 5000, 7000, 13_000, 36_500])
@pytest.mark.parametrize("halo", [0, 40, 93])
def test_halo_chunks_are_long_and_an_even_count(n_rows, halo):
    rows = halo_chunk_rows(n_rows, 32, halo)
    assert rows >= max(32, HALO_CHUNKS * halo)
    if halo == 0:
        assert rows == 32
        return
    count = count_chunks(n_rows, rows)
    most = n_rows // (HALO_CHUNKS * halo)
    if most >= 2:
        assert count % 2 == 0 and count * 3 >= most * 2  # chunks at most half longer
        assert count in (2,) or count % 4 == 0 or count % 6 == 0
    else:
        assert rows == HALO_CHUNKS * halo


def test_a_rolling_job_cuts_its_records_into_an_even_count_of_chunks(tmp_path, monkeypatch):
    """Window 31 centred: 93 records of halo; 3,650 records make 4 chunks, not 5.

    (The default chunk of a row as small as this one's would hold every record.)
    """
    from hpcapp.io.sources.hdf5 import Hdf5Source

    monkeypatch.setattr(Hdf5Source, "default_chunk_rows", lambda self: 32)
    values = np.random.default_rng(1).normal(size=(3650, 1, 2)).astype(np.float32)
    spec = write_netcdf(tmp_path / "in.nc", values)
    out = tmp_path / "out.nc"
    run_here("rolling", spec, output=str(out), params={"window": 31, "center": True})
    attrs = root_attrs(out)
    assert (int(attrs["chunk_rows"]), int(attrs["n_chunks"])) == (913, 4)


def test_each_chunks_rows_start_going_to_disk_once_written(tmp_path, monkeypatch):
    """Every byte of the per-row output is advised (POSIX_FADV_DONTNEED), chunk by chunk."""
    import os

    advised = []
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, *advice: advised.append(advice))
    values = np.random.default_rng(2).normal(size=(40, 3, 5)).astype(np.float32)
    spec = write_netcdf(tmp_path / "in.nc", values)
    out = tmp_path / "out.nc"
    run_here("rolling", spec, output=str(out), params={"window": 3}, chunk_rows=9)
    row_bytes = 15 * 4
    lengths = [length for _, length, _ in advised]
    assert lengths == [9 * row_bytes] * 4 + [4 * row_bytes]
    starts = [offset - advised[0][0] for offset, _, _ in advised]
    assert starts == [0, 9 * row_bytes, 18 * row_bytes, 27 * row_bytes, 36 * row_bytes]
    assert {how for _, _, how in advised} == {os.POSIX_FADV_DONTNEED}


def test_advice_the_system_refuses_does_not_fail_the_job(tmp_path, monkeypatch):
    import os

    def refuse(*args):
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "posix_fadvise", refuse)
    values = np.random.default_rng(2).normal(size=(20, 2, 3)).astype(np.float32)
    spec = write_netcdf(tmp_path / "in.nc", values)
    out = tmp_path / "out.nc"
    run_here("rolling", spec, output=str(out), params={"window": 3}, chunk_rows=7)
    with xr.open_dataset(out) as ds, xr.open_dataset(tmp_path / "in.nc") as given:
        expected = given.tas.rolling(time=3).mean().values
        np.testing.assert_allclose(ds.tas_rolling.values, expected, rtol=1e-6)
