"""``--sel``/``--isel`` against xarray's ``.sel``/``.isel``, and files packed each their own way.

Inputs are netCDF-4 files written by netCDF4-python with CF times in several calendars; every
reference is xarray on the same files.
"""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from helpers import cli_here, read_results, refused_here, run_here
from input_helpers import refused

from hpcapp.jobs.config import make_job_config
from hpcapp.jobs.plan import plan_job
from hpcapp.kernels.registry import load_kernel

xr = pytest.importorskip("xarray")
STATS = ("mean", "var", "min", "max", "count")


def write_cf(
    path,
    years=(1991, 1992, 1993),
    calendar="standard",
    lat_descending=False,
    seed=0,
    packing=None,
    chunks=None,
    shape=(6, 8),
):
    """Write daily ``tas`` over ``years`` (CF time in ``calendar``); return its spec.

    ``packing`` (scale_factor, add_offset, _FillValue) stores int16; ``chunks`` compresses.
    """
    import cftime
    import netCDF4

    first = cftime.datetime(years[0], 1, 1, calendar=calendar)
    after = cftime.datetime(years[-1] + 1, 1, 1, calendar=calendar)
    units = f"days since {years[0]}-01-01"
    n = int(cftime.date2num(after, units, calendar) - cftime.date2num(first, units, calendar))
    rng = np.random.default_rng(seed)
    values = rng.normal(280.0, 10.0, size=(n, *shape))
    lat = np.linspace(-75.0, 75.0, shape[0])
    with netCDF4.Dataset(path, "w") as ds:
        for name, length in (("time", n), ("lat", shape[0]), ("lon", shape[1])):
            ds.createDimension(name, length)
        time = ds.createVariable("time", "f8", ("time",))
        time.units, time.calendar = units, calendar
        time[:] = np.arange(n) + 0.5  # mid-day
        ds.createVariable("lat", "f8", ("lat",))[:] = lat[::-1] if lat_descending else lat
        ds["lat"].units = "degrees_north"
        ds.createVariable("lon", "f8", ("lon",))[:] = np.arange(shape[1]) * 45.0
        ds["lon"].units = "degrees_east"
        options = {"zlib": True, "chunksizes": chunks} if chunks else {}
        if packing is None:
            var = ds.createVariable("tas", "f4", ("time", "lat", "lon"), **options)
            var[:] = values
        else:
            scale, offset, fill = packing
            var = ds.createVariable(
                "tas", "i2", ("time", "lat", "lon"), fill_value=np.int16(fill), **options
            )
            var.set_auto_maskandscale(False)
            var.scale_factor, var.add_offset = scale, offset
            stored = np.round((values - offset) / scale).astype("i2")
            stored[rng.random(stored.shape) < 0.03] = fill
            var[:] = stored
        var.units = "K"
    return f"{path}:/tas"


