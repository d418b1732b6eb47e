"""``rolling`` mean/sum by strips of cells, decoding packed chunks itself."""

import numpy as np
import pytest
import xarray as xr
from helpers import run_here
from ncdata import write_netcdf

from hpcapp.kernels import rolling

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
