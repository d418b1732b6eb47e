"""--mask and --regions: masked and per-region stats against xarray on netCDF4-written files."""

import numpy as np
import pytest
import xarray as xr
from helpers import cli_here, read_results, refused_here, root_attrs, run_here
from ncdata import write_grid, write_raster

IDS = np.array([3, 7, 12], np.int16)
NAMES = "land ocean sea_ice"


@pytest.fixture
def files(tmp_path):
    """An input with missing cells, a region raster (flags, missing cells) and a mask."""
    path = tmp_path / "in.nc"
    spec = write_grid(path, shape=(7, 18, 36), missing=0.1)
    rng = np.random.default_rng(5)
    ids = np.ma.masked_array(IDS[rng.integers(0, 3, (18, 36))], rng.random((18, 36)) < 0.15)
    regions = write_raster(tmp_path / "r.nc", path, ids, flag_values=IDS, flag_meanings=NAMES)
    keep = np.ma.masked_array(rng.integers(0, 3, (18, 36)).astype("f4"), rng.random((18, 36)) < 0.1)
    mask = write_raster(tmp_path / "m.nc", path, keep, name="keep")
    return path, spec, regions, mask


def area(ds):
    sines = np.sin(np.deg2rad(ds.lat_bnds))
    return abs(sines[:, 1] - sines[:, 0]) * np.deg2rad(abs(ds.lon_bnds[:, 1] - ds.lon_bnds[:, 0]))


def xarray_regions(path, dims, weighted, mask=None):
    """xarray's per-region results: groupby (unweighted), else weighted() per region."""
    with xr.open_dataset(path) as ds, xr.open_dataset(path.parent / "r.nc") as r:
        tas, region = ds.tas, r.region.rename("region")
        if mask is not None:
            with xr.open_dataset(path.parent / "m.nc") as m:
                tas = tas.where(m.keep.fillna(0) != 0)
        grouped = tas.groupby(region)
        every = ... if len(dims) == 3 else None
        found = {op: getattr(grouped, op)(every).values for op in ("count", "min", "max")}
        if not weighted:
            found.update({op: getattr(grouped, op)(every).values for op in ("mean", "std", "var")})
            found["sum"] = grouped.sum(every).values
            return found
        parts = {op: [] for op in ("mean", "std", "var", "sum", "sum_of_weights")}
        for rid in IDS:
            one = tas.where(region == rid).weighted(area(ds))
            for op in parts:
                parts[op].append(getattr(one, op)(dims).values)
        found.update({op: np.stack(values, axis=-1) for op, values in parts.items()})
        return found


def assert_equal_results(got, expected):
    for op, value in expected.items():
        if op in ("count", "min", "max"):
            np.testing.assert_array_equal(got[op], value, err_msg=op)
        else:
            np.testing.assert_allclose(got[op], value, rtol=1e-12, atol=0, err_msg=op)


@pytest.mark.parametrize("over", ["time,lat,lon", "lat,lon"])
@pytest.mark.parametrize("weighted", [False, True])
def test_regions_equal_xarray(files, tmp_path, over, weighted):
    path, spec, regions, _ = files
    out = tmp_path / "out.nc"
    weights = "area" if weighted else None
    run_here(
        "stats", spec, over=over, regions=regions, weights=weights, chunk_rows=3, output=str(out)
    )
    got = read_results(out)
    np.testing.assert_array_equal(got["region"], IDS)
    assert root_attrs(out)["regions"] == regions
    assert ("sum_of_weights" in got) == weighted
    expected = xarray_regions(path, tuple(over.split(",")), weighted)
    assert_equal_results(got, expected)
    with xr.open_dataset(out) as ds:
        dims = ("region",) if over.startswith("time") else ("time", "region")
        assert ds.tas_mean.dims == ds.tas_std.dims == ds.tas_count.dims == dims
        assert ds.region.values.tolist() == IDS.tolist()
        assert [n.decode() for n in ds.region_name.values] == NAMES.split()
        np.testing.assert_allclose(ds.tas_mean.values, expected["mean"], rtol=1e-12)