def assert_like_xarray(got, expected, over):
    """Compare hpcapp's stats with xarray's reductions of the same selection (float64)."""
    wide = expected.astype("f8")
    reference = {
        "mean": wide.mean(over),
        "var": wide.var(over),
        "min": expected.min(over),
        "max": expected.max(over),
        "count": expected.count(over),
    }
    for key in STATS:
        want = reference[key].values
        assert got[key].shape == want.shape, key
        if key in ("min", "max", "count"):
            np.testing.assert_array_equal(got[key], want, err_msg=key)
        else:
            np.testing.assert_allclose(got[key], want, rtol=1e-12, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("calendar", ["standard", "noleap", "360_day"])
def test_sel_by_dates_and_region_equals_xarray(tmp_path, calendar):
    spec = write_cf(tmp_path / "a.nc", calendar=calendar)
    out = tmp_path / "o.nc"
    last = "1992-12-30" if calendar == "360_day" else "1992-12-31"  # its calendar's last day
    sel = f"time=1992-01-01:{last},lat=-30:30"
    got = run_here("stats", spec, over="time", sel=sel, output=str(out))
    with xr.open_dataset(tmp_path / "a.nc") as ds:
        expected = ds.tas.sel(time=slice("1992-01-01", last), lat=slice(-30, 30))
        assert expected.sizes["time"] == {"standard": 366, "noleap": 365, "360_day": 360}[calendar]
        assert_like_xarray(got, expected, "time")
        lat = expected.lat.values
    with xr.open_dataset(out) as result:  # the selected coordinates
        np.testing.assert_array_equal(result.lat.values, lat)
        assert result.lon.size == 8
    with h5py.File(out, "r") as h5:
        assert h5.attrs["input_selection"].decode() == (
            f"--sel time=1992-01-01:{last} --sel lat=-30:30"
        )


def test_a_kept_time_axis_is_the_selected_times(tmp_path):
    spec = write_cf(tmp_path / "a.nc", calendar="noleap")
    out = tmp_path / "o.nc"
    run_here("stats", spec, over="lat,lon", sel={"time": ("1992-03", "1992-04")}, output=str(out))
    got = read_results(out)  # per-row outputs: a time series
    with xr.open_dataset(tmp_path / "a.nc") as ds:
        expected = ds.tas.sel(time=slice("1992-03", "1992-04"))
        assert_like_xarray(got, expected, ("lat", "lon"))
        times = expected.time.values
    with xr.open_dataset(out) as result:
        assert list(result.time.values) == list(times)


def test_descending_lat_takes_its_bounds_descending_as_xarray(tmp_path):
    spec = write_cf(tmp_path / "a.nc", lat_descending=True)
    got = run_here("stats", spec, over="time,lon", sel="lat=30:-30")
    with xr.open_dataset(tmp_path / "a.nc") as ds:
        assert_like_xarray(got, ds.tas.sel(lat=slice(30, -30)), ("time", "lon"))
    refused_here(
        "stats",
        spec,
        "--sel lat=-30:30 selects nothing",
        "descending",
        "lat=30:-30",
        sel="lat=-30:30",
    )


def test_isel_and_open_ends_equal_xarray(tmp_path):
    spec = write_cf(tmp_path / "a.nc")
    got = run_here("stats", spec, over="time", isel="time=100:465,lon=-3:", sel="lat=:0")
    with xr.open_dataset(tmp_path / "a.nc") as ds:
        expected = ds.tas.isel(time=slice(100, 465), lon=slice(-3, None)).sel(lat=slice(None, 0))
        assert_like_xarray(got, expected, "time")
    got = run_here("stats", spec, over="time", sel={"time": slice("1993-06", None)})
    with xr.open_dataset(tmp_path / "a.nc") as ds:
        assert_like_xarray(got, ds.tas.sel(time=slice("1993-06", None)), "time")


def test_every_way_of_giving_a_selection_is_the_same(tmp_path):
    spec = write_cf(tmp_path / "a.nc")
    out = tmp_path / "o.h5"
    (tmp_path / "job.toml").write_text('[sel]\ntime = "1992:1992"\nlat = [-30, 30]\n')
    args = ["run", "stats", spec, "-o", str(out), "-q", "--over", "time"]
    done = cli_here([*args, "--config", str(tmp_path / "job.toml")])
    assert done.returncode == 0, done.stderr
    from_file = read_results(out)
    done = cli_here([*args, "--overwrite", "--sel", "time=1992:1992", "--sel", "lat=-30:30"])
    assert done.returncode == 0, done.stderr
    from_line = read_results(out)
    from_text = run_here("stats", spec, over="time", sel="time=1992:1992,lat=-30:30")
    from_dict = run_here(
        "stats", spec, over="time", sel={"time": ("1992", "1992"), "lat": slice(-30, 30)}
    )
    for got in (from_line, from_text, from_dict):
        assert {k: got[k].tobytes() for k in STATS} == {k: from_file[k].tobytes() for k in STATS}


def _plan(tmp_path, spec, **options):
    values = {"kernel": "stats", "input": spec, "output": str(tmp_path / "o.h5"), **options}
    config = make_job_config(values, {})
    return plan_job(config, load_kernel("stats"), {"kernel": "stats"})


def test_the_selection_is_part_of_the_job_identity(tmp_path):
    spec = write_cf(tmp_path / "a.nc")
    plain = _plan(tmp_path, spec).identity
    assert "selection" not in plain  # a job without one keeps its identity
    one = _plan(tmp_path, spec, sel={"time": "1992:1992"}).identity
    other = _plan(tmp_path, spec, sel={"time": "1992:1993"}).identity
    assert one != other != plain
    assert one["selection"] == {"text": "--sel time=1992:1992", "start": [365, 0, 0],
                                "shape": [366, 6, 8]}  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--sel", "height=0:1"], ["--sel height", "no dimension 'height'", "time, lat, lon"]),
        (["--sel", "lat=100:120"], ["--sel lat=100:120 selects nothing", "-75.0 to 75.0"]),
        (["--sel", "lat=30:-30"], ["selects nothing", "ascending", "lat=-30:30"]),
        (["--sel", "time=2050:2060"], ["selects nothing", "1991-01-01 12:00:00"]),
        (["--sel", "time"], ["--sel 'time'", "DIM=START:END"]),
        (["--sel", "time=1992"], ["DIM=START:END"]),
        (["--isel", "lat=a:b"], ["--isel", "DIM=START:END"]),
        (["--isel", "lat=1.5:3"], ["indices must be integers"]),
        (["--isel", "lat=4:2"], ["selects nothing", "lat has 6 values"]),
        (["--sel", "time=1992-02-30:"], ["not a date of the standard calendar"]),
        (["--sel", "lat=0:10", "--isel", "lat=0:2"], ["both select 'lat'"]),
        (["--sel", "lat=south:"], ["DIM=START:END"]),
    ],
)
def test_bad_selections_are_refused_with_one_line(tmp_path, extra, fragments):
    spec = write_cf(tmp_path / "a.nc", years=(1991,))
    refused(spec, *fragments, tmp_path=tmp_path, extra=extra)


