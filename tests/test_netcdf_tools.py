"""CDO, NCO and netCDF-C's ncdump read hpcapp's outputs, and print our numbers.

Needs Debian's ``cdo``, ``nco`` and ``netcdf-bin`` (``.ci/run`` installs them). Without them the
tests are skipped, saying so; in CI (``CI=true``) a missing tool is a failure, never a skip.
"""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from helpers import cli_here, read_results, result_names, write_dataset

pytestmark = pytest.mark.nctools

TOOLS = ("cdo", "ncdump", "ncks")
DAYS = 730  # two noleap years of daily values
# `cdo infon` lines: number : date time level gridsize missing : [min] mean [max] : name
INFON = re.compile(
    r"^\s*\d+ : (?P<date>\S+) (?P<time>\S+)\s+(?P<level>\S+)\s+(?P<size>\d+)\s+(?P<miss>\d+) :"
    r"(?P<values>[^:]*): (?P<name>\S+)\s*$"
)


@pytest.fixture(scope="module", autouse=True)
def tools():
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        why = f"{', '.join(missing)} not installed (apt-get install cdo nco netcdf-bin)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs the netCDF tools: {why}", pytrace=False)
        pytest.skip(why)


def tool(*args: str) -> str:
    """Run a netCDF tool; return what it printed (stdout), failing on an error or a warning."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{' '.join(args)}: {done.stderr}"
    assert "arning" not in done.stderr, f"{' '.join(args)}: {done.stderr}"
    return done.stdout


def infon(path) -> list[dict]:
    """Return the lines of `cdo infon` as dicts (name, date, level, size, miss, values)."""
    found = []
    for line in tool("cdo", "-s", "infon", str(path)).splitlines():
        match = INFON.match(line)
        if match:
            entry = match.groupdict()
            entry["values"] = [float(v) for v in entry["values"].split()]
            found.append(entry)
    return found


def cdo_values(path, name: str) -> np.ndarray:
    """Return every value of variable ``name`` as CDO reads it (17 significant digits)."""
    printed = tool("cdo", "-s", "outputf,%.17g,1", f"-selname,{name}", str(path)).split()
    return np.array([float(v) for v in printed])


def ncdump_values(path, name: str) -> list[str]:
    """Return the values `ncdump -v NAME` prints for ``name`` (as text)."""
    printed = tool("ncdump", "-v", name, str(path))
    body = printed.split("data:", 1)[1].split(f"{name} =", 1)[1].split(";", 1)[0]
    return [value.strip() for value in body.replace("\n", " ").split(",")]


@pytest.fixture(scope="module")
def cf_field(tmp_path_factory):
    """A CF netCDF tas(time, lat, lon): packed, one cell always missing, with bounds."""
    import netCDF4

    path = tmp_path_factory.mktemp("cf") / "tas.nc"
    rng = np.random.default_rng(5)
    with netCDF4.Dataset(path, "w") as ds:
        for name, size in (("time", None), ("lat", 3), ("lon", 4), ("bnds", 2)):
            ds.createDimension(name, size)
        time = ds.createVariable("time", "f8", ("time",))
        time.setncatts({"units": "days since 2000-01-01", "calendar": "noleap"})
        time.setncatts({"standard_name": "time", "bounds": "time_bnds", "axis": "T"})
        time[:] = np.arange(DAYS) + 0.5
        ds.createVariable("time_bnds", "f8", ("time", "bnds"))[:] = np.stack(
            [np.arange(DAYS), np.arange(DAYS) + 1.0], 1
        )
        for name, values, units in (
            ("lat", [-60.0, 0.0, 60.0], "degrees_north"),
            ("lon", [45.0, 135.0, 225.0, 315.0], "degrees_east"),
        ):
            coord = ds.createVariable(name, "f8", (name,))
            coord.setncatts({"units": units, "bounds": f"{name}_bnds"})
            coord.standard_name = "latitude" if name == "lat" else "longitude"
            coord[:] = values
            step = values[1] - values[0]
            edges = np.stack([np.array(values) - step / 2, np.array(values) + step / 2], 1)
            ds.createVariable(f"{name}_bnds", "f8", (name, "bnds"))[:] = edges
        var = ds.createVariable("tas", "i2", ("time", "lat", "lon"), fill_value=np.int16(-32767))
        var.setncatts({"scale_factor": np.float32(0.01), "add_offset": np.float32(280.0)})
        var.setncatts({"units": "K", "standard_name": "air_temperature"})
        var.long_name = "Near-Surface Air Temperature"
        var.set_auto_maskandscale(False)
        stored = rng.integers(-2000, 2000, size=(DAYS, 3, 4)).astype(np.int16)
        stored[:, 0, 0] = -32767  # a cell with no values: NaN results, missing for CDO
        var[:] = stored
        ds.setncatts({"title": "a CF test field", "institution": "nowhere"})
        ds.Conventions = "CF-1.7"
        ds.history = "Mon Jan 01 00:00:00 2024: made by the test"
    return path


def run(tmp_path, spec: str, name: str, *options: str):
    out = tmp_path / f"{name}.nc"
    done = cli_here(["run", "stats", spec, "-o", str(out), "--chunk-rows", "97", "-q", *options])
    assert done.returncode == 0, done.stderr
    return out


def test_2d_stats_read_by_cdo_and_ncdump(tmp_path):
    data = np.random.default_rng(1).normal(size=(500, 3))
    data[:, 2] = np.nan  # a column with no values
    data[::7, 0] = np.nan
    out = run(tmp_path, write_dataset(tmp_path / "in.h5", data), "table")
    ours = read_results(out)
    lines = {entry["name"]: entry for entry in infon(out)}
    assert {"x_mean", "x_std", "x_count", "x_nan_count"} <= lines.keys()
    assert lines["x_mean"]["miss"] == "1" and lines["x_count"]["miss"] == "0"
    np.testing.assert_allclose(cdo_values(out, "x_mean"), ours["mean"], rtol=1e-15)
    np.testing.assert_array_equal(cdo_values(out, "x_count"), ours["count"])
    assert ncdump_values(out, "x_count") == [str(n) for n in ours["count"]]
    assert ncdump_values(out, "x_mean")[2] == "_"  # equal to _FillValue (NaN): missing
    header = tool("ncdump", "-h", str(out))
    assert "double x_mean(dim_1) ;" in header and "x_mean:_FillValue = NaN ;" in header
    assert "int64 x_count(dim_1) ;" in header and "x_count:_FillValue" not in header


def test_nd_over_time_keeps_coordinates_bounds_and_attributes(tmp_path, cf_field):
    import xarray as xr

    out = run(tmp_path, f"{cf_field}:/tas", "maps", "--over", "time")
    ours = read_results(out)
    header = tool("ncdump", "-h", str(out))
    for line in (
        "double tas_mean(lat, lon) ;",
        'tas_mean:cell_methods = "time: mean" ;',
        'tas_mean:standard_name = "air_temperature" ;',
        'tas_mean:long_name = "Near-Surface Air Temperature" ;',
        'tas_var:units = "K^2" ;',
        'lat:bounds = "lat_bnds" ;',
        "double lat_bnds(lat, bnds) ;",
        "double lon_bnds(lon, bnds) ;",
        ':title = "a CF test field" ;',
        ':Conventions = "CF-1.8" ;',
    ):
        assert line in header, line
    assert "tas_count:units" not in header and "group" not in header.split("variables:")[0]
    history = re.search(r':history = "(.*)" ;', header).group(1).split("\\n")
    # The date as CDO and NCO write it, then the command line (here pytest's: run in-process).
    assert re.match(r"\w{3} \w{3} \d\d \d\d:\d\d:\d\d \d{4}: hpcapp ", history[0])
    assert history[1] == "Mon Jan 01 00:00:00 2024: made by the test"
    lines = {entry["name"]: entry for entry in infon(out)}  # CDO warns of no missing bounds
    assert lines["tas_mean"]["size"] == "12" and lines["tas_mean"]["miss"] == "1"
    assert lines["tas_count"]["miss"] == "0"
    low, mean, _ = lines["tas_mean"]["values"]
    assert np.isclose(mean, np.nanmean(ours["mean"]), rtol=1e-4)  # CDO prints 5 digits
    assert np.isclose(low, np.nanmin(ours["mean"]), rtol=1e-4)
    np.testing.assert_allclose(cdo_values(out, "tas_mean"), ours["mean"].ravel(), rtol=1e-15)
    table = tool("cdo", "-s", "outputtab,name,lon,lat,value", "-selname,tas_std", str(out))
    rows = [line.split() for line in table.splitlines() if not line.startswith("#")]
    assert [(float(r[1]), float(r[2])) for r in rows[:2]] == [(45.0, -60.0), (135.0, -60.0)]
    assert "cellbounds" in tool("cdo", "sinfon", str(out))
    metadata = tool("ncks", "-M", str(out))
    assert "tas_mean(lat,lon)" in metadata and ':Conventions = "CF-1.8"' in metadata
    with xr.open_dataset(out) as ds:  # no group argument
        assert ds["tas_mean"].dims == ("lat", "lon")
        assert {"lat", "lon"} <= set(ds["tas_mean"].coords)
        np.testing.assert_array_equal(ds["tas_mean"].values, ours["mean"])
        assert ds["tas_mean"].attrs["units"] == "K" and ds.attrs["institution"] == "nowhere"


def test_grouped_by_month_in_cdo(tmp_path, cf_field):
    out = run(tmp_path, f"{cf_field}:/tas", "months", "--over", "time", "--group-by", "time.month")
    ours = read_results(out)
    means = [entry for entry in infon(out) if entry["name"] == "tas_mean"]
    assert [entry["level"] for entry in means] == [str(m) for m in range(1, 13)]
    assert all(entry["miss"] == "1" for entry in means)
    np.testing.assert_allclose(cdo_values(out, "tas_mean"), ours["mean"].ravel(), rtol=1e-15)
    # The labels are dimension and coordinate `month`, as xarray's groupby("time.month") has.
    assert ncdump_values(out, "month") == [str(m) for m in range(1, 13)]
    header = tool("ncdump", "-h", str(out))
    assert "tas_mean(month, lat, lon)" in header and "month(month)" in header, header
    assert 'month:long_name = "month of time"' in header, header
    assert "group" not in header.split("variables:")[0], header


def test_per_row_series_has_its_time_axis_in_cdo_and_xarray(tmp_path, cf_field):
    import xarray as xr

    out = run(tmp_path, f"{cf_field}:/tas", "series", "--over", "lat,lon")
    ours = read_results(out)
    assert result_names(out)["mean"] == "tas_mean"
    means = [entry for entry in infon(out) if entry["name"] == "tas_mean"]
    assert len(means) == DAYS
    assert [(e["date"], e["time"]) for e in means[:2]] == [
        ("2000-01-01", "12:00:00"),
        ("2000-01-02", "12:00:00"),
    ]
    np.testing.assert_allclose(cdo_values(out, "tas_mean"), ours["mean"], rtol=1e-15)
    header = tool("ncdump", "-h", str(out))
    assert "double tas_mean(time) ;" in header and "double time_bnds(time, bnds) ;" in header
    assert ncdump_values(out, "time_bnds")[:4] == ["0", "1", "1", "2"]
    with xr.open_dataset(out, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True)) as ds:
        assert ds["tas_mean"].dims == ("time",) and ds["time"].values[0].year == 2000
        np.testing.assert_array_equal(ds["tas_mean"].values, ours["mean"])


def test_file_table_printed_by_ncdump(tmp_path, cf_field):
    import netCDF4

    folder = tmp_path / "years"
    folder.mkdir()
    for year in range(2):
        with netCDF4.Dataset(cf_field) as source, netCDF4.Dataset(folder / f"{year}.nc", "w") as ds:
            ds.createDimension("time", None)
            ds.createDimension("x", 3)
            time = ds.createVariable("time", "f8", ("time",))
            time.setncatts({"units": "days since 2000-01-01", "calendar": "noleap"})
            time[:] = source["time"][year * 365 : (year + 1) * 365]
            ds.createVariable("v", "f4", ("time", "x"))[:] = np.ones((365, 3))
    out = run(tmp_path, f"{folder}/*.nc:/v", "many", "--over", "time")
    paths = ncdump_values(out, "input_file_path")
    assert paths == [f'"{folder / "0.nc"}"', f'"{folder / "1.nc"}"']
    assert ncdump_values(out, "input_file_rows") == ["365", "365"]
    assert "input_file_size(file)" in tool("ncdump", "-h", str(out))


def test_resampled_by_month_equals_cdo_monmean(tmp_path, cf_field):
    out = run(tmp_path, f"{cf_field}:/tas", "monthly", "--over", "time", "--resample", "time=1M")
    ours = read_results(out)
    means = [entry for entry in infon(out) if entry["name"] == "tas_mean"]
    # CDO reads the periods' starts as the time axis (and their bounds).
    assert [(e["date"], e["time"]) for e in means[:2]] == [
        ("2000-01-01", "00:00:00"),
        ("2000-02-01", "00:00:00"),
    ]
    np.testing.assert_allclose(cdo_values(out, "tas_mean"), ours["mean"].ravel(), rtol=1e-15)
    monmean = tmp_path / "monmean.nc"
    tool("cdo", "-s", "-b", "F64", "monmean", str(cf_field), str(monmean))
    # CDO unpacks in double, xarray (and hpcapp, as xarray) in float32: ~1e-8 apart.
    theirs = cdo_values(monmean, "tas")
    missing = theirs == -32767
    assert np.array_equal(missing, np.isnan(ours["mean"].ravel()))
    np.testing.assert_allclose(theirs[~missing], ours["mean"].ravel()[~missing], rtol=1e-7)
    header = tool("ncdump", "-h", str(out))
    assert "tas_mean(time, lat, lon)" in header and "time_bnds(time, nv)" in header, header
    assert 'time:bounds = "time_bnds"' in header and 'time:calendar = "noleap"' in header
    assert ncdump_values(out, "time_bnds")[:4] == ["0", "31", "31", "59"]
