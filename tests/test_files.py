"""Many files as one dataset: a glob or an @list, checked file by file, read as one."""

import os

import h5py
import numpy as np
import pytest
from helpers import (
    cli_here,
    read_results,
    refused_here,
    result_bytes,
    root_attrs,
    run_here,
    write_dataset,
)

from hpcapp.errors import UsageError
from hpcapp.io.files import expand, is_many
from hpcapp.jobs.config import make_job_config
from hpcapp.jobs.inspect import inspect_many
from hpcapp.jobs.plan import plan_job
from hpcapp.kernels.registry import load_kernel

LENGTHS = [7, 0, 13, 5, 30, 1, 16, 16, 2, 0, 9, 21, 4, 11, 3, 8, 17, 6, 1, 12, 5, 14, 10, 2]


def write_files(folder, lengths=LENGTHS, cols=3, seed=0, dtype="float64"):
    """Write one file per length into ``folder``; return the files and the concatenated data."""
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    parts, paths = [], []
    for index, n in enumerate(lengths):
        part = rng.normal(10.0, 3.0, size=(n, cols)).astype(dtype)
        part[rng.random(part.shape) < 0.05] = np.nan
        path = folder / f"run-{index:03d}.h5"
        write_dataset(path, part)
        parts.append(part)
        paths.append(path)
    return paths, np.concatenate(parts)


def run_ok(args):
    """Run the command line in this process (one rank); fail the test unless it exits 0."""
    done = cli_here([*args, "-q"])
    assert done.returncode == 0, done.stderr
    return done


def test_a_glob_is_the_concatenation_bitwise_and_records_its_files(tmp_path):
    paths, data = write_files(tmp_path / "runs")
    single = write_dataset(tmp_path / "all.h5", data)
    chunking = ["--chunk-rows", "16", "-p", "range=0,20", "-p", "bins=8"]
    run_ok(
        ["run", "stats", f"{tmp_path}/runs/run-*.h5:/x", "-o", str(tmp_path / "many.h5"), *chunking]
    )
    run_ok(["run", "stats", single, "-o", str(tmp_path / "one.h5"), *chunking])
    # Chunks of 16 rows span files (and skip the empty ones): the same chunks, the same bits.
    assert result_bytes(tmp_path / "many.h5") == result_bytes(tmp_path / "one.h5")
    got = read_results(tmp_path / "many.h5")
    np.testing.assert_array_equal(got["count"], np.sum(~np.isnan(data), axis=0))
    np.testing.assert_allclose(got["mean"], np.nanmean(data, axis=0), rtol=1e-13)
    np.testing.assert_array_equal(got["min"], np.nanmin(data, axis=0))
    for col in range(data.shape[1]):
        column = data[:, col][~np.isnan(data[:, col])]
        np.testing.assert_array_equal(got["hist"][col], np.histogram(column, 8, (0, 20))[0])
    import netCDF4

    with netCDF4.Dataset(tmp_path / "many.h5") as nc:  # netCDF-C reads the file table
        table = {name: nc[f"input_file_{name}"] for name in ("path", "rows", "size", "mtime_ns")}
        assert all(variable.dimensions[0] == "file" for variable in table.values())
        paths_read = [bytes(row.compressed()).decode() for row in table["path"][:]]
        assert paths_read == [str(p) for p in paths]
        np.testing.assert_array_equal(table["rows"][:], LENGTHS)
        np.testing.assert_array_equal(table["size"][:], [os.stat(p).st_size for p in paths])
        np.testing.assert_array_equal(table["mtime_ns"][:], [os.stat(p).st_mtime_ns for p in paths])
    attrs = root_attrs(tmp_path / "many.h5")
    assert attrs["input_file_count"] == len(paths)
    assert attrs["input"] == f"{tmp_path}/runs/run-*.h5:/x"
    assert attrs["job_identity"]["input_files"]["count"] == len(paths)