@pytest.mark.parametrize(
    ("over", "weighted"),
    [("time,lat,lon", False), ("lat,lon", False), ("time", False), ("time,lat,lon", True),
     ("lat,lon", True)],
)  # fmt: skip
def test_mask_equals_xarray_where(files, over, weighted):
    path, spec, _, mask = files
    got = run_here("stats", spec, over=over, mask=mask, weights="area" if weighted else None)
    dims = tuple(over.split(","))
    with xr.open_dataset(path) as ds, xr.open_dataset(path.parent / "m.nc") as m:
        kept = m.keep.fillna(0) != 0
        tas = ds.tas.where(kept)
        found = tas.weighted(area(ds)) if weighted else tas
        ops = ("mean", "var", "std", "sum") + (("sum_of_weights",) if weighted else ())
        expected = {op: getattr(found, op)(dims).values for op in ops}
        expected["count"] = tas.count(dims).values
        if not weighted:
            expected["min"], expected["max"] = tas.min(dims).values, tas.max(dims).values
            plain = ds.tas.count(dims).values
            assert np.any(plain != expected["count"])  # the mask takes cells away
    assert_equal_results(got, expected)


@pytest.mark.parametrize("weighted", [False, True])
def test_mask_and_regions_together(files, weighted):
    path, spec, regions, mask = files
    weights = "area" if weighted else None
    got = run_here("stats", spec, over="lat,lon", regions=regions, mask=mask, weights=weights)
    assert_equal_results(got, xarray_regions(path, ("lat", "lon"), weighted, mask=True))


def test_regions_follow_a_selection(files):
    path, spec, regions, _ = files
    got = run_here("stats", spec, over="time,lat,lon", regions=regions, sel={"lat": (-40, 70)},
                   isel="lon=5:30")  # fmt: skip
    with xr.open_dataset(path) as ds, xr.open_dataset(path.parent / "r.nc") as r:
        box = {"lat": slice(-40, 70)}
        tas = ds.tas.sel(box).isel(lon=slice(5, 30))
        region = r.region.rename("region").sel(box).isel(lon=slice(5, 30))
        np.testing.assert_allclose(got["mean"], tas.groupby(region).mean(...).values, rtol=1e-12)


def test_raster_without_flags_has_no_names(files, tmp_path):
    path, spec, _, _ = files
    ids = np.arange(18 * 36).reshape(18, 36) % 4
    regions = write_raster(tmp_path / "plain.nc", path, ids.astype("i4"), name="basin")
    out = tmp_path / "out.nc"
    run_here("stats", spec, over="time,lat,lon", regions=regions, output=str(out))
    with xr.open_dataset(out) as ds:
        assert "region_name" not in ds and ds.region.values.tolist() == [0, 1, 2, 3]
        assert ds.tas_mean.dims == ("region",)
        with xr.open_dataset(path) as data:
            expected = data.tas.groupby(xr.DataArray(ids, dims=("lat", "lon"), name="region"))
            np.testing.assert_allclose(ds.tas_mean, expected.mean(...), rtol=1e-12)


def total(chunk):
    return {"s": np.asarray(chunk.sum())}