def test_a_noleap_file_refuses_the_29th_of_february(tmp_path):
    spec = write_cf(tmp_path / "a.nc", calendar="noleap")
    refused(
        spec,
        "not a date of the noleap calendar",
        tmp_path=tmp_path,
        extra=["--sel", "time=1992-02-29:"],
    )


def test_a_dimension_without_coordinate_takes_isel_only(tmp_path):
    from helpers import write_dataset

    spec = write_dataset(tmp_path / "plain.h5", np.arange(24.0).reshape(4, 6))
    refused(spec, "no coordinate variable for dim_1", "--isel dim_1", tmp_path=tmp_path,
            extra=["--sel", "dim_1=0:2"])  # fmt: skip
    got = run_here("stats", spec, isel="dim_1=2:4")
    np.testing.assert_array_equal(got["mean"], np.arange(24.0).reshape(4, 6)[:, 2:4].mean(0))


def _corrupt_chunks(path, keep):
    """Overwrite on disk every compressed chunk of /tas whose corner ``keep`` rejects."""
    with h5py.File(path, "r") as h5:
        dataset = h5["tas"]
        spots = []
        for index in range(dataset.id.get_num_chunks()):
            info = dataset.id.get_chunk_info(index)
            if not keep(info.chunk_offset):
                spots.append((info.byte_offset, info.size))
    with open(path, "r+b") as file:
        for offset, size in spots:
            file.seek(offset)
            file.write(b"\xff" * size)
    return len(spots)


def test_only_the_selected_hyperslab_is_read(tmp_path):
    """Chunks outside the selection are garbage: reading them fails, so they are not read."""
    path = tmp_path / "a.nc"
    spec = write_cf(path, chunks=(73, 1, 8))
    shutil.copy(path, tmp_path / "intact.nc")
    # Keep days 365-729 (1992 is days 365-730) and the lat rows 2-3 (-15, 15).
    broken = _corrupt_chunks(path, lambda c: 365 <= c[0] < 730 and 2 <= c[1] <= 3)
    assert broken > 0
    out = tmp_path / "o.h5"
    done = cli_here(["run", "stats", spec, "-o", str(out), "-q", "--over", "time"])
    assert done.returncode == 1 and "failed" in done.stderr, done.stderr  # the garbage is read
    sel = ["--sel", "lat=-20:20", "--isel", "time=365:730"]
    done = cli_here(
        ["run", "stats", spec, "-o", str(out), "-q", "--over", "time", "--overwrite", *sel]
    )
    assert done.returncode == 0, done.stderr
    with xr.open_dataset(tmp_path / "intact.nc") as ds:
        expected = ds.tas.isel(time=slice(365, 730)).sel(lat=slice(-20, 20))
        assert_like_xarray(read_results(out), expected, "time")


def write_years(folder, years, packings, chunks=(73, 1, 8), **options):
    """Write one file per year, each packed its own way; return the glob spec and the paths."""
    folder.mkdir(exist_ok=True)
    paths = []
    for index, (year, packing) in enumerate(zip(years, packings, strict=True)):
        path = folder / f"tas_{year}.nc"
        write_cf(path, years=(year,), packing=packing, seed=index, chunks=chunks, **options)
        paths.append(path)
    return f"{folder}/tas_*.nc:/tas", paths


PACKINGS = [(0.01, 280.0, -32767), (0.002, 275.0, -32768), (0.005, 290.0, 32767)]


