"""The CF decoding policy: the values a kernel sees are xarray's default decoding, or a refusal.

Inputs are written by netCDF4-python with the raw values as stored; the reference is
``xr.open_dataset`` (default engine and decoding) on the same file. The deliberate differences
(README, "CF decoding") are modelled here explicitly, one line each.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import cli_here, read_results, root_attrs
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hpcapp.errors import UsageError
from hpcapp.io.coding.variables import Decoder, decoding_of


def write_variable(path: Path, stored: np.ndarray, attrs: dict, fill=None) -> str:
    """Write ``stored`` (time, x) as ``v`` with ``attrs`` set as given; return the spec."""
    import netCDF4

    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", stored.shape[0])
        ds.createDimension("x", stored.shape[1])
        var = ds.createVariable("v", stored.dtype, ("time", "x"), fill_value=fill)
        var.set_auto_maskandscale(False)
        for key, value in attrs.items():
            var.setncattr(key, value)
        var[:] = stored
    return f"{path}:/v"


def xarray_values(path: Path) -> np.ndarray:
    """Return xarray's default decoding of ``v`` (its warnings about odd attributes ignored)."""
    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with xr.open_dataset(path) as ds:
            return ds["v"].values


def hpcapp_values(path: Path, **options) -> np.ndarray:
    """Return hpcapp's decoding of ``v`` (what a kernel sees)."""
    with h5py.File(path) as h5:
        decoding = decoding_of(dict(h5["v"].attrs), h5["v"].dtype, **options)
        stored = h5["v"][()]
    return Decoder(decoding, len(stored), stored.shape[1:])(stored).copy()


STORED = ["i1", "i2", "i4", "u1", "u2", "f4", "f8"]
ATTR_TYPES = ["i1", "i2", "i4", "f4", "f8"]


@st.composite
def cf_variables(draw):
    """A small stored array and a set of CF attributes, in and out of the dtype's range."""
    kind = np.dtype(draw(st.sampled_from(STORED)))
    if kind.kind == "f":
        pool = np.array([0, 1.5, -2.25, 100.0, -999.0, 1e20], kind)
    else:
        info = np.iinfo(kind)
        pool = np.array(sorted({0, 1, 2, 100, info.min, info.max, info.max - 1}), kind)
    stored = np.array(draw(st.lists(st.sampled_from(list(pool)), min_size=6, max_size=6)), kind)
    stored = stored.reshape(3, 2)
    attrs: dict = {}
    fill = None
    if draw(st.booleans()):
        fill = kind.type(draw(st.sampled_from(list(pool))))  # netCDF-4: the variable's type
    if draw(st.booleans()):
        attr_type = np.dtype(draw(st.sampled_from(ATTR_TYPES)))
        choices = [*pool.tolist(), 1e20, -999.5, -999, float("nan")]
        value = draw(st.sampled_from(choices))
        if attr_type.kind == "f" or (np.isfinite(value) and float(value).is_integer()):
            with np.errstate(over="ignore", invalid="ignore"):
                cast = np.array(value).astype(attr_type)
            if attr_type.kind == "f" or cast == value:  # what the attribute can hold
                attrs["missing_value"] = cast
    packing = draw(st.sampled_from(["none", "scale", "offset", "both"]))
    if packing != "none":
        types = [np.dtype(draw(st.sampled_from(["f4", "f8"]))) for _ in range(2)]
        if draw(st.booleans()):  # CF's usual case: both of one type
            types[1] = types[0]
        if packing in ("scale", "both"):
            attrs["scale_factor"] = types[0].type(draw(st.sampled_from([0.01, 0.5, 2.0, 1 / 3])))
        if packing in ("offset", "both"):
            attrs["add_offset"] = types[1].type(draw(st.sampled_from([0.0, 273.15, -1e3])))
    if kind.kind in "iu" and draw(st.booleans()):
        attrs["_Unsigned"] = draw(st.sampled_from(["true", "false"]))
    if draw(st.booleans()):
        low, high = sorted(draw(st.lists(st.sampled_from(list(pool)), min_size=2, max_size=2)))
        attrs["valid_range"] = np.array([low, high], kind)
    return stored, attrs, fill


def expected_from_xarray(path: Path, stored: np.ndarray, attrs: dict) -> np.ndarray:
    """xarray's values, with hpcapp's one deliberate masking difference applied."""
    expected = xarray_values(path)
    flag, missing, kind = attrs.get("_Unsigned"), attrs.get("missing_value"), stored.dtype.kind
    # missing_value follows _Unsigned as _FillValue does (xarray converts only _FillValue).
    flips = (kind, flag) in (("i", "true"), ("u", "false"))
    if flips and missing is not None and missing.dtype.kind in "iu" and expected.dtype.kind == "f":
        view = np.dtype(f"{'u' if kind == 'i' else 'i'}{stored.dtype.itemsize}")
        if np.array(missing).astype(view) == missing:
            return expected  # already the value meant: xarray masks it too
        bits = np.array(missing).astype(stored.dtype)
        if bits != missing:
            return expected  # the stored type cannot hold it: it masks nothing
        bits = bits.view(view)
        expected = expected.copy()
        expected[stored.view(view) == bits] = np.nan
    return expected


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=cf_variables())
# A NaN missing_value masks nothing, yet keeps float32 data float32 under a float64 scale.
@example(case=(np.zeros((3, 2), "f4"), {"missing_value": np.float32("nan"),
                                        "scale_factor": np.float64(0.01)}, None))  # fmt: skip
