"""Grouped reductions: --group-every and --group-by against numpy and xarray's groupby."""

import warnings

import h5py
import numpy as np
import pytest
from helpers import (
    cli_here,
    interrupt_when_running,
    read_results,
    refused_here,
    result_bytes,
    root_attrs,
    run_cli,
    run_here,
    sample_data,
    start_cli,
    write_dataset,
)

import hpcapp
from hpcapp.errors import UsageError

STATS = ("count", "nan_count", "sum", "mean", "var", "min", "max")


def group_reference(data, labels):
    """numpy's statistics of each label's records, labels sorted."""
    groups = np.unique(labels)
    wide = data.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return groups, {
            "count": np.stack([np.sum(~np.isnan(wide[labels == g]), axis=0) for g in groups]),
            "mean": np.stack([np.nanmean(wide[labels == g], axis=0) for g in groups]),
            "var": np.stack([np.nanvar(wide[labels == g], axis=0) for g in groups]),
            "min": np.stack([np.nanmin(data[labels == g], axis=0) for g in groups]),
            "max": np.stack([np.nanmax(data[labels == g], axis=0) for g in groups]),
        }


def check_groups(results, data, labels):
    groups, expected = group_reference(data, labels)
    np.testing.assert_array_equal(results["group"], groups)
    for key in ("count", "min", "max"):
        np.testing.assert_array_equal(results[key], expected[key], err_msg=key)
    np.testing.assert_allclose(results["mean"], expected["mean"], rtol=1e-12, err_msg="mean")
    np.testing.assert_allclose(results["var"], expected["var"], rtol=1e-10, err_msg="var")