def test_files_packed_each_their_own_way_equal_open_mfdataset(tmp_path):
    spec, paths = write_years(tmp_path / "era", (1991, 1992, 1993), PACKINGS)
    got = run_here("stats", spec, over="time")
    with xr.open_mfdataset(paths, combine="by_coords") as ds:
        assert_like_xarray(got, ds.tas.load(), "time")
    out = tmp_path / "o.nc"
    run_here("stats", spec, over="lat,lon", chunk_rows=50, output=str(out))  # chunks span files
    series = read_results(out)
    with xr.open_mfdataset(paths, combine="by_coords") as ds:
        assert_like_xarray(series, ds.tas.load(), ("lat", "lon"))


def test_a_time_range_across_files_reads_only_the_files_it_touches(tmp_path):
    spec, paths = write_years(tmp_path / "era", (1990, 1991, 1992, 1993), [*PACKINGS, PACKINGS[0]])
    with xr.open_mfdataset(paths, combine="by_coords") as ds:
        expected = ds.tas.sel(time=slice("1991-07-01", "1992-06-30"), lat=slice(0, None)).load()
    _corrupt_chunks(paths[0], lambda c: False)  # 1990 and 1993 lie outside: never read
    _corrupt_chunks(paths[3], lambda c: False)
    sel = "time=1991-07-01:1992-06-30,lat=0:"
    out = tmp_path / "o.nc"
    got = run_here("stats", spec, over="time", sel=sel, chunk_rows=40, output=str(out))
    assert_like_xarray(got, expected, "time")
    with h5py.File(out, "r") as h5:
        files = [b"".join(row).decode() for row in h5["input_file_path"][()]]
        assert files == [str(p) for p in paths[1:3]]
        # 1991-07-01 is day 181 of 1991, after the 365 days of 1990, in the whole input.
        assert list(h5.attrs["input_selection_start"]) == [365 + 181, 3, 0]
        assert list(h5.attrs["input_stored_shape"]) == [365 * 3 + 366, 6, 8]
    with pytest.raises(Exception, match="failed"):
        run_here("stats", spec, over="time")  # the broken files are read without --sel


def test_files_with_other_units_are_refused(tmp_path):
    spec, paths = write_years(tmp_path / "era", (1991, 1992), PACKINGS[:2])
    with h5py.File(paths[1], "a") as h5:
        h5["tas"].attrs["units"] = "degC"
    refused_here("stats", spec, "tas_1992.nc:/tas", "units", "degC", "tas_1991.nc")


def test_raw_refuses_files_packed_differently(tmp_path):
    spec, _ = write_years(tmp_path / "era", (1991, 1992), PACKINGS[:2])
    refused_here("stats", spec, "--raw", "scale_factor", "tas_1992.nc", raw=True)


@pytest.mark.mpi(min_size=2)
def test_selection_across_packed_files_on_several_ranks(shared_dir):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    paths = None
    if comm.rank == 0:
        _, paths = write_years(shared_dir / "era", (1991, 1992, 1993), PACKINGS)
    paths = comm.bcast(paths, root=0)
    spec = f"{shared_dir}/era/tas_*.nc:/tas"
    options = {"over": "time", "sel": "time=1991-10:1993-02,lon=90:270", "chunk_rows": 30}
    alone = run_here("stats", spec, **options)
    for extra in ({}, {"schedule": "dynamic"}, {"distribute": "scatter"}):
        world = run_here("stats", spec, comm=comm, root=None, **options, **extra)
        assert {k: world[k].tobytes() for k in STATS} == {k: alone[k].tobytes() for k in STATS}
    if comm.rank == 0:
        with xr.open_mfdataset(paths, combine="by_coords") as ds:
            expected = ds.tas.sel(time=slice("1991-10", "1993-02"), lon=slice(90, 270)).load()
        assert_like_xarray(alone, expected, "time")


@pytest.mark.parametrize("many", [False, True])
def test_monthly_groups_of_a_selection_equal_xarray(tmp_path, many):
    if many:
        spec, paths = write_years(tmp_path / "era", (1991, 1992, 1993), PACKINGS)
        opened = xr.open_mfdataset(paths, combine="by_coords")
    else:
        spec = write_cf(tmp_path / "a.nc", calendar="noleap")
        opened = xr.open_dataset(tmp_path / "a.nc")
    sel = {"time": ("1991-11-15", "1992-02-10"), "lon": (45, 135)}
    got = run_here("stats", spec, over="time", group_by="time.month", sel=sel, chunk_rows=20)
    with opened as ds:
        part = ds.tas.sel(time=slice(*sel["time"]), lon=slice(*sel["lon"])).load()
        expected = part.astype("f8").groupby("time.month").mean("time")
    np.testing.assert_array_equal(got["month"], expected.month.values)
    np.testing.assert_allclose(got["mean"], expected.values, rtol=1e-12)
