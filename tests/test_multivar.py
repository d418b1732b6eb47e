"""Several variables in one job (``FILE:/tas,/pr``): each gets the results of its own job."""

from pathlib import Path

import numpy as np
import pytest
from helpers import (
    as_bytes,
    cli_here,
    read_results,
    refused_here,
    root_attrs,
    run_here,
    timing_of,
    write_dataset,
)
from input_helpers import bits, refused, stats

N_TIME, N_LAT, N_LON = 10, 3, 4


def write_pair(path: Path, n_time: int = N_TIME, seed: int = 3, first_day: float = 0.0) -> str:
    """Write ``tas`` (float32, _FillValue) and ``pr`` (packed int16) and ``ps`` (time, lat)."""
    import netCDF4

    rng = np.random.default_rng(seed)
    shape = (n_time, N_LAT, N_LON)
    with netCDF4.Dataset(path, "w") as ds:
        ds.title = "two variables"
        for dim, n in (("time", n_time), ("lat", N_LAT), ("lon", N_LON)):
            ds.createDimension(dim, n)
            ds.createVariable(dim, "f8", (dim,))[:] = np.arange(n) * 1.5
        ds["time"][:] += first_day
        ds["time"].units = "days since 2000-01-01"
        tas = ds.createVariable("tas", "f4", DIMS, fill_value=np.float32(1e20))
        tas.setncatts({"units": "K", "standard_name": "air_temperature", "long_name": "Tas"})
        values = (280 + 5 * rng.standard_normal(shape)).astype("f4")
        tas[:] = np.ma.masked_array(values, rng.random(shape) < 0.1)
        pr = ds.createVariable("pr", "i2", DIMS, fill_value=np.int16(-32767))
        pr.setncatts({"scale_factor": 1e-6, "add_offset": 1e-3, "units": "kg m-2 s-1"})
        pr.setncatts({"standard_name": "precipitation_flux", "long_name": "Precipitation"})
        pr[:] = np.ma.masked_array(1e-3 + 1e-5 * rng.random(shape), rng.random(shape) < 0.1)
        ds.createVariable("ps", "f4", ("time", "lat"))[:] = 1.0
    return str(path)


DIMS = ("time", "lat", "lon")


def per_variable(results: dict, name: str) -> dict:
    prefix = f"{name}/"
    return {k[len(prefix) :]: v for k, v in results.items() if k.startswith(prefix)}


def test_each_variable_gets_the_bits_of_its_own_job_and_xarrays_numbers(tmp_path):
    import xarray as xr

    path = write_pair(tmp_path / "in.nc")
    both = stats(f"{path}:/tas,/pr", tmp_path / "both.nc", extra=["--over", "time"])
    assert {k.partition("/")[0] for k in both} == {"tas", "pr"}
    with xr.open_dataset(path) as ds:
        for name in ("tas", "pr"):
            alone = stats(f"{path}:/{name}", tmp_path / f"{name}.nc", extra=["--over", "time"])
            assert bits(per_variable(both, name)) == bits(alone)
            wide = ds[name].astype("f8")
            np.testing.assert_allclose(alone["mean"], wide.mean("time").values, rtol=1e-12)
            np.testing.assert_array_equal(alone["count"], wide.count("time").values)


def test_the_output_names_and_describes_each_variable(tmp_path):
    import xarray as xr

    path = write_pair(tmp_path / "in.nc")
    out = tmp_path / "both.nc"
    done = cli_here(["run", "stats", f"{path}:/tas,/pr", "--over", "time", "-o", str(out)])
    assert done.returncode == 0, done.stderr
    assert f"stats on {path}:/tas,/pr: {N_TIME} rows in" in done.stdout
    with xr.open_dataset(out) as ds:
        assert ds["tas_mean"].dims == ("lat", "lon") and ds["pr_mean"].dims == ("lat", "lon")
        assert ds["tas_mean"].attrs["units"] == "K"
        assert ds["tas_mean"].attrs["standard_name"] == "air_temperature"
        assert ds["pr_mean"].attrs["units"] == "kg m-2 s-1"
        assert ds["pr_mean"].attrs["standard_name"] == "precipitation_flux"
        assert ds["pr_var"].attrs["units"] == "(kg m-2 s-1)^2"
        assert ds["pr_mean"].attrs["cell_methods"] == "time: mean"
        assert ds["tas_mean"].encoding["_FillValue"] != ds["tas_mean"].encoding["_FillValue"]
        assert ds.attrs["title"] == "two variables"
    alone = tmp_path / "tas.nc"
    cli_here(["run", "stats", f"{path}:/tas", "--over", "time", "-o", str(alone)])
    with xr.open_dataset(out) as both, xr.open_dataset(alone) as one:
        for key in ("mean", "std", "min", "count"):
            mine, theirs = dict(both[f"tas_{key}"].attrs), dict(one[f"tas_{key}"].attrs)
            assert (mine.pop("hpcapp_result"), theirs.pop("hpcapp_result")) == (f"tas/{key}", key)
            assert mine == theirs
    attrs = root_attrs(out)
    assert attrs["input"].endswith(":/tas,/pr") and attrs["variables"] == "tas,pr"