def test_a_file_list_keeps_its_order_in_per_row_outputs(tmp_path):
    paths, _ = write_files(tmp_path / "runs", lengths=[5, 0, 8, 3, 12])
    order = [paths[3], paths[0], paths[4], paths[1], paths[2]]
    listing = tmp_path / "files.txt"
    listing.write_text("# newest first\n" + "\n".join(str(p) for p in order) + "\n\n")
    with_order = np.concatenate([h5py.File(p, "r")["x"][()] for p in order])
    out = tmp_path / "rows.h5"
    run_ok(["run", "stats", f"@{listing}:/x", "-o", str(out), "--over", "1", "--chunk-rows", "4"])
    got = read_results(out)
    np.testing.assert_allclose(got["mean"], np.nanmean(with_order, axis=1), rtol=1e-13)
    np.testing.assert_array_equal(got["max"], np.nanmax(with_order, axis=1))


def test_netcdf_files_concatenate_their_time_coordinate(tmp_path):
    xarray = pytest.importorskip("xarray")
    from ncdata import write_netcdf

    rng = np.random.default_rng(3)
    parts, first = [], 0
    for index, n in enumerate([4, 6, 3]):
        part = rng.normal(280.0, 5.0, size=(n, 3, 4)).astype("f4")
        path = tmp_path / f"day{index}.nc"
        write_netcdf(path, part)
        with h5py.File(path, "a") as h5:
            h5["time"][...] = np.arange(first, first + n) * 6.0
        parts.append(part)
        first += n
    data = np.concatenate(parts).astype(np.float64)
    out = tmp_path / "series.h5"
    run_ok(["run", "stats", f"{tmp_path}/day*.nc:/tas", "-o", str(out), "--over", "lat,lon"])
    with xarray.open_dataset(out) as ds:
        assert ds["tas_mean"].dims == ("time",)
        np.testing.assert_array_equal(ds["time"].values, np.arange(13) * 6.0)
        np.testing.assert_allclose(ds["tas_mean"].values, data.mean(axis=(1, 2)), rtol=1e-12)
    out = tmp_path / "field.h5"
    run_ok(["run", "stats", f"{tmp_path}/day*.nc:/tas", "-o", str(out), "--over", "time"])
    with xarray.open_dataset(out) as ds:
        assert ds["tas_mean"].dims == ("lat", "lon")
        np.testing.assert_allclose(ds["tas_mean"].values, data.mean(axis=0), rtol=1e-12)
        np.testing.assert_array_equal(ds["lat"].values, np.linspace(-90, 90, 3))


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("kind", ["mismatch", "unreadable"])
def test_bad_inputs_name_the_first_bad_file(shared_dir, kind):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if comm.rank == 0:
        write_files(shared_dir / "runs", lengths=[4, 5, 0, 6, 7, 3])
        # The 5th and the 6th of 6 files are bad; with 4 ranks two ranks each find one.
        for index, shape in ((4, (7, 4)), (5, (3, 2))):
            with h5py.File(shared_dir / "runs" / f"run-{index:03d}.h5", "a") as h5:
                del h5["x"]
                h5["x" if kind == "mismatch" else "y"] = np.zeros(shape)
    comm.Barrier()
    fragments = ["file 5 of 6", "run-004.h5", *(["(4,)", "(3,)"] if kind == "mismatch" else [])]
    out = shared_dir / "o.h5"
    spec = f"{shared_dir}/runs/*.h5:/x"
    message = refused_here("stats", spec, *fragments, comm=comm, output=str(out))
    assert comm.allgather(message) == [message] * comm.size
    assert not out.exists()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: f"{d}/nothing-*.h5:/x", "matches no file"),
        (lambda d: f"@{d}/missing.txt:/x", "cannot read the file list"),
        (lambda d: f"@{d}/empty.txt:/x", "names no file"),
        (lambda d: f"@{d}/twice.txt:/x", "twice"),
        (lambda d: f"@{d}/gone.txt:/x", "file 2 of 3"),
        (lambda d: f"{d}/runs/run-00[12].h5:/x", "each of its 2 files holds 0 rows"),
        (lambda d: f"{d}/runs/*.h5:/y", "file 1 of 4"),
    ],
)
def test_refusals(tmp_path, make, expected):
    paths, _ = write_files(tmp_path / "runs", lengths=[3, 0, 0, 5])
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    (tmp_path / "twice.txt").write_text(f"{paths[0]}\n{paths[3]}\n{paths[0]}\n")
    (tmp_path / "gone.txt").write_text(f"{paths[0]}\n{tmp_path}/runs/run-999.h5\n{paths[3]}\n")
    spec = make(tmp_path)
    assert is_many(spec)
    refused_here("stats", spec, expected, output=str(tmp_path / "o.h5"))


