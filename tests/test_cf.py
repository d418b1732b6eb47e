"""CF decoding of inputs: fill and missing values, valid range, packing, --raw."""

import h5py
import numpy as np
import pytest
from helpers import cli_here, read_results
from ncdata import check_against, reference, write_netcdf

from hpcapp.io.coding.variables import Decoder, decoding_of

SCALE, OFFSET, FILL, MISSING = np.float32(0.01), np.float32(280.0), -32767, -32000
PACKED_ATTRS = {
    "scale_factor": SCALE,
    "add_offset": OFFSET,
    "missing_value": np.int16(MISSING),
    "valid_range": np.array([-3000, 3000], np.int16),
    "units": "K",
}


def packed_field(shape=(30, 3, 4), seed=5, mask_valid_range=True):
    """int16 stored values with fill, missing and out-of-range cells, and their decoded values.

    Out-of-range cells are missing only with ``mask_valid_range`` (xarray keeps them)."""
    rng = np.random.default_rng(seed)
    stored = rng.integers(-3100, 3100, size=shape).astype(np.int16)
    stored[rng.random(shape) < 0.05] = FILL
    stored[rng.random(shape) < 0.03] = MISSING
    stored[:, 2, 3] = FILL  # a cell with no values
    values = stored.astype(np.float32) * SCALE + OFFSET
    bad = (stored == FILL) | (stored == MISSING)
    if mask_valid_range:
        bad |= (stored < -3000) | (stored > 3000)
    values[bad] = np.nan
    return stored, values


def test_decoder_masks_and_unpacks_like_the_cf_rules():
    stored, values = packed_field()
    attrs = {**PACKED_ATTRS, "_FillValue": np.int16(FILL)}
    decoding = decoding_of(attrs, stored.dtype, mask_valid_range=True)
    assert decoding.dtype == "<f4" and decoding.units == "K"
    assert {value for value, _ in decoding.missing} == {FILL, MISSING}
    decoded = Decoder(decoding, 8, stored.shape[1:])(stored[:7])
    np.testing.assert_array_equal(decoded, values[:7])  # NaN where missing, bit for bit
    assert decoded.dtype == np.float32


def test_decoding_choices():
    floats = decoding_of({"_FillValue": np.float32(-999.0)}, np.dtype("f4"))
    data = np.array([[1.5, -999.0, np.nan]], np.float32)
    out = Decoder(floats, 1, (3,))(data)
    assert out[0, 0] == 1.5 and np.isnan(out[0, 1:]).all() and out.dtype == np.float32
    assert not decoding_of({"units": "m"}, np.dtype("i4")).changes_values
    assert decoding_of({"_FillValue": 0}, np.dtype("i4")).dtype == "<f8"  # masked ints: float
    assert decoding_of({"_FillValue": 0}, np.dtype("u1")).dtype == "<f4"
    assert decoding_of({"scale_factor": 0.5}, np.dtype("i2")).dtype == "<f8"
    scaled = decoding_of({"scale_factor": np.float32(0.5)}, np.dtype("i2"))  # no masks needed
    stored = np.array([[-2, 0, 3]], np.int16)
    np.testing.assert_array_equal(Decoder(scaled, 1, (3,))(stored), [[-1.0, 0.0, 1.5]])
    raw = decoding_of(PACKED_ATTRS, np.dtype("i2"), raw=True)
    assert not raw.changes_values and raw.units is None  # stored integers are not in kelvin


def test_decoded_values_are_xarrays(tmp_path):
    """With one fill value and no valid range (what xarray reads), the values are xarray's."""
    import xarray as xr

    stored, _ = packed_field()
    attrs = {"scale_factor": SCALE, "add_offset": OFFSET}
    spec = write_netcdf(tmp_path / "in.nc", stored, attrs=attrs, fill_value=np.int16(FILL))
    with h5py.File(tmp_path / "in.nc") as h5:
        decoding = decoding_of(dict(h5["tas"].attrs), h5["tas"].dtype)
    ours = Decoder(decoding, len(stored), stored.shape[1:])(stored)
    with xr.open_dataset(spec.rpartition(":")[0], engine="h5netcdf") as ds:
        theirs = ds["tas"].values
    assert theirs.dtype == ours.dtype
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize(
    ("distribute", "mask_valid_range"), [("read", False), ("scatter", False), ("read", True)]
)
def test_packed_input_statistics_are_numpys_on_the_decoded_values(
    tmp_path, distribute, mask_valid_range
):
    stored, values = packed_field(mask_valid_range=mask_valid_range)
    spec = write_netcdf(tmp_path / "in.nc", stored, attrs=PACKED_ATTRS, fill_value=np.int16(FILL))
    out = tmp_path / "out.nc"
    argv = ["run", "stats", spec, "-o", str(out), "--chunk-rows", "7", "-q"]
    argv += ["--distribute", distribute, "-p", "bins=6", "-p", "range=250,310"]
    argv += ["--mask-valid-range"] if mask_valid_range else []
    done = cli_here(argv)
    assert done.returncode == 0, done.stderr
    results = read_results(out)
    check_against(results, reference(values, (0,), 6, (250.0, 310.0)))
    assert results["nan_count"][2, 3] == len(stored) and np.isnan(results["mean"][2, 3])


def test_raw_keeps_the_stored_values(tmp_path):
    stored, _ = packed_field()
    spec = write_netcdf(tmp_path / "in.nc", stored, attrs=PACKED_ATTRS, fill_value=np.int16(FILL))
    out = tmp_path / "out.nc"
    done = cli_here(["run", "stats", spec, "-o", str(out), "--raw", "--over", "time", "-q"])
    assert done.returncode == 0, done.stderr
    results = read_results(out)
    np.testing.assert_array_equal(results["min"], stored.min(axis=0))
    np.testing.assert_array_equal(results["count"], np.full(stored.shape[1:], len(stored)))
    with h5py.File(out) as h5:
        assert "units" not in h5["tas_mean"].attrs


@pytest.mark.parametrize("packed", [False, True])
def test_unsigned_bytes_stored_signed_decode_as_xarray_does(tmp_path, packed):
    """netCDF's ``_Unsigned = "true"``: int8 bits read as uint8, fill value included."""
    import xarray as xr

    rng = np.random.default_rng(9)
    values = rng.integers(0, 256, size=(12, 2, 3)).astype(np.uint8)
    values[rng.random(values.shape) < 0.1] = 255  # the fill value, stored as int8 -1
    stored = values.view(np.int8)
    attrs = {"_Unsigned": "true", **({"scale_factor": np.float32(0.5)} if packed else {})}
    spec = write_netcdf(tmp_path / "in.nc", stored, attrs=attrs, fill_value=np.int8(-1))
    with xr.open_dataset(spec.rpartition(":")[0], engine="h5netcdf") as ds:
        theirs = ds["tas"].values
    with h5py.File(tmp_path / "in.nc") as h5:
        decoding = decoding_of(dict(h5["tas"].attrs), h5["tas"].dtype)
    ours = Decoder(decoding, len(stored), stored.shape[1:])(stored)
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)
    assert np.nanmax(ours) / (0.5 if packed else 1) > 127  # unsigned: not the signed reading
    out = tmp_path / "out.nc"
    done = cli_here(["run", "stats", spec, "-o", str(out), "--chunk-rows", "5", "-q"])
    assert done.returncode == 0, done.stderr
    results = read_results(out)
    np.testing.assert_allclose(
        results["mean"], np.nanmean(theirs.astype(float), axis=0), rtol=1e-12
    )
    np.testing.assert_array_equal(results["nan_count"], np.isnan(theirs).sum(axis=0))