def test_decoded_values_equal_xarrays_for_any_attribute_set(tmp_path, case):
    stored, attrs, fill = case
    path = tmp_path / "in.nc"
    path.unlink(missing_ok=True)
    write_variable(path, stored, attrs, fill)
    ours = hpcapp_values(path)
    theirs = expected_from_xarray(path, stored, attrs)
    assert ours.dtype == theirs.dtype, (ours.dtype, theirs.dtype, attrs, fill)
    np.testing.assert_array_equal(ours, theirs, err_msg=f"{attrs} fill={fill}")


# The cases, each through the real CLI: (stored dtype, cell values, attributes,
# the count and mean xarray gives for the cell).
IGNORED_FILLS = [
    ("i2", [0, 2, 0], {"missing_value": np.float64(np.nan)}),
    ("i2", [0, 2, 0], {"missing_value": np.float64(1e20)}),
    ("i1", [25, 2, -25], {"missing_value": np.int32(-999)}),
    ("i2", [-999, 2, 0], {"missing_value": np.float64(-999.5)}),
    ("f4", [np.float32(1e20), 2, 0], {"missing_value": np.float64(1e20)}),
]


@pytest.mark.parametrize(("dtype", "cell", "attrs"), IGNORED_FILLS)
def test_a_fill_value_the_type_cannot_hold_masks_nothing(tmp_path, dtype, cell, attrs):
    stored = np.array(cell, dtype).reshape(3, 1)
    spec = write_variable(tmp_path / "in.nc", stored, attrs)
    theirs = xarray_values(tmp_path / "in.nc")
    assert not np.isnan(theirs).any()  # xarray masks nothing here
    out = tmp_path / "out.h5"
    done = cli_here(["run", "stats", spec, "-o", str(out), "-q"])
    assert done.returncode == 0, done.stderr
    results = read_results(out)
    assert results["count"][0] == 3
    assert results["mean"][0] == np.mean(theirs.astype(np.float64))


def test_a_fill_value_in_range_still_masks(tmp_path):
    """The other side of the rule: a double -999 on int16 masks the -999 cells."""
    stored = np.array([-999, 2, 4], "i2").reshape(3, 1)
    spec = write_variable(tmp_path / "in.nc", stored, {"missing_value": np.float64(-999.0)})
    out = tmp_path / "out.h5"
    done = cli_here(["run", "stats", spec, "-o", str(out), "-q"])
    assert done.returncode == 0, done.stderr
    results = read_results(out)
    assert results["count"][0] == 2 and results["mean"][0] == 3.0


BAD_ATTRIBUTES = [
    ({"scale_factor": "0.01"}, "scale_factor"),
    ({"add_offset": "273.15"}, "add_offset"),
    ({"missing_value": "N/A"}, "missing_value"),
    ({"scale_factor": np.float32(np.nan)}, "scale_factor"),
    ({"scale_factor": np.array([0.5, 2.0], np.float32)}, "scale_factor"),
]


@pytest.mark.parametrize(("attrs", "name"), BAD_ATTRIBUTES)
def test_malformed_cf_attributes_are_refused_naming_file_variable_attribute(tmp_path, attrs, name):
    stored = np.arange(6, dtype="i2").reshape(3, 2)
    spec = write_variable(tmp_path / "in.nc", stored, attrs)
    out = tmp_path / "out.h5"
    done = cli_here(["run", "stats", spec, "-o", str(out), "-q"])
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert str(tmp_path / "in.nc") in lines[0] and ":/v" in lines[0] and name in lines[0]
    assert not out.exists()
    # --raw decodes nothing, so it reads such a file as stored.
    done = cli_here(["run", "stats", spec, "-o", str(out), "-q", "--raw"])
    assert done.returncode == 0, done.stderr