@pytest.mark.parametrize(
    "every,chunk_rows",
    [(7, 3), (7, 20), (1, 5), (10, 10), (40, 7)],
    ids=["K>chunk", "K<chunk", "K=1", "K=chunk", "K>>chunk"],
)
def test_group_every_matches_numpy(tmp_path, every, chunk_rows):
    data = sample_data(103, 3, "float64", seed=every, nan=0.05)  # 103: K never divides it
    spec = write_dataset(tmp_path / "in.h5", data)
    results = hpcapp.run("stats", spec, chunk_rows=chunk_rows, group_every=every)
    check_groups(results, data, np.arange(len(data)) // every)
    np.testing.assert_array_equal(results["group_first_record"], results["group"] * every)


def test_group_by_integer_labels_matches_numpy(tmp_path):
    rng = np.random.default_rng(5)
    data = sample_data(200, 2, "float32", seed=5, nan=0.02)
    labels = rng.choice(np.array([9, -4, 3, 0, -1], np.int8), size=200)  # unsorted, interleaved
    labels[50:60] = 77  # one label only in the middle
    labels[-7:] = -100  # the lowest label only at the end
    path = tmp_path / "in.h5"
    spec = write_dataset(path, data)
    write_dataset(path, labels, "labels")
    params = {"bins": 7, "range": [0, 1]}
    results = hpcapp.run("stats", spec, chunk_rows=13, group_by="labels", params=params)
    check_groups(results, data, labels)
    for i, label in enumerate(np.unique(labels)):
        for col in range(2):
            values = data[labels == label, col]
            expected = np.histogram(values[~np.isnan(values)], bins=7, range=(0, 1))[0]
            np.testing.assert_array_equal(results["hist"][i, col], expected)
    np.testing.assert_array_equal(
        results["hist_edges"], np.histogram_bin_edges(np.empty(0, np.float32), 7, (0, 1))
    )
    assert results["mean"].dtype == np.float64 and results["min"].dtype == np.float32


FIRST_KERNEL = """
import numpy as np
import hpcapp

def keep_left(left, right):
    return {"first": left["first"], "n": left["n"] + right["n"]}

@hpcapp.kernel(combine=keep_left)
def first_row(chunk):
    return {"first": chunk[0], "n": np.int64(len(chunk))}
"""


def test_a_user_combine_sees_each_groups_partials_in_record_order(tmp_path):
    kernel_file = tmp_path / "first.py"
    kernel_file.write_text(FIRST_KERNEL)
    data = np.arange(300.0).reshape(100, 3)
    labels = np.random.default_rng(2).integers(0, 6, 100).astype(np.int64)
    path = tmp_path / "in.h5"
    spec = write_dataset(path, data)
    write_dataset(path, labels, "g")
    results = run_here(f"{kernel_file}:first_row", spec, chunk_rows=9, group_by="g")
    groups = np.unique(labels)
    np.testing.assert_array_equal(results["group"], groups)
    np.testing.assert_array_equal(results["first"], [data[labels == g][0] for g in groups])
    np.testing.assert_array_equal(results["n"], [np.sum(labels == g) for g in groups])


@pytest.mark.parametrize("dtype", ["int64", "uint16"])
def test_integer_data_is_bitwise_an_ungrouped_run_over_each_group(tmp_path, dtype):
    rng = np.random.default_rng(8)
    data = rng.integers(0, 60000, size=(150, 3)).astype(dtype)
    labels = rng.integers(-2, 3, size=150).astype(np.uint8 if dtype == "uint16" else np.int32)
    path = tmp_path / "in.h5"
    spec = write_dataset(path, data)
    write_dataset(path, labels, "g")
    grouped = hpcapp.run("stats", spec, chunk_rows=11, group_by="/g")
    for i, label in enumerate(np.unique(labels)):
        alone = write_dataset(tmp_path / f"g{i}.h5", data[labels == label])
        expected = hpcapp.run("stats", alone, chunk_rows=11)
        for key, value in expected.items():
            got = grouped[key][i]
            assert got.dtype == value.dtype and got.tobytes() == value.tobytes(), (label, key)


# ---------------------------------------------------------------- CF time coordinates


def write_time_series(path, calendar, step_hours, n_records, grid=(2, 3), seed=0):
    """Write tas(time, lat, lon) with a CF time coordinate; return the spec and the data."""
    import netCDF4

    data = np.random.default_rng(seed).normal(280.0, 5.0, size=(n_records, *grid))
    with netCDF4.Dataset(path, "w") as ds:
        for name, n in zip(("time", "lat", "lon"), (n_records, *grid), strict=True):
            ds.createDimension(name, n)
        time = ds.createVariable("time", "f8", ("time",))
        time.units = "hours since 1999-11-30 06:00:00"
        time.calendar = calendar
        time[:] = np.arange(n_records) * step_hours
        for name, n in zip(("lat", "lon"), grid, strict=True):
            ds.createVariable(name, "f8", (name,))[:] = np.arange(n) * 10.0
        var = ds.createVariable("tas", "f8", ("time", "lat", "lon"))
        var.units = "K"
        var[:] = data
    return f"{path}:/tas"


def xarray_groupby(path, component, dims):
    import xarray as xr

    coder = xr.coders.CFDatetimeCoder(use_cftime=True)
    with xr.open_dataset(path, decode_times=coder) as ds:
        return ds["tas"].groupby(f"time.{component}").mean(dims).load()


@pytest.mark.parametrize(
    "calendar,step,n",
    [("standard", 1, 24 * 366 * 2 + 100), ("noleap", 24, 365 * 4 + 40), ("360_day", 24, 400)],
)
@pytest.mark.parametrize("component", ["month", "season", "year", "dayofyear"])
def test_cf_time_components_match_xarray_groupby(tmp_path, calendar, step, n, component):
    import xarray as xr

    path = tmp_path / "in.nc"
    spec = write_time_series(path, calendar, step, n)
    out = tmp_path / "out.h5"
    hpcapp.run(
        "stats", spec, output=str(out), chunk_rows=97, over="time", group_by=f"time.{component}"
    )
    expected = xarray_groupby(path, component, "time")
    with xr.open_dataset(out) as ds:
        # Named as xarray names them: dimension and coordinate `month` (not `group`).
        assert ds["tas_mean"].dims == expected.dims == (component, "lat", "lon")
        assert "group" not in ds.dims and "group" not in ds.variables
        np.testing.assert_array_equal(ds[component].values, expected[component].values)
        got = ds["tas_mean"].rename("tas").drop_attrs()
        xr.testing.assert_allclose(got, expected.drop_attrs(), rtol=1e-12)
        assert ds[component].attrs["long_name"].replace(" ", "") == f"{component}oftime"
        assert "separately for each group" in ds["tas_mean"].attrs["cell_methods"]


def test_a_climatology_not_read_in_group_order_is_cut_in_chunks_of_whole_cycles(
    tmp_path, monkeypatch
):
    import xarray as xr

    from hpcapp.io import group_order

    path = tmp_path / "in.nc"
    spec = write_time_series(path, "noleap", 24, 365 * 4 + 40, grid=(30, 60))
    out = tmp_path / "out.nc"
    # (tests/test_group_order.py: when the storage chunks call for the record order.)
    monkeypatch.setattr(group_order, "MAX_GROUP_CHUNK_BYTES", 0)
    hpcapp.run("stats", spec, output=str(out), over="time", group_by="time.dayofyear")
    with xr.open_dataset(out) as ds:
        # 14.4 KB rows: ~291 rows a chunk by default; four cycles of 366 days fit in 128 MiB.
        assert int(ds.attrs["chunk_rows"]) == 4 * 366
        expected = xarray_groupby(path, "dayofyear", "time")
        got = ds["tas_mean"].rename("tas").drop_attrs()
        xr.testing.assert_allclose(got, expected.drop_attrs(), rtol=1e-12)


MONTH_KERNEL = """
import numpy as np

def month(chunk):
    return {"month": np.float64(chunk.sum())}
"""


def test_a_kernel_key_named_as_the_labels_is_refused(tmp_path):
    path = tmp_path / "in.nc"
    spec = write_time_series(path, "noleap", 24, 60)
    (tmp_path / "k.py").write_text(MONTH_KERNEL)
    args = ["run", f"{tmp_path / 'k.py'}:month", spec, "-q", "-o", str(tmp_path / "o.h5")]
    done = cli_here([*args, "--group-by", "time.month"])
    assert done.returncode == 1, done.stderr
    assert "returns a key 'month' or '__group__', which grouping reserves" in done.stderr
    by_year = cli_here([*args, "--group-by", "time.year", "--overwrite"])  # no clash: fine
    assert by_year.returncode == 0, by_year.stderr
    assert read_results(tmp_path / "o.h5")["year"].tolist() == [1999, 2000]


def test_the_summary_names_the_months(tmp_path):
    spec = write_time_series(tmp_path / "in.nc", "noleap", 24, 800)
    out = tmp_path / "o.h5"
    done = cli_here(["run", "stats", spec, "-o", str(out), "--over", "time", "--group-by",
                     "time.month"])  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "12 groups (--group-by time.month): 1, 2, 3, 4, 5, 6, ..." in done.stdout, done.stdout
    assert "72 cells (month 12 x lat 2 x lon 3)" in done.stdout, done.stdout


def test_group_over_every_dimension_gives_one_value_per_group(tmp_path):
    path = tmp_path / "in.nc"
    spec = write_time_series(path, "noleap", 24, 800)
    out = tmp_path / "out.h5"
    options = {"over": "time,lat,lon", "group_by": "time.month", "chunk_rows": 50}
    results = run_here("stats", spec, output=str(out), **options)
    expected = xarray_groupby(path, "month", ("time", "lat", "lon"))
    assert results["mean"].shape == (12,)
    np.testing.assert_array_equal(results["month"], np.arange(1, 13))
    np.testing.assert_allclose(results["mean"], expected.values, rtol=1e-12)
    attrs = root_attrs(out)
    assert attrs["grouping"] == "--group-by time.month"
    assert attrs["job_identity"]["grouping"]["component"] == "month"


# ---------------------------------------------------------------- ranks, schedules, resume


def labels_of_one_rank(n_records=3000, seed=3):
    """Labels 0-4 and a label 9 that only the first records have (the first rank(s) see it)."""
    labels = np.random.default_rng(seed).integers(0, 5, n_records).astype(np.int16)
    labels[:400] = 9
    return labels


def test_a_group_only_the_first_records_have_matches_numpy(tmp_path):
    # The same bits on 1-4 ranks and both schedules: test_grouped_run_on_the_world_equals_one_rank.
    data = sample_data(3000, 2, "float64", seed=3, nan=0.01)
    labels = labels_of_one_rank()
    path = tmp_path / "in.h5"
    spec = write_dataset(path, data)
    write_dataset(path, labels, "g")
    params = {"bins": 8, "range": [0, 1]}
    check_groups(run_here("stats", spec, chunk_rows=61, group_by="g", params=params), data, labels)


SLOW_KERNEL = """
import os
import time
import numpy as np
import hpcapp

@hpcapp.kernel(combine={"s": "sum", "m": "max", "n": "sum"})
def slow(chunk, delay=0.04):
    # A run that only finishes (a resume) skips the sleeping: no parameter of the job changes.
    time.sleep(float(os.environ.get("HPCAPP_TEST_DELAY", delay)))
    return {"s": chunk.sum(axis=0), "m": np.fmax.reduce(chunk, axis=0), "n": np.int64(len(chunk))}
"""


def test_interrupted_grouped_job_resumes_bitwise(tmp_path):
    data = sample_data(6000, 3, "float64", seed=4)
    path = tmp_path / "in.h5"
    spec = write_dataset(path, data)
    labels = (np.arange(6000) // 700) % 5  # runs of 700 records, labels coming back
    write_dataset(path, labels, "g")
    kernel_file = tmp_path / "slow.py"
    kernel_file.write_text(SLOW_KERNEL)

    def args(out, *extra):
        return ["run", f"{kernel_file}:slow", spec, "-o", str(out), "--chunk-rows", "50",
                "--group-by", "g", *extra]  # fmt: skip

    reference = tmp_path / "reference.h5"
    options = {"chunk_rows": 50, "group_by": "g", "params": {"delay": 0}}
    run_here(f"{kernel_file}:slow", spec, output=str(reference), **options)
    out = tmp_path / "out.h5"
    process = start_cli(args(out, "--checkpoint-every", "0.2"), 3)
    _, stderr = interrupt_when_running(process, tmp_path / "out.h5.checkpoint", 0.6)
    assert process.returncode == 75, stderr
    other = cli_here(args(out, "--resume", "--group-every", "3"))
    assert other.returncode == 2, other.stderr  # both options
    changed = ["run", f"{kernel_file}:slow", spec, "-o", str(out), "--chunk-rows", "50"]
    refused = cli_here([*changed, "--group-every", "12", "--resume"])
    assert refused.returncode == 2 and "grouping" in refused.stderr, refused.stderr
    resumed = run_cli(args(out, "--resume"), 2, env={"HPCAPP_TEST_DELAY": "0"})
    assert resumed.returncode == 0 and "resuming from" in resumed.stdout, resumed.stderr
    assert result_bytes(out) == result_bytes(reference)
    expected = np.stack([data[labels == g].sum(axis=0) for g in range(5)])
    np.testing.assert_allclose(read_results(out)["s"], expected, rtol=1e-12)


# ---------------------------------------------------------------- refusals


@pytest.fixture
def inputs(tmp_path):
    """A float input with assorted label datasets beside it; returns its path."""
    path = tmp_path / "in.h5"
    write_dataset(path, np.zeros((20, 2)))
    with h5py.File(path, "a") as h5:
        h5["floats"] = np.zeros(20)
        h5["short"] = np.zeros(19, np.int32)
        h5["flat"] = np.zeros((20, 1), np.int32)
        h5["names"] = np.array([b"a"] * 20)
        time = h5.create_dataset("time", data=np.arange(20.0))
        time.attrs["units"] = "hours since 2000-01-01"
        bad = h5.create_dataset("badtime", data=np.arange(20.0))
        bad.attrs["units"] = "hours since yesterday"
        cal = h5.create_dataset("caltime", data=np.arange(20.0))
        cal.attrs["units"] = "days since 2000-01-01"
        cal.attrs["calendar"] = "martian"
    return path


@pytest.mark.parametrize(
    "options,message",
    [
        ({"group_by": "nope"}, "no dataset /nope"),
        ({"group_by": "floats"}, "/floats has dtype float64"),
        ({"group_by": "short"}, "/short has 19 values"),
        ({"group_by": "flat"}, "not 1-D"),
        ({"group_by": "names"}, "/names has dtype"),
        ({"group_by": "time"}, "time.month"),
        ({"group_by": "floats.month"}, "/floats is not a CF time coordinate"),
        ({"group_by": "time.week"}, "unknown component .week."),
        ({"group_by": "badtime.month"}, "cannot decode"),
        ({"group_by": "caltime.year"}, "calendar 'martian'"),
        ({"group_every": 0}, "positive"),
        ({"group_every": 2, "group_by": "time.month"}, "exclude each other"),
        ({"group_every": 2, "over": "dim_1"}, "per-row outputs"),
        ({"group_every": 2, "distribute": "scatter"}, "scatter"),
    ],
)
def test_refusals(inputs, tmp_path, options, message):
    with pytest.raises(UsageError, match=message) as caught:
        hpcapp.run("stats", f"{inputs}:/x", output=str(tmp_path / "out.h5"), **options)
    assert "\n" not in str(caught.value)


def test_refusals_from_the_command_line_exit_2_with_one_line(inputs, tmp_path):
    out = str(tmp_path / "o.h5")
    for extra, message in [
        (["stats", f"{inputs}:/x", "--group-by", "short"], "one label per record"),
        (["stats", f"{inputs}:/x", "--group-every", "2", "--group-by", "g"], "not allowed with"),
        (["montecarlo", "-p", "samples=1000", "--group-every", "2"], "generates its data"),
    ]:
        done = cli_here(["run", *extra, "-o", out])
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], done.stderr


def test_memory_per_rank_counts_the_groups(tmp_path):
    path = tmp_path / "in.nc"
    # Day of year: its whole partial of 365 groups and its results at the peak (in group order,
    # io/memory_groups.py), ~300 MiB beside the base.
    spec = write_time_series(path, "noleap", 24, 400, grid=(80, 160))
    options = {"over": "time", "chunk_rows": 20, "memory_per_rank": "300MiB"}
    assert hpcapp.run("stats", spec, **options)["mean"].shape == (80, 160)
    with pytest.raises(UsageError, match="fewer groups") as caught:
        hpcapp.run("stats", spec, group_by="time.dayofyear", **options)
    assert "\n" not in str(caught.value)
    months = hpcapp.run("stats", spec, group_by="time.month", **options)
    assert months["mean"].shape == (12, 80, 160)


def test_config_file_takes_the_grouping_and_refuses_both(tmp_path):
    from hpcapp.cli.parser import parse

    config = tmp_path / "job.toml"
    config.write_text('group_by = "time.season"\n')
    args = ["run", "stats", "in.h5:/x", "-o", "o.h5", "--config", str(config)]
    assert parse(args).config.group_by == "time.season"
    with pytest.raises(UsageError, match="exclude each other"):
        parse([*args, "--group-every", "3"])
    config.write_text("group_every = 0\n")
    with pytest.raises(UsageError, match="positive"):
        parse(args)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("schedule", ["static", "dynamic"])
@pytest.mark.parametrize("kernel", ["stats", "first_row"])
def test_grouped_run_on_the_world_equals_one_rank(shared_dir, schedule, kernel):
    # A group that only the first rank(s) see; a user combine that keeps the left partial.
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    path = shared_dir / "in.h5"
    data = sample_data(3000, 3, "float64", seed=9, nan=0.01)
    labels = labels_of_one_rank()
    if comm.rank == 0:
        write_dataset(path, data)
        write_dataset(path, labels, "g")
        (shared_dir / "first.py").write_text(FIRST_KERNEL)
    comm.Barrier()
    spec = f"{path}:/x"
    if kernel == "stats":
        options = {"kernel": "stats", "params": {"bins": 8, "range": [0, 1]}}
    else:
        options = {"kernel": f"{shared_dir}/first.py:first_row"}
    options.update(chunk_rows=61, group_by="g")
    everywhere = hpcapp.run(input=spec, root=None, schedule=schedule, **options)
    alone = hpcapp.run(input=spec, comm=MPI.COMM_SELF, **options)
    assert everywhere.keys() == alone.keys()
    for key, value in alone.items():
        assert everywhere[key].tobytes() == value.tobytes(), key
    if kernel == "stats":
        check_groups(everywhere, data, labels)
    else:
        np.testing.assert_array_equal(
            everywhere["first"], [data[labels == g][0] for g in alone["group"]]
        )


# ---------------------------------------------------------------- labels along the records


def write_transposed(path, n=12):
    """Write v(lat, time, lon) (records along lat), a CF time(time) and integer g(time)."""
    import netCDF4

    with netCDF4.Dataset(path, "w") as ds:
        for name, size in (("lat", n), ("time", n), ("lon", 1)):
            ds.createDimension(name, size)
        time = ds.createVariable("time", "f8", ("time",))
        time.units = "days since 1850-01-01"
        time[:] = np.arange(n) * 30.0
        ds.createVariable("g", "i4", ("time",))[:] = np.arange(n) % 3
        ds.createVariable("v", "f8", ("lat", "time", "lon"))[:] = np.ones((n, n, 1))
    with h5py.File(path, "a") as h5:
        h5["plain"] = np.arange(n) % 2  # plain HDF5: no dimension scale, only its length tells
    return f"{path}:/v"


@pytest.mark.parametrize("by", ["time.month", "g"])
def test_labels_along_another_dimension_than_the_records_are_refused(tmp_path, by):
    spec = write_transposed(tmp_path / "in.nc")
    out = tmp_path / "o.h5"
    name = by.split(".")[0]
    refused_here(
        "stats", spec, f"in.nc:/{name} lies along dimension 'time'",
        "records of v run along its first dimension 'lat'",
        output=str(out), over="lat,time", group_by=by,
    )  # fmt: skip
    assert not out.exists()


def test_plain_hdf5_labels_are_checked_by_their_length_only(tmp_path):
    spec = write_transposed(tmp_path / "in.nc")
    results = hpcapp.run("stats", spec, over="lat,time", group_by="plain")
    np.testing.assert_array_equal(results["group"], [0, 1])
    np.testing.assert_array_equal(results["count"], [[72], [72]])


@pytest.mark.mpi(min_size=1)
def test_every_file_of_many_is_checked_for_the_labels_dimension(shared_dir):
    # The second file is inspected by the second rank: the refusal reaches every rank.
    import netCDF4
    from mpi4py import MPI

    for index in range(2) if MPI.COMM_WORLD.rank == 0 else ():
        with netCDF4.Dataset(shared_dir / f"f{index}.nc", "w") as ds:
            ds.createDimension("time", 3)
            ds.createDimension("lat", 3)
            time = ds.createVariable("time", "f8", ("time",))
            time.units = f"days since {1850 + index}-01-01"
            time[:] = [0.0, 40, 80]
            dims = ("time", "lat") if index == 0 else ("lat", "time")  # the 2nd is transposed
            ds.createVariable("v", "f8", dims)[:] = np.ones((3, 3))
    MPI.COMM_WORLD.Barrier()
    message = refused_here(
        "stats", f"{shared_dir}/*.nc:/v", "file 2 of 2", "f1.nc:/time lies along dimension 'time'",
        comm=MPI.COMM_WORLD, output=str(shared_dir / "o.h5"), over="time,lat",
        group_by="time.month",
    )  # fmt: skip
    assert MPI.COMM_WORLD.allgather(message) == [message] * MPI.COMM_WORLD.size


def test_the_lowest_int64_label_is_reserved_for_no_group(tmp_path):
    path = tmp_path / "in.h5"
    spec = write_dataset(path, np.zeros((4, 2)))
    write_dataset(path, np.array([0, 1, np.iinfo(np.int64).min, 1], np.int64), "g")
    with pytest.raises(Exception, match="is reserved") as caught:
        hpcapp.run("stats", spec, group_by="g")
    assert "\n" not in str(caught.value)
