"""A climatology read in group order: chunks of whole groups, the same results as xarray."""

import pickle

import numpy as np
import pytest
from helpers import run_here

from hpcapp.io import group_order
from hpcapp.io.group_order import GroupOrder, group_chunk_rows, runs
from hpcapp.jobs.config import make_job_config
from hpcapp.jobs.plan import plan_job
from hpcapp.kernels import grouped
from hpcapp.kernels.grouped import NO_GROUP
from hpcapp.kernels.registry import load_kernel

xr = pytest.importorskip("xarray")


def day_codes(years, leap=()):
    """Day-of-year labels of ``years`` daily years (366 days in the years listed in ``leap``)."""
    return np.concatenate([np.arange(1, (366 if y in leap else 365) + 1) for y in range(years)])


def test_runs_of_records():
    assert runs(np.array([], np.int64)) == []
    assert runs(np.array([3])) == [(3, 4)]
    assert runs(np.array([0, 1, 2, 5, 6, 9])) == [(0, 3), (5, 7), (9, 10)]


def test_rows_of_the_group_order_are_each_groups_records_in_record_order():
    codes = np.array([2, 1, NO_GROUP, 2, 1, 3, 2])
    order = GroupOrder(codes)
    # Sorted by label (no group first), each label's records in record order.
    assert order.records(0, 1).tolist() == [2]
    assert order.records(1, 3).tolist() == [1, 4]  # label 1
    assert order.records(3, 6).tolist() == [0, 3, 6]  # label 2, read back in record order
    assert order.labels(order.records(2, 7)).tolist() == [2, 2, 1, 3, 2]  # records 0 3 4 5 6
    copied = pickle.loads(pickle.dumps(order))  # the plan sends the labels, not the order
    assert "_sorted" not in copied.__dict__
    assert copied.records(3, 6).tolist() == [0, 3, 6]