def test_files_must_agree_on_units_decoded_dtype_and_coordinates(tmp_path):
    from ncdata import write_netcdf

    stored = np.arange(24, dtype="i2").reshape(2, 3, 4)
    packing = {"scale_factor": 0.5, "add_offset": 100.0, "units": "K"}
    write_netcdf(tmp_path / "a.nc", stored, attrs=packing)
    write_netcdf(tmp_path / "b.nc", stored, attrs={**packing, "units": "degC"})
    write_netcdf(tmp_path / "c.nc", stored, attrs=packing)
    with h5py.File(tmp_path / "c.nc", "a") as h5:
        h5["lon"][0] = -1.0
    # float32 packing attributes decode to float32, the first file's float64 to float64.
    float32 = {"scale_factor": np.float32(0.5), "add_offset": np.float32(100.0)}
    write_netcdf(tmp_path / "d.nc", stored, attrs={**packing, **float32})
    for second, expected in (
        ("b", r"b.nc:/tas\) has other CF attributes \(units: \['degC'\]\) than the first file \("),
        ("c", "coordinate 'lon'"),
        ("d", "dtype"),
    ):
        (tmp_path / "list.txt").write_text(f"{tmp_path}/a.nc\n{tmp_path}/{second}.nc\n")
        with pytest.raises(UsageError, match=expected):
            inspect_many(None, f"@{tmp_path}/list.txt:/tas")


def test_expand_sorts_a_glob_and_keeps_a_list_in_order(tmp_path, monkeypatch):
    paths, _ = write_files(tmp_path / "runs", lengths=[1, 2, 3])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "l.txt").write_text("runs/run-002.h5\n  runs/run-000.h5  \n")
    assert expand("runs/run-*.h5:/x") == ([str(p) for p in paths], "/x")
    assert expand("@l.txt:x") == ([str(paths[2]), str(paths[0])], "/x")
    assert not is_many(f"{paths[0]}:/x")


def test_resume_refuses_a_changed_file_list(tmp_path):
    write_files(tmp_path / "runs", lengths=[3, 4, 5])
    kernel, code = load_kernel("stats"), {"kernel": "stats"}
    config = make_job_config(
        {
            "kernel": "stats",
            "input": f"{tmp_path}/runs/*.h5:/x",
            "output": str(tmp_path / "o.h5"),
            "resume": True,
        },
        {},
    )
    plan = plan_job(config, kernel, code)
    from hpcapp.io import checkpoint

    checkpoint.write_manifest(plan.checkpoint_dir, plan.identity, 0)
    assert plan_job(config, kernel, code).resume_generation == 0  # unchanged: resumes
    write_dataset(tmp_path / "runs" / "run-003.h5", np.ones((2, 3)))  # a fourth file arrives
    with pytest.raises(UsageError, match="input_files"):
        plan_job(config, kernel, code)
    os.remove(tmp_path / "runs" / "run-003.h5")
    os.utime(tmp_path / "runs" / "run-001.h5", ns=(1, 1))  # a file rewritten
    with pytest.raises(UsageError, match="input_files"):
        plan_job(config, kernel, code)