def test_resume_finds_the_job_done_or_runs_it_from_the_start(tmp_path):
    path = write_pair(tmp_path / "in.nc")
    out = tmp_path / "both.nc"
    args = ["run", "stats", f"{path}:/tas,/pr", "--over", "time", "-o", str(out), "--resume"]
    first = cli_here(args)  # no output yet: the whole job runs
    assert first.returncode == 0, first.stderr
    written = out.read_bytes()
    again = cli_here(args)
    assert again.returncode == 0, again.stderr
    assert "already holds the result of this job" in again.stdout
    assert out.read_bytes() == written
    other = cli_here([*args[:2], f"{path}:/pr,/tas", *args[3:]])  # another job: not resumed
    assert other.returncode == 2 and "already exists" in other.stderr


def test_hpcapp_run_returns_results_keyed_by_variable(tmp_path):
    path = write_pair(tmp_path / "in.nc")
    both = run_here("stats", f"{path}:/tas,/pr", over="time")
    alone = run_here("stats", f"{path}:/pr", over="time")
    assert as_bytes(per_variable(both, "pr")) == as_bytes(alone)
    out = tmp_path / "o.nc"
    ds = run_here("stats", f"{path}:/tas,/pr", over="time", output=str(out), as_xarray=True)
    try:
        assert {"tas_mean", "pr_mean"} <= set(ds.data_vars)
    finally:
        ds.close()
    assert as_bytes(read_results(out)) == as_bytes(both)


def test_many_files_give_each_variable_its_own_jobs_bits(tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    for year, n_time in ((2000, 4), (2001, 7), (2002, 5)):
        write_pair(folder / f"in-{year}.nc", n_time, seed=year, first_day=(year - 2000) * 365)
    spec = f"{folder}/in-*.nc"
    both = stats(f"{spec}:/tas,/pr", tmp_path / "both.nc", chunk_rows=3, extra=["--over", "time"])
    for name in ("tas", "pr"):
        alone = stats(
            f"{spec}:/{name}", tmp_path / f"{name}.nc", chunk_rows=3, extra=["--over", "time"]
        )
        assert bits(per_variable(both, name)) == bits(alone)
    assert read_results(tmp_path / "both.nc")["pr/count"].sum() > 0


@pytest.mark.parametrize(
    ("variables", "extra", "fragments"),
    [
        ("/tas,/ps", ["--over", "time"], ["variable /ps has dims (time=10, lat=3)", "share"]),
        ("/tas,/pr", ["--over", "time", "--checkpoint", "ck"], ["several", "--checkpoint"]),
        ("/tas,/pr", ["--over", "time", "-p", "bins=8"], ["-p bins", "histograms"]),
        ("/tas,/pr", ["--group-by", "time.month"], ["--group-by takes one variable"]),
        ("/tas,/pr", ["--over", "lat,lon"], ["per-row results"]),
        ("/tas,/tas", [], ["names a variable twice"]),
    ],
)
def test_what_several_variables_cannot_take_is_refused(tmp_path, variables, extra, fragments):
    path = write_pair(tmp_path / "in.nc")
    line = refused(f"{path}:{variables}", *fragments, tmp_path=tmp_path, extra=extra)
    assert "in.nc" in line


def test_a_series_kernel_is_refused(tmp_path):
    path = write_pair(tmp_path / "in.nc")
    refused_here("quantile", f"{path}:/tas,/pr", "takes one variable", params={"q": 0.5})


def test_files_whose_variables_differ_in_records_are_refused(tmp_path):
    # Plain HDF5 files: 9 records of x and of y in all, but 4 + 5 against 5 + 4.
    for index, (n_x, n_y) in enumerate(((4, 5), (5, 4))):
        write_dataset(tmp_path / f"run-{index}.h5", np.ones((n_x, 3)), "x")
        write_dataset(tmp_path / f"run-{index}.h5", np.ones((n_y, 3)), "y")
    line = refused(f"{tmp_path}/run-*.h5:/x,/y", "run-0.h5", "variable /y has 5 records",
                   tmp_path=tmp_path)  # fmt: skip
    assert "4 in" in line


@pytest.mark.mpi(min_size=2)
def test_two_ranks_give_the_bits_of_one(shared_dir):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if comm.rank == 0:
        write_pair(shared_dir / "in.nc", n_time=40)
    comm.Barrier()
    spec = f"{shared_dir}/in.nc:/tas,/pr"
    alone = run_here("stats", spec, over="time", chunk_rows=3)
    out = shared_dir / "world.nc"
    world = run_here(
        "stats", spec, over="time", chunk_rows=3, comm=comm, root=None, output=str(out)
    )
    assert as_bytes(world) == as_bytes(alone)
    if comm.rank == 0:
        assert as_bytes(read_results(out)) == as_bytes(alone)
        timing, columns = timing_of(out)
        rows = timing[:, columns.index("rows")]
        assert rows.sum() == 2 * 40 and (rows > 0).all()  # both passes, both ranks reading


def test_slurm_checks_every_variable_before_writing_the_script(tmp_path):
    path = write_pair(tmp_path / "in.nc")
    script = tmp_path / "job.sh"
    head = ["slurm", "--nodes", "1", "--time", "10", "--output-script", str(script), "--"]
    run = ["run", "stats", f"{path}:/tas,/pr", "--over", "time", "-o", str(tmp_path / "o.nc")]
    done = cli_here([*head, *run])
    assert done.returncode == 0, done.stderr
    assert f"{path}:/tas,/pr" in script.read_text()
    run[2] = f"{path}:/tas,/ps"
    done = cli_here([*head, *run])
    assert done.returncode == 2 and "variable /ps has dims" in done.stderr