def test_chunk_rows_are_whole_groups_within_the_bytes():
    codes = day_codes(10, leap={0, 4, 8})  # 365 days of 10 records, day 366 of 3
    row_bytes = 129_600  # 180 x 360 int16
    rows = group_chunk_rows(codes, row_bytes)
    assert rows is not None and rows % 10 == 0  # whole groups of the largest size
    assert rows * row_bytes <= group_order.GROUP_CHUNK_BYTES
    # Storage chunks of 64 records: each chunk reads runs of at least 4 of them a year.
    stored = group_chunk_rows(codes, row_bytes // 4, storage_chunk_rows=64)
    assert stored == 4 * 64 * 10
    assert group_chunk_rows(codes, 8) == len(codes)  # a small input: one chunk
    # Storage chunks of a whole year: a chunk of whole groups would be the whole input.
    assert group_chunk_rows(codes, row_bytes, storage_chunk_rows=365) is None
    # --chunk-rows: kept, unless each of its runs would reread storage chunks many times.
    assert group_chunk_rows(codes, row_bytes, chunk_rows=30) == 30
    assert group_chunk_rows(codes, row_bytes, storage_chunk_rows=64, chunk_rows=30) is None
    # Months: a group's records come 28-31 at a time.
    months = np.repeat(np.tile(np.arange(1, 13), 10), 30)
    assert group_chunk_rows(months, row_bytes, storage_chunk_rows=64, chunk_rows=600) == 600
    assert group_chunk_rows(np.full(5, NO_GROUP), row_bytes) is None


def write_packed_years(folder, years, packings, step_hours=24):
    """Write one netCDF file per 365-day year of ``tas``, each packed its own way."""
    import netCDF4

    folder.mkdir()
    paths, rng = [], np.random.default_rng(4)
    for index, (scale, offset) in enumerate(packings[:years]):
        path = folder / f"tas_{index}.nc"
        n = 365 * 24 // step_hours
        with netCDF4.Dataset(path, "w") as ds:
            for name, size in (("time", None), ("lat", 3), ("lon", 4)):
                ds.createDimension(name, size)
            time = ds.createVariable("time", "f8", ("time",))
            time.units, time.calendar = "hours since 2001-01-01", "noleap"
            time[:] = (index * 365 * 24) + np.arange(n) * step_hours
            var = ds.createVariable("tas", "i2", ("time", "lat", "lon"), fill_value=-32767)
            var.scale_factor, var.add_offset, var.units = scale, offset, "K"
            values = 280.0 + 5 * rng.standard_normal((n, 3, 4))
            values[::17, 0, 0] = np.nan  # missing cells
            var[:] = np.ma.masked_array(np.nan_to_num(values), np.isnan(values))
        paths.append(path)
    return f"{folder}/tas_*.nc:/tas", paths


def groups_of_each_chunk(monkeypatch):
    """Record the labels each chunk's grouped partial holds."""
    seen = []
    vectorised = grouped.vectorised

    def spy(kern, data, labels, present, *args):
        seen.append(present.tolist())
        return vectorised(kern, data, labels, present, *args)

    monkeypatch.setattr(grouped, "vectorised", spy)
    return seen


@pytest.mark.parametrize("component", ["dayofyear", "month"])
def test_a_climatology_of_files_packed_each_their_own_way_equals_xarray(
    tmp_path, monkeypatch, component
):
    packings = [(0.01, 280.0), (0.002, 275.0), (0.005, 290.0)]
    spec, paths = write_packed_years(tmp_path / "years", 3, packings)
    seen = groups_of_each_chunk(monkeypatch)
    got = run_here("stats", spec, over="time", group_by=f"time.{component}", chunk_rows=9)
    # Each chunk holds 9 records of a few neighbouring groups, read across the three files
    # (each decoded its own way): in record order a chunk of 9 days would be 9 groups.
    most = 4 if component == "dayofyear" else 2
    assert seen and max(len(labels) for labels in seen) <= most
    assert all(labels == sorted(labels) for labels in seen)
    coder = xr.coders.CFDatetimeCoder(use_cftime=True)
    with xr.open_mfdataset(paths, combine="by_coords", decode_times=coder) as ds:
        expected = ds.tas.astype("f8").groupby(f"time.{component}").mean("time").load()
    np.testing.assert_array_equal(got[component], expected[component].values)
    np.testing.assert_allclose(got["mean"], expected.values, rtol=1e-12)


def test_a_selected_window_of_files_packed_their_own_ways_in_group_order_equals_xarray(
    tmp_path, monkeypatch
):
    packings = [(0.01, 280.0), (0.002, 275.0), (0.005, 290.0)]
    spec, paths = write_packed_years(tmp_path / "years", 3, packings)
    seen = groups_of_each_chunk(monkeypatch)
    window = ("2001-03-01", "2003-10-31")
    got = run_here("stats", spec, over="time", group_by="time.dayofyear", chunk_rows=7,
                   sel={"time": window}, isel="lon=1:")  # fmt: skip
    assert max(len(labels) for labels in seen) <= 4  # 2-3 records a day: group order
    coder = xr.coders.CFDatetimeCoder(use_cftime=True)
    with xr.open_mfdataset(paths, combine="by_coords", decode_times=coder) as ds:
        part = ds.tas.sel(time=slice(*window)).isel(lon=slice(1, None)).astype("f8")
        expected = part.groupby("time.dayofyear").mean("time").load()
    np.testing.assert_array_equal(got["dayofyear"], expected["dayofyear"].values)
    np.testing.assert_allclose(got["mean"], expected.values, rtol=1e-12)


def test_the_group_order_does_not_depend_on_the_chunk_rows_for_whole_groups(tmp_path):
    # Chunks of whole groups: each group's records in one chunk, so its bits are those of one
    # call on them, whatever the number of groups a chunk holds.
    spec, _ = write_packed_years(tmp_path / "years", 2, [(0.01, 280.0), (0.002, 275.0)])
    runs_ = [run_here("stats", spec, over="time", group_by="time.dayofyear", chunk_rows=rows)
             for rows in (2, 6, 730)]  # fmt: skip
    for other in runs_[1:]:
        assert other["mean"].tobytes() == runs_[0]["mean"].tobytes()
        assert other["var"].tobytes() == runs_[0]["var"].tobytes()


def test_labels_that_cannot_be_read_at_planning_are_read_per_chunk(tmp_path, monkeypatch):
    from hpcapp.io import labels

    spec, paths = write_packed_years(tmp_path / "years", 2, [(0.01, 280.0), (0.002, 275.0)])
    labels_for_rows = labels.labels_for_rows
    calls = []

    def fails_for_all(grouping, rows, start, stop):
        calls.append((start, stop))
        if (start, stop) == (0, 730):  # planning: every record at once
            raise OSError("a file system hiccup")
        return labels_for_rows(grouping, rows, start, stop)

    monkeypatch.setattr(labels, "labels_for_rows", fails_for_all)
    plan = plan_of(spec, group_by="time.month")
    assert plan.grouping.order is None  # read in record order, each chunk's labels by itself
    got = run_here("stats", spec, over="time", group_by="time.month", chunk_rows=50)
    assert len(calls) == 2 + 15  # two plans, then each of the 15 chunks its own
    coder = xr.coders.CFDatetimeCoder(use_cftime=True)
    with xr.open_mfdataset(paths, combine="by_coords", decode_times=coder) as ds:
        expected = ds.tas.astype("f8").groupby("time.month").mean("time").load()
    np.testing.assert_allclose(got["mean"], expected.values, rtol=1e-12)


def plan_of(spec, **options):
    values = {"kernel": "stats", "input": spec, "over": "time", **options}
    config = make_job_config(values, {}, output_required=False)
    return plan_job(config, load_kernel("stats"), {"kernel": "stats"})


def test_storage_chunks_of_many_records_keep_the_record_order(tmp_path, monkeypatch):
    import netCDF4

    path = tmp_path / "in.nc"
    n = 365 * 3
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", n)
        ds.createDimension("x", 5)
        time = ds.createVariable("time", "f8", ("time",))
        time.units, time.calendar = "days since 2001-01-01", "noleap"
        time[:] = np.arange(n)
        var = ds.createVariable("v", "f8", ("time", "x"), chunksizes=(73, 5))
        var[:] = np.random.default_rng(1).normal(size=(n, 5))
    spec, by = f"{path}:/v", "time.dayofyear"
    # Storage chunks of 73 records: chunks of 4 x 73 whole groups, each run 4 storage chunks.
    plan = plan_of(spec, group_by=by)
    assert plan.grouping.order is not None and plan.chunk_rows == n  # small: one chunk
    monkeypatch.setattr(group_order, "GROUP_CHUNK_BYTES", 1024)
    plan = plan_of(spec, group_by=by)
    assert plan.grouping.order is not None and plan.chunk_rows == 4 * 73 * 3
    # Too large a chunk for that: whole cycles in record order instead.
    monkeypatch.setattr(group_order, "MAX_GROUP_CHUNK_BYTES", 4 * 73 * 3 * 40 - 1)
    plan = plan_of(spec, group_by=by)
    assert plan.grouping.order is None and plan.chunk_rows >= 4 * 366
    monkeypatch.undo()
    # --chunk-rows 100: runs of ~33 records would read each storage chunk about twice.
    plan = plan_of(spec, group_by=by, chunk_rows=100)
    assert plan.grouping.order is None and plan.chunk_rows == 100
    seen = groups_of_each_chunk(monkeypatch)
    got = run_here("stats", spec, over="time", group_by=by, chunk_rows=100)
    assert len(seen[0]) == 100  # in record order: a chunk of 100 days is 100 groups
    with xr.open_dataset(path, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True)) as ds:
        expected = ds.v.groupby("time.dayofyear").mean("time").load()
    np.testing.assert_allclose(got["mean"], expected.values, rtol=1e-12)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("schedule", ["static", "dynamic"])
def test_a_climatology_in_group_order_has_the_same_bits_on_any_rank_count(shared_dir, schedule):
    from mpi4py import MPI

    import hpcapp

    comm = MPI.COMM_WORLD
    packings = [(0.01, 280.0), (0.002, 275.0), (0.005, 290.0)]
    written = write_packed_years(shared_dir / "years", 3, packings) if comm.rank == 0 else None
    spec = comm.bcast(written[0] if written else None)
    options = {"over": "time", "group_by": "time.dayofyear", "chunk_rows": 12}
    everywhere = hpcapp.run("stats", spec, root=None, schedule=schedule, **options)
    alone = hpcapp.run("stats", spec, comm=MPI.COMM_SELF, **options)
    assert everywhere.keys() == alone.keys()
    for key, value in alone.items():
        assert everywhere[key].tobytes() == value.tobytes(), key
    assert everywhere["count"].dtype == np.int64