def test_many_files_match_numpy(tmp_path):
    _, data = write_files(tmp_path / "runs", lengths=[50, 0, 130, 70, 300, 10, 240] * 3, cols=4)
    got = run_here("stats", f"{tmp_path}/runs/*.h5:/x", chunk_rows=64, params={"range": [0, 20]})
    np.testing.assert_allclose(got["mean"], np.nanmean(data, axis=0), rtol=1e-13)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("how", ["static", "dynamic", "scatter"])
def test_identical_bits_on_any_rank_count_and_schedule(shared_dir, how):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if comm.rank == 0:
        write_files(shared_dir / "runs", lengths=[50, 0, 130, 70, 300, 10, 240] * 3, cols=4)
    comm.Barrier()
    spec = f"{shared_dir}/runs/*.h5:/x"
    options = {"chunk_rows": 64, "params": {"range": [0, 20]}}
    alone = run_here("stats", spec, **options)
    extra = {"distribute": "scatter"} if how == "scatter" else {"schedule": how}
    world = run_here("stats", spec, comm=comm, root=None, **options, **extra)
    assert {k: v.tobytes() for k, v in world.items()} == {k: v.tobytes() for k, v in alone.items()}


@pytest.mark.mpi(min_size=2)
def test_inspection_is_shared_and_reports_the_first_bad_file(tmp_path_factory):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    folder = tmp_path_factory.mktemp("files") if comm.rank == 0 else None
    folder = comm.bcast(folder, root=0)
    if comm.rank == 0:
        write_files(folder / "runs", lengths=list(range(1, 4 * comm.size + 1)))
        with h5py.File(folder / "runs" / f"run-{4 * comm.size - 1:03d}.h5", "a") as h5:
            h5["x"].attrs["units"] = "K"  # the last file, inspected by the last rank
    comm.Barrier()
    with pytest.raises(UsageError, match=f"file {4 * comm.size} of {4 * comm.size}") as caught:
        inspect_many(comm, f"{folder}/runs/*.h5:/x")
    assert getattr(caught.value, "collective", False)
    os.remove(folder / "runs" / f"run-{4 * comm.size - 1:03d}.h5") if comm.rank == 0 else None
    comm.Barrier()
    source = inspect_many(comm, f"{folder}/runs/*.h5:/x")
    if comm.rank == 0:
        assert source.n_rows == sum(range(1, 4 * comm.size))
        assert len(source.members) == 4 * comm.size - 1
    else:
        assert source is None


def test_check_and_the_library_take_many_files(tmp_path):
    import hpcapp
    from hpcapp.testing import read_rows

    _, data = write_files(tmp_path / "runs", lengths=[3, 0, 4, 6])
    spec = f"{tmp_path}/runs/*.h5:/x"
    np.testing.assert_array_equal(read_rows(spec, max_rows=5), data[:5])
    np.testing.assert_array_equal(read_rows(spec), data)
    results = hpcapp.run("stats", spec)
    np.testing.assert_allclose(results["mean"], np.nanmean(data, axis=0), rtol=1e-13)
    done = cli_here(["check", "stats", spec])
    assert done.returncode == 0, done.stderr


def test_a_file_replaced_after_inspection_is_named_when_read(tmp_path):
    from hpcapp.io.series import FileSeries

    paths, data = write_files(tmp_path / "runs", lengths=[4, 6, 5])
    source = inspect_many(None, f"{tmp_path}/runs/*.h5:/x")
    buffer = np.empty((15, 3))
    with FileSeries(source) as series:
        series.read(0, 15, buffer)
        np.testing.assert_array_equal(buffer, data)
        series.read_rows("/x", buffer[:7], 3, 10)  # across the first two files
        np.testing.assert_array_equal(buffer[:7], data[3:10])
    with h5py.File(paths[1], "w") as h5:
        h5["x"] = np.zeros((2, 3))
    with FileSeries(source) as series, pytest.raises(OSError, match=r"run-001\.h5.*replaced"):
        series.read(0, 15, buffer)