def test_refusals(files, tmp_path):
    path, spec, regions, mask = files
    grid = (18, 36)
    halves = write_raster(tmp_path / "f.nc", path, np.full(grid, 1.5), name="f")
    refused_here("stats", spec, "--regions", "f.nc:/f", "1.5", "integer", over="lat,lon",
                 regions=halves)  # fmt: skip
    many = write_raster(tmp_path / "many.nc", path, np.arange(18 * 36).reshape(grid) * 1.0)
    refused_here("stats", write_grid(tmp_path / "big.nc", shape=(2, 101, 100)), "10000",
                 over="lat,lon", regions=write_raster(tmp_path / "big_r.nc", tmp_path / "big.nc",
                 np.arange(10100).reshape(101, 100)))  # fmt: skip
    run_here("stats", spec, over="lat,lon", regions=many)  # 648 ids: fine
    refused_here("stats", spec, "--regions", "'lon'", "--over keeps", over="time,lat",
                 regions=regions)  # fmt: skip
    refused_here("stats", spec, "--regions and --group-by", over="time,lat,lon", regions=regions,
                 group_by="time.month")  # fmt: skip
    refused_here("stats", spec, "--regions and --group-every", over="time,lat,lon",
                 regions=regions, group_every=2)  # fmt: skip
    refused_here(total, spec, "--mask works with the built-in stats kernel only", over="lat,lon",
                 mask=mask)  # fmt: skip
    refused_here("stats", spec, "--regions: -p range", over="lat,lon", regions=regions,
                 params={"range": "0,1"})  # fmt: skip
    refused_here("stats", spec, "--mask", "no numeric variable '/nope'", over="lat,lon",
                 mask=f"{tmp_path}/m.nc:/nope")  # fmt: skip
    flags = write_raster(tmp_path / "bad.nc", path, np.ones(grid, "i4"), flag_values=IDS,
                         flag_meanings="one two")  # fmt: skip
    refused_here("stats", spec, "bad.nc:/region", "flag_meanings", over="lat,lon", regions=flags)
    empty = write_raster(tmp_path / "e.nc", path, np.ma.masked_all(grid, "i4"))
    refused_here("stats", spec, "e.nc:/region", "no region id", over="lat,lon", regions=empty)


def test_cli_prints_regions_and_refuses_with_exit_2(files, tmp_path):
    _, spec, regions, _ = files
    out = tmp_path / "out.nc"
    done = cli_here(["run", "stats", spec, "--over", "time,lat,lon", "--regions", regions,
                     "-o", str(out)])  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "3 regions: 3 land, 7 ocean, 12 sea_ice" in done.stdout
    assert [line.split()[0] for line in done.stdout.splitlines()[2:6]] == ["region", "3", "7", "12"]
    bad = tmp_path / "bad.nc"
    done = cli_here(["run", "stats", spec, "--over", "time", "--regions", regions, "-o", str(bad)])
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "r.nc:/region runs along 'lat', which --over keeps" in done.stderr
    assert not bad.exists()


def test_resume_with_another_mask_computes_again(files, tmp_path):
    _, spec, regions, mask = files
    out = tmp_path / "out.nc"
    first = run_here("stats", spec, over="time,lat,lon", regions=regions, output=str(out))
    again = run_here("stats", spec, over="time,lat,lon", regions=regions, output=str(out),
                     mask=mask, resume=True, overwrite=True)  # fmt: skip
    assert root_attrs(out)["mask"] == mask
    assert np.all(again["count"] < first["count"])  # computed again, with the mask


def test_mask_on_packed_chunks_equals_xarray_where(tmp_path):
    """A packed int16 input in chunks big enough for stats' packed loop: masked all the same."""
    from ncdata import write_netcdf

    rng = np.random.default_rng(11)
    stored = rng.integers(-2000, 2000, (4, 180, 360)).astype("i2")
    stored[rng.random(stored.shape) < 0.01] = -32767
    path = tmp_path / "packed.nc"
    attrs = {"scale_factor": np.float32(0.01), "add_offset": np.float32(280.0)}
    spec = write_netcdf(path, stored, attrs=attrs, fill_value=np.int16(-32767))
    keep = np.ma.masked_array(
        rng.integers(0, 2, (180, 360)).astype("f4"), rng.random((180, 360)) < 0.1
    )
    mask = write_raster(tmp_path / "m.nc", path, keep, name="keep")
    got = run_here("stats", spec, over="time", mask=mask)
    with xr.open_dataset(path) as ds, xr.open_dataset(tmp_path / "m.nc") as m:
        tas = ds.tas.astype("f8").where(m.keep.fillna(0) != 0)
        expected = {"mean": tas.mean("time").values, "count": tas.count("time").values}
    assert_equal_results(got, expected)