def test_packing_dtypes_are_xarrays():
    """int32 with float32 packing decodes in float64, an offset alone too (xarray's rule)."""
    f4, f8 = np.float32, np.float64
    cases = [
        ("i4", {"scale_factor": f4(0.1), "add_offset": f4(1.0)}, "<f8"),
        ("i2", {"scale_factor": f4(0.1), "add_offset": f4(1.0)}, "<f4"),
        ("i2", {"add_offset": f4(1.0)}, "<f8"),
        ("i2", {"scale_factor": f4(0.1)}, "<f4"),
        ("i2", {"scale_factor": f4(0.1), "add_offset": f8(1.0)}, "<f8"),
        ("i2", {"scale_factor": np.int16(2)}, "<f8"),  # xarray: int16 (may overflow)
        ("u1", {"_FillValue": np.uint8(255)}, "<f4"),
        ("i4", {"_FillValue": np.int32(-1)}, "<f8"),
        ("f4", {"missing_value": f8(1e20)}, "<f4"),
    ]
    for stored, attrs, dtype in cases:
        assert decoding_of(attrs, np.dtype(stored)).dtype == dtype, (stored, attrs)


def test_int32_packed_with_float32_is_decoded_in_float64(tmp_path):
    stored = np.array([[123456789], [-7], [2**30 + 3]], "i4")
    attrs = {"scale_factor": np.float32(0.001), "add_offset": np.float32(5.0)}
    write_variable(tmp_path / "in.nc", stored, attrs)
    ours, theirs = hpcapp_values(tmp_path / "in.nc"), xarray_values(tmp_path / "in.nc")
    assert ours.dtype == theirs.dtype == np.float64
    np.testing.assert_array_equal(ours, theirs)


def test_valid_range_is_ignored_by_default_and_masked_on_request(tmp_path):
    stored = np.array([[-5], [0], [5], [50]], "i2")
    write_variable(tmp_path / "in.nc", stored, {"valid_range": np.array([0, 10], "i2")})
    np.testing.assert_array_equal(hpcapp_values(tmp_path / "in.nc"), stored)
    masked = hpcapp_values(tmp_path / "in.nc", mask_valid_range=True)
    np.testing.assert_array_equal(masked[:, 0], [np.nan, 0, 5, np.nan])
    assert masked.dtype == np.float32
    spec = f"{tmp_path / 'in.nc'}:/v"
    out = tmp_path / "out.h5"
    done = cli_here(["run", "stats", spec, "-o", str(out), "-q", "--mask-valid-range"])
    assert done.returncode == 0, done.stderr
    results = read_results(out)
    assert results["count"][0] == 2 and results["mean"][0] == 2.5
    attrs = root_attrs(out)
    assert attrs["cf_decoding"] == "xarray-default+valid-range"
    assert attrs["job_identity"]["cf"]["policy"] == "xarray-default+valid-range"


def test_an_empty_valid_range_is_refused_when_asked_to_mask_it(tmp_path):
    attrs = {"valid_min": np.int16(10), "valid_max": np.int16(0)}
    stored = np.arange(4, dtype="i2").reshape(4, 1)
    write_variable(tmp_path / "in.nc", stored, attrs)
    with h5py.File(tmp_path / "in.nc") as h5:
        assert not decoding_of(dict(h5["v"].attrs), h5["v"].dtype).changes_values
        with pytest.raises(UsageError, match="valid range"):
            decoding_of(dict(h5["v"].attrs), h5["v"].dtype, mask_valid_range=True)


def test_unsigned_missing_value_follows_unsigned_as_netcdf_c_reads_it(tmp_path):
    """``_Unsigned="true"``, ``missing_value=-1`` on int8: 255 is missing (netCDF4-python)."""
    import netCDF4

    values = np.array([[1], [255], [200]], np.uint8)
    attrs = {"_Unsigned": "true", "missing_value": np.int8(-1)}
    write_variable(tmp_path / "in.nc", values.view(np.int8), attrs)
    ours = hpcapp_values(tmp_path / "in.nc")
    with netCDF4.Dataset(tmp_path / "in.nc") as ds:
        theirs = ds["v"][:]
    np.testing.assert_array_equal(np.ma.getmaskarray(theirs)[:, 0], [False, True, False])
    np.testing.assert_array_equal(ours[:, 0], [1, np.nan, 200])


def test_many_files_each_mask_their_own_valid_range(tmp_path):
    """With --mask-valid-range each file masks by its own valid_range, as netCDF-C reads it."""
    for name, high in (("a", 10), ("b", 20)):
        stored = np.arange(4, dtype="i2").reshape(4, 1) * 5
        write_variable(tmp_path / f"{name}.nc", stored, {"valid_range": np.array([0, high], "i2")})
    spec = f"{tmp_path}/*.nc:/v"
    out = tmp_path / "out.h5"
    done = cli_here(["run", "stats", spec, "-o", str(out), "-q"])
    assert done.returncode == 0, done.stderr
    assert read_results(out)["count"][0] == 8
    done = cli_here(
        ["run", "stats", spec, "-o", str(out), "-q", "--overwrite", "--mask-valid-range"]
    )
    assert done.returncode == 0, done.stderr
    # a.nc masks its 15 (above 10); b.nc keeps all four (up to 20).
    assert read_results(out)["count"][0] == 7
    assert read_results(out)["max"][0] == 15