def test_big_endian_integer_files_read_as_stored(tmp_path):
    rng = np.random.default_rng(5)
    parts = [rng.integers(-(2**31), 2**31 - 1, size=(n, 2)).astype(">i4") for n in (3, 5, 0, 4)]
    for index, part in enumerate(parts):
        write_dataset(tmp_path / f"be-{index}.h5", part)
    out = tmp_path / "be.h5"
    run_ok(["run", "stats", f"{tmp_path}/be-*.h5:/x", "-o", str(out), "--chunk-rows", "5"])
    data = np.concatenate(parts).astype(np.int64)
    got = read_results(out)
    np.testing.assert_array_equal(got["sum"], data.sum(axis=0))
    np.testing.assert_array_equal(got["min"], data.min(axis=0))


def write_days(path, days, values, units="days since 2001-01-01", calendar="noleap", time=True):
    """Write tas(time, lat, lon) with a CF time coordinate holding ``days``."""
    import netCDF4

    with netCDF4.Dataset(path, "w") as ds:
        for name, n in zip(("time", "lat", "lon"), values.shape, strict=True):
            ds.createDimension(name, n)
        if time:
            coord = ds.createVariable("time", "f8", ("time",))
            coord.units, coord.calendar = units, calendar
            coord[:] = days
        for name, n in zip(("lat", "lon"), values.shape[1:], strict=True):
            ds.createVariable(name, "f8", (name,))[:] = np.arange(n) * 10.0
        ds.createVariable("tas", "f8", ("time", "lat", "lon"))[:] = values


def test_grouping_by_month_over_yearly_files_is_xarrays_groupby(tmp_path):
    xarray = pytest.importorskip("xarray")
    days = np.arange(365 * 3 + 20, dtype=np.float64)
    values = np.random.default_rng(8).normal(280.0, 5.0, size=(len(days), 2, 3))
    write_days(tmp_path / "all.nc", days, values)
    (tmp_path / "years").mkdir()
    for year, start in enumerate(range(0, len(days), 365)):
        part = slice(start, start + 365)
        write_days(tmp_path / "years" / f"tas_{2001 + year}.nc", days[part], values[part])
    base = ["--over", "time", "--group-by", "time.month", "--chunk-rows", "50"]
    many, one = tmp_path / "many.h5", tmp_path / "one.h5"
    run_ok(["run", "stats", f"{tmp_path}/years/tas_*.nc:/tas", "-o", str(many), *base])
    run_ok(["run", "stats", f"{tmp_path}/all.nc:/tas", "-o", str(one), *base])
    assert result_bytes(many) == result_bytes(one)  # the same chunks, the same bits
    coder = xarray.coders.CFDatetimeCoder(use_cftime=True)
    with xarray.open_dataset(tmp_path / "all.nc", decode_times=coder) as ds:
        expected = ds["tas"].groupby("time.month").mean("time").load()
    with xarray.open_dataset(many) as ds:
        np.testing.assert_array_equal(ds["month"].values, expected["month"].values)
        np.testing.assert_allclose(ds["tas_mean"].values, expected.values, rtol=1e-12)


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ({"time": False}, "units None"),  # the netCDF dimension without its variable
        ({"calendar": "360_day"}, "calendar '360_day'"),
    ],
)
def test_grouping_over_files_needs_the_same_labels_in_each(tmp_path, bad, expected):
    values = np.zeros((10, 2, 3))
    for index in range(4):
        options = bad if index == 2 else {}
        write_days(tmp_path / f"f{index}.nc", np.arange(10) + 10.0 * index, values, **options)
    spec = f"{tmp_path}/f*.nc:/tas"
    options = {"over": "time", "output": str(tmp_path / "o.h5"), "group_by": "time.month"}
    refused_here("stats", spec, "file 3 of 4", expected, **options)


def test_a_file_named_like_a_pattern_is_one_file(tmp_path):
    data = np.arange(12.0).reshape(4, 3)
    spec = write_dataset(tmp_path / "run[1].h5", data)
    write_dataset(tmp_path / "run1.h5", -data)  # what the pattern run[1].h5 would match
    assert not is_many(spec)
    out = tmp_path / "o.h5"
    run_ok(["run", "stats", spec, "-o", str(out)])
    np.testing.assert_array_equal(read_results(out)["mean"], data.mean(axis=0))


def test_files_must_agree_on_unsigned(tmp_path):
    from ncdata import write_netcdf

    stored = np.arange(24, dtype="i1").reshape(2, 3, 4)
    write_netcdf(tmp_path / "a.nc", stored, attrs={"_Unsigned": "true"})
    write_netcdf(tmp_path / "b.nc", stored)
    with pytest.raises(UsageError, match=r"CF attributes \(.*unsigned"):
        inspect_many(None, f"{tmp_path}/[ab].nc:/tas")


# ---------------------------------------------------------------- times across files


def xarray_by_time(paths):
    """Return xarray's files combined in the order of their times (``combine_by_coords``)."""
    import warnings

    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xr.combine_by_coords([xr.open_dataset(p).load() for p in paths])


# Such files inspected by other ranks than rank 0: test_times_inspected_by_every_rank_are_...
def test_a_copy_of_a_file_under_another_name_is_refused(tmp_path):
    import shutil

    write_days(tmp_path / "tas_a.nc", np.arange(10.0), np.ones((10, 2, 3)))
    shutil.copy(tmp_path / "tas_a.nc", tmp_path / "tas_copy.nc")
    out = tmp_path / "o.h5"
    for sort in (False, True):
        refused_here(
            "stats", f"{tmp_path}/tas_*.nc:/tas", "file 2 of 2", "tas_copy.nc", "tas_a.nc",
            "starts at 2001-01-01 00:00:00, not after 2001-01-10 00:00:00",
            "duplicate or overlapping", output=str(out), sort_files=sort,
        )  # fmt: skip
        assert not out.exists()


def test_files_that_touch_overlap(tmp_path):
    write_days(tmp_path / "f0.nc", np.arange(5.0), np.ones((5, 2, 3)))
    write_days(tmp_path / "f1.nc", np.arange(4.0, 9.0), np.ones((5, 2, 3)))  # day 4 twice
    with pytest.raises(UsageError, match=r"file 2 of 2 .*f1.nc.* starts at 2001-01-05"):
        inspect_many(None, f"{tmp_path}/f*.nc:/tas")


def test_files_named_against_their_time_need_sort_files(tmp_path):
    rng = np.random.default_rng(6)
    starts = {"a": 10, "b": 20, "c": 0}  # c's times come first
    paths = []
    for name, first in starts.items():
        path = tmp_path / f"tas_{name}.nc"
        write_days(path, np.arange(first, first + 10.0), rng.normal(size=(10, 2, 3)))
        paths.append(path)
    spec = f"{tmp_path}/tas_*.nc:/tas"
    out = tmp_path / "o.h5"
    args = ["run", "stats", spec, "-o", str(out), "--over", "time", "--group-every", "5"]
    done = cli_here(args)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "file 3 of 3" in line and "tas_c.nc" in line and "tas_b.nc" in line, line
    assert "add --sort-files" in line, line
    run_ok([*args, "--sort-files"])
    expected = xarray_by_time(paths)["tas"]
    got = read_results(out)
    blocks = expected.values.reshape(6, 5, 2, 3).mean(axis=1)
    np.testing.assert_allclose(got["mean"], blocks, rtol=1e-12)
    with h5py.File(out, "r") as h5:
        rows = h5["input_file_path"][()]
    order = [os.path.basename(b"".join(row).decode()) for row in rows]
    assert order == ["tas_c.nc", "tas_a.nc", "tas_b.nc"]
    series = tmp_path / "series.h5"
    run_ok(["run", "stats", spec, "-o", str(series), "--over", "lat,lon", "--sort-files"])
    with h5py.File(series, "r") as h5:
        np.testing.assert_array_equal(h5["time"][()], np.arange(30.0))
        np.testing.assert_allclose(h5["tas_mean"][()], expected.mean(("lat", "lon")).values)


def write_files_without_records(folder):
    """Four files: f0 and f2 have no records, f1 and f3 40 days each; return their paths."""
    rng = np.random.default_rng(7)
    days = {"f0": [], "f1": np.arange(0, 40.0), "f2": [], "f3": np.arange(40, 80.0)}
    paths = []
    for name, values in days.items():
        path = folder / f"{name}.nc"
        write_days(path, np.asarray(values), rng.normal(size=(len(values), 2, 3)))
        paths.append(path)
    return paths


@pytest.mark.mpi(min_size=2)
def test_files_with_no_records_group_alike_on_any_rank_count(shared_dir):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if comm.rank == 0:
        write_files_without_records(shared_dir)
    comm.Barrier()
    options = {"over": "time", "group_by": "time.month"}
    alone = run_here("stats", f"{shared_dir}/f*.nc:/tas", **options)
    world = run_here("stats", f"{shared_dir}/f*.nc:/tas", comm=comm, root=None, **options)
    assert {k: v.tobytes() for k, v in world.items()} == {k: v.tobytes() for k, v in alone.items()}


def test_files_with_no_records_are_left_out_of_the_time_checks(tmp_path):
    paths = write_files_without_records(tmp_path)
    out = tmp_path / "months.h5"
    spec = f"{tmp_path}/f*.nc:/tas"  # the first file has no records: it used to crash grouping
    run_ok(["run", "stats", spec, "-o", str(out), "--over", "time", "--group-by", "time.month"])
    import warnings

    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opened = [xr.open_dataset(paths[i]).load() for i in (1, 3)]
        expected = xr.concat(opened, "time")["tas"].groupby("time.month").mean("time")
    got = read_results(out)
    np.testing.assert_array_equal(got["month"], expected["month"].values)
    np.testing.assert_allclose(got["mean"], expected.values, rtol=1e-12)


def test_sort_files_needs_a_time_coordinate(tmp_path):
    write_files(tmp_path / "runs", lengths=[3, 4])
    with pytest.raises(UsageError, match=r"--sort-files: .* no CF time coordinate"):
        inspect_many(None, f"{tmp_path}/runs/*.h5:/x", sort_files=True)
    assert inspect_many(None, f"{tmp_path}/runs/*.h5:/x").n_rows == 7  # no time: no check


@pytest.mark.mpi(min_size=2)
def test_times_inspected_by_every_rank_are_checked_and_sorted_on_rank_0(tmp_path_factory):
    import shutil

    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    n = 2 * comm.size
    folder = comm.bcast(tmp_path_factory.mktemp("times") if comm.rank == 0 else None, root=0)
    if comm.rank == 0:
        for index in range(n):  # names against their time; each file its own epoch
            path = folder / f"f{n - 1 - index:02d}.nc"
            write_days(
                path, np.arange(3.0), np.ones((3, 2, 3)), units=f"days since {2001 + index}-01-01"
            )
        shutil.copy(folder / "f00.nc", folder / "f99.nc")  # inspected by the last rank
    comm.Barrier()
    spec = f"{folder}/f*.nc:/tas"
    with pytest.raises(UsageError, match=f"file {n + 1} of {n + 1} .*f99.nc") as caught:
        inspect_many(comm, spec, sort_files=True)
    assert getattr(caught.value, "collective", False)
    comm.Barrier()
    if comm.rank == 0:
        os.remove(folder / "f99.nc")
    comm.Barrier()
    source = inspect_many(comm, spec, sort_files=True)
    if comm.rank == 0:
        names = [os.path.basename(m.path) for m in source.members]
        assert names == [f"f{n - 1 - index:02d}.nc" for index in range(n)]
        units = [dict(m.times)["/time"].units for m in source.members]
        assert units == [f"days since {2001 + index}-01-01" for index in range(n)]
    else:
        assert source is None
