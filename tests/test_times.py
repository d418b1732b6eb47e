"""CF time coordinates decoded as xarray decodes them: masked, packed, per file, on one axis."""

import warnings

import h5py
import numpy as np
import pytest
from helpers import refused_here, run_cli, run_here
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from ncdata import (
    EPOCH,
    write_masked_and_packed_files,
    write_masked_time,
    write_stamped_files,
    write_times,
    write_yearly_files,
)

from hpcapp.io.coding import times


def opened(path, **options):
    """Open a file with xarray's default decoding (its warnings are not ours)."""
    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xr.open_dataset(path, **options).load()


def xarray_series(paths):
    """Return xarray's decoded unmasked records of the files in order, and which are masked.

    xarray masks and unpacks each file's times, and its own decoder turns the unmasked ones
    into dates: decoded whole, a file of a non-standard calendar with a masked time fails or
    gets the reference date for it (cftime's masked arrays: pydata/xarray#7827, #6757).
    """
    import xarray as xr

    kept, masks = [], []
    for path in paths:
        numbers = opened(path, decode_times=False)
        time = numbers["time"]
        masked = np.isnan(time.values)
        masks.append(masked)
        if not masked.all():
            units, calendar = time.attrs["units"], time.attrs.get("calendar")
            dates = xr.coding.times.decode_cf_datetime(time.values[~masked], units, calendar)
            kept.append(numbers.isel(time=~masked).assign_coords(time=dates))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        combined = xr.combine_nested(kept, concat_dim="time") if kept else None
    return combined, np.concatenate(masks)


def xarray_months(paths, series=None):
    combined, _ = series or xarray_series(paths)
    return combined["v"].groupby("time.month").mean("time")


def seconds_apart(got, expected):
    """Return how far apart two arrays of decoded dates are, in seconds."""
    if np.asarray(got).dtype.kind == "M":
        return np.abs((got - expected) / np.timedelta64(1, "s")).astype(np.float64)
    return np.array([abs((g - e).total_seconds()) for g, e in zip(got, expected, strict=True)])


def check_time_axis(out, paths, first_units, series=None):
    """Check hpcapp's time coordinate against xarray's decoded times of the same files."""
    expected, masked = series or xarray_series(paths)
    written = opened(out, decode_times=False)["time"]
    assert written.attrs["units"] == first_units
    assert "scale_factor" not in written.attrs and "add_offset" not in written.attrs
    numbers = written.values
    np.testing.assert_array_equal(np.isnan(numbers), masked)
    if masked.any():
        assert numbers.dtype == np.float64 and np.isnan(written.encoding["_FillValue"])
    import xarray as xr

    calendar = written.attrs.get("calendar", "standard")
    decoded = xr.coding.times.decode_cf_datetime(numbers[~masked], first_units, calendar)
    apart = seconds_apart(decoded, expected["time"].values)
    assert apart.max(initial=0.0) < 1e-3, (decoded, expected["time"].values)


# ---------------------------------------------------------------- one file


# Every test of this module runs in this process, on one rank; tests/test_ranks_mpi.py runs the
# same kinds of input on 1-4 ranks.


@pytest.mark.parametrize("kind", ["fill", "missing_value", "packed-fill"])
def test_a_masked_time_is_in_no_group_as_in_xarray(tmp_path, kind):
    path = tmp_path / "in.nc"
    spec = write_masked_time(path, kind)
    # Chunks of 2 records: the middle chunk holds only masked times (a chunk in no group).
    got = run_here("stats", spec, over="time", chunk_rows=2, group_by="time.month")
    expected = xarray_months([path])
    direct = opened(path)["v"].groupby("time.month").mean("time")  # NaT: in no group
    np.testing.assert_array_equal(direct["month"].values, expected["month"].values)
    np.testing.assert_allclose(direct.values, expected.values, rtol=1e-15)
    np.testing.assert_array_equal(got["month"], [1, 2])
    np.testing.assert_array_equal(got["month"], expected["month"].values)
    np.testing.assert_allclose(got["mean"], expected.values, rtol=1e-12)  # [[1.5], [5]]
    np.testing.assert_array_equal(got["count"], [[2], [2]])  # the masked records nowhere


def test_every_time_masked_is_an_error_not_an_empty_result(tmp_path):
    spec = write_times(tmp_path / "in.nc", [-1.0, -1.0], [[1.0], [2.0]], fill=-1.0)
    args = ["run", "stats", spec, "-o", str(tmp_path / "o.h5"), "--over", "time"]
    # Under mpiexec: the error is raised by finalize on rank 0 alone, and ends the job by
    # aborting it (exit 1), not by an error every rank agreed on.
    done = run_cli([*args, "--group-by", "time.month"])
    assert done.returncode == 1, done.stderr
    assert "no record is in any group" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize(
    "scale_dtype,offset", [(np.float64, None), (np.float32, None), (np.float32, 2.0)]
)
def test_packed_time_is_unpacked_as_in_xarray(tmp_path, scale_dtype, offset):
    attrs = {"scale_factor": scale_dtype(0.5)}
    if offset is not None:
        attrs["add_offset"] = scale_dtype(offset)
    raw = np.array([0, 40, 80, 100])  # days 0, 20, 40, 50 (+ offset)
    path = tmp_path / "in.nc"
    spec = write_times(path, raw, [[1.0], [2], [3], [4]], dtype="i4", attrs=attrs)
    grouped = run_here("stats", spec, over="time", group_by="time.month")
    expected = xarray_months([path])
    np.testing.assert_array_equal(grouped["month"], expected["month"].values)
    np.testing.assert_allclose(grouped["mean"], expected.values, rtol=1e-12)
    if offset is None:
        np.testing.assert_array_equal(grouped["month"], [1, 2])  # the issue's [1, 2, 3, 4]
    out = tmp_path / "series.h5"
    run_here("stats", spec, output=str(out), over="lat")
    check_time_axis(out, [path], EPOCH)
    with h5py.File(out) as h5:
        assert h5["time"].dtype == np.float64  # unpacked: the numbers are not the stored


def test_a_plain_time_axis_keeps_its_numbers_and_dtype(tmp_path):
    path = tmp_path / "in.nc"
    raw = np.array([3, 5, 8], np.int32)
    spec = write_times(path, raw, [[1.0], [2], [3]], units="hours since 2000-01-01 06:00:00",
                       calendar="noleap", dtype="i4")  # fmt: skip
    out = tmp_path / "series.h5"
    run_here("stats", spec, output=str(out), over="lat")
    with h5py.File(out) as h5:
        assert h5["time"].dtype == np.int32
        np.testing.assert_array_equal(h5["time"][()], raw)
        assert h5["time"].attrs["calendar"].decode() == "noleap"
    check_time_axis(out, [path], "hours since 2000-01-01 06:00:00")


# ---------------------------------------------------------------- many files, one axis


def test_files_with_other_units_are_written_in_the_first_files(tmp_path):
    (tmp_path / "d").mkdir()
    a = tmp_path / "d" / "a.nc"
    b = tmp_path / "d" / "b.nc"
    write_times(a, [0, 1], [[1.0, 2], [3, 4]])
    write_times(b, [48, 72], [[5.0, 6], [7, 8]], units="hours since 1850-01-01")
    out = tmp_path / "series.h5"
    run_here("stats", f"{tmp_path}/d/*.nc:/v", output=str(out), over="lat")
    with h5py.File(out) as h5:
        np.testing.assert_array_equal(h5["time"][()], [0.0, 1.0, 2.0, 3.0])  # not 48, 72
    check_time_axis(out, [a, b], EPOCH)


@pytest.mark.parametrize(
    "hours,expected,dtype",
    [([48, 72], [0, 1, 2, 3], np.int32), ([36, 48], [0, 1, 1.5, 2], np.float64)],
    ids=["whole", "not-whole"],
)
def test_an_integer_time_axis_stays_integer_where_the_values_are_whole(
    tmp_path, hours, expected, dtype
):
    (tmp_path / "d").mkdir()
    a, b = tmp_path / "d" / "a.nc", tmp_path / "d" / "b.nc"
    write_times(a, [0, 1], [[1.0], [2]], dtype="i4")
    write_times(b, hours, [[3.0], [4]], dtype="i4", units="hours since 1850-01-01")
    out = tmp_path / "series.h5"
    run_here("stats", f"{tmp_path}/d/*.nc:/v", output=str(out), over="lat")
    with h5py.File(out) as h5:
        assert h5["time"].dtype == dtype
        np.testing.assert_array_equal(h5["time"][()], expected)
    check_time_axis(out, [a, b], EPOCH)


def test_yearly_files_with_their_own_epoch_group_and_line_up_as_in_xarray(tmp_path):
    paths = write_yearly_files(tmp_path / "y")
    spec = f"{tmp_path}/y/tas_*.nc:/v"
    out = tmp_path / "series.h5"
    run_here("stats", spec, output=str(out), over="lat")
    series = xarray_series(paths)
    check_time_axis(out, paths, "days since 2001-01-01", series)
    with h5py.File(out) as h5:
        assert len(np.unique(h5["time"][()])) == 3 * 73  # were 73 unique of 219
    got = run_here("stats", spec, over="time", group_by="time.month", chunk_rows=50)
    expected = xarray_months(paths, series)
    np.testing.assert_array_equal(got["month"], expected["month"].values)
    np.testing.assert_allclose(got["mean"], expected.values, rtol=1e-12)


def test_masked_and_packed_times_across_files(tmp_path):
    paths = write_masked_and_packed_files(tmp_path / "m")
    spec = f"{tmp_path}/m/*.nc:/v"
    out = tmp_path / "series.h5"
    run_here("stats", spec, output=str(out), over="lat")
    with h5py.File(out) as h5:
        np.testing.assert_array_equal(h5["time"][()], [0.0, np.nan, 1.0, 1.5, np.nan])
    series = xarray_series(paths)
    check_time_axis(out, paths, EPOCH, series)
    got = run_here("stats", spec, over="time", group_by="time.month")
    expected = xarray_months(paths, series)
    np.testing.assert_array_equal(got["month"], expected["month"].values)
    np.testing.assert_allclose(got["mean"], expected.values, rtol=1e-12)


@pytest.mark.parametrize(
    "calendars,days,accepted",
    [
        (("noleap", "365_day"), (0, 1), True),
        (("gregorian", "standard"), (0, 1), True),
        (("standard", "proleptic_gregorian"), (0, 1), True),  # both from 1582-10-15 on
        (("noleap", "360_day"), (0, 1), False),
        (("standard", "proleptic_gregorian"), (-100000, -99999), False),  # before 1582
    ],
)
def test_calendars_must_share_one_axis(tmp_path, calendars, days, accepted):
    paths = []
    for index, calendar in enumerate(calendars):
        path = tmp_path / f"f{index}.nc"
        write_times(path, np.array(days) + 2 * index, [[1.0], [2]], calendar=calendar)
        paths.append(path)
    spec = f"{tmp_path}/f*.nc:/v"
    out = tmp_path / "o.h5"
    if not accepted:
        fragments = (f"calendar {calendars[1]!r}", "f1.nc", "f0.nc", "one time axis")
        refused_here("stats", spec, *fragments, output=str(out), over="lat")
        assert not out.exists()
        return
    run_here("stats", spec, output=str(out), over="lat")
    check_time_axis(out, paths, EPOCH)


def test_a_later_files_undecodable_time_is_refused_naming_it(tmp_path):
    write_times(tmp_path / "f0.nc", [0, 1], [[1.0], [2]])
    write_times(tmp_path / "f1.nc", [2, 3], [[1.0], [2]], calendar="martian")
    spec = f"{tmp_path}/f*.nc:/v"
    refused_here("stats", spec, "file 2 of 2", "f1.nc:/time", "calendar 'martian'")


# ---------------------------------------------------------------- any encoding, per file

FAMILIES = [
    ("standard", "gregorian", "proleptic_gregorian"),
    ("noleap", "365_day"),
    ("360_day",),
    ("all_leap", "366_day"),
    ("julian",),
]
UNITS = [
    EPOCH,
    "hours since 1849-12-01 06:00:00",
    "minutes since 1850-01-01",
    "days since 1849-06-01",
]


@st.composite
def encoded_files(draw):
    """Files of one increasing series of times, each encoded its own way."""
    import cftime

    family = draw(st.sampled_from(FAMILIES))
    lengths = draw(st.lists(st.integers(0, 4), min_size=1, max_size=3))
    total = sum(lengths)
    assume(total > 0)
    steps = draw(st.lists(st.sampled_from([0.25, 1.0, 7.0, 20.0, 45.0]), min_size=total,
                          max_size=total))  # fmt: skip
    days = np.cumsum(steps)
    files, at = [], 0
    for n in lengths:
        calendar = draw(st.sampled_from(family))
        units = draw(st.sampled_from(UNITS))
        values = np.empty(0)
        if n:  # cftime takes no empty arrays
            dates = cftime.num2date(days[at : at + n], EPOCH, calendar)
            values = np.asarray(cftime.date2num(dates, units, calendar), np.float64)
        dtype = draw(st.sampled_from(["f8", "f4", "i4", "i2"]))
        attrs = {}
        packing = draw(st.sampled_from(["none", "scale", "scale+offset", "offset"]))
        float_type = draw(st.sampled_from([np.float32, np.float64]))
        scale = float_type(draw(st.sampled_from([0.5, 0.25, 2.0]))) if "scale" in packing else None
        offset = float_type(16.0) if "offset" in packing else None
        raw = (values - (offset or 0.0)) / (scale or 1.0)
        if not np.array_equal(raw.astype(dtype).astype(np.float64), raw):
            dtype = "f8"  # not held exactly: stored as float64
        if scale is not None:
            attrs["scale_factor"] = scale
        if offset is not None:
            attrs["add_offset"] = offset
        fill = draw(st.sampled_from(["none", "_FillValue", "missing_value"]))
        masked = draw(st.lists(st.booleans(), min_size=n, max_size=n)) if fill != "none" else []
        raw = raw.astype(dtype)
        if fill != "none":
            raw[np.array(masked, bool)] = -999
        if fill == "missing_value":
            attrs["missing_value"] = np.array(-999, dtype)
        files.append((n, units, calendar, dtype, attrs, -999 if fill == "_FillValue" else None,
                      raw))  # fmt: skip
        at += n
    return files


# Each example runs two jobs and reads every file with xarray (~0.2 s): a third of the profile's
# examples (20 in CI; `--hypothesis-profile=long` gives 333).
@settings(
    max_examples=max(1, settings.default.max_examples // 3),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(files=encoded_files())
def test_any_per_file_encoding_gives_xarrays_time_axis_and_months(tmp_path_factory, files):
    folder = tmp_path_factory.mktemp("series")
    rng = np.random.default_rng(len(files))
    paths = []
    for index, (n, units, calendar, dtype, attrs, fill, raw) in enumerate(files):
        path = folder / f"f{index}.nc"
        write_times(path, raw, rng.normal(size=(n, 2)), units=units, calendar=calendar,
                    dtype=dtype, attrs=attrs, fill=fill)  # fmt: skip
        paths.append(path)
    series = xarray_series(paths)  # read once, compared twice
    assume(not series[1].all())
    spec = f"{folder}/f*.nc:/v"
    out = folder / "series.h5"
    run_here("stats", spec, output=str(out), over="lat")
    check_time_axis(out, paths, files[0][1], series)
    grouped = run_here("stats", spec, over="time", group_by="time.month")
    expected = xarray_months(paths, series)
    np.testing.assert_array_equal(grouped["month"], expected["month"].values)
    np.testing.assert_allclose(grouped["mean"], expected.values, rtol=1e-12)


def test_time_encoding_reads_the_attributes_as_xarray_does():
    packed = times.encoding_of(
        {"units": EPOCH, "scale_factor": np.float32(0.5), "_FillValue": np.int16(-1)}, "i2"
    )
    assert packed.float_dtype == "<f4" and packed.calendar == "standard"
    np.testing.assert_array_equal(packed.numbers(np.array([-1, 3], "i2")), [np.nan, 1.5])
    int32 = times.encoding_of(
        {"units": EPOCH, "scale_factor": np.float32(0.5), "add_offset": np.float32(1)}, "i4"
    )
    assert int32.float_dtype == "<f8"  # int32 needs float64, as xarray unpacks it
    assert times.encoding_of({"units": "days"}, "f8") is None
    with pytest.raises(ValueError, match="calendar 'martian'"):
        times.encoding_of({"units": EPOCH, "calendar": "martian"}, "f8")
    with pytest.raises(ValueError, match="cannot decode units"):
        times.encoding_of({"units": "days since yesterday"}, "f8")


def test_units_decoded_once_are_still_checked_in_another_calendar():
    # Units are parsed once per process for many files; the calendar is part of what was checked:
    # 1582-10-10 is a proleptic Gregorian date, not one of the mixed Julian/Gregorian calendar.
    units = "days since 1582-10-10"
    for _ in range(2):
        assert times.encoding_of({"units": units, "calendar": "proleptic_gregorian"}, "f8")
        with pytest.raises(ValueError, match="not present in the mixed Julian/Gregorian"):
            times.encoding_of({"units": units, "calendar": "standard"}, "f8")


def test_a_finished_time_grouping_resumes_as_finished(tmp_path):
    attrs = {"scale_factor": np.float32(0.5), "missing_value": np.int32(-1)}
    spec = write_times(tmp_path / "in.nc", [0, -1, 80], [[1.0], [2], [3]], dtype="i4", attrs=attrs)
    out = str(tmp_path / "o.h5")
    options = {"output": out, "over": "time", "group_by": "time.month"}
    first = run_here("stats", spec, **options)
    again = run_here("stats", spec, resume=True, **options)  # the job identity matches
    for key, value in first.items():
        np.testing.assert_array_equal(again[key], value, err_msg=key)


@pytest.mark.parametrize(
    "dtype,attrs",
    [
        ("i2", {"scale_factor": np.float32(0.1)}),  # unpacked in float32
        ("i4", {"scale_factor": np.float32(0.1), "add_offset": np.float32(0.3)}),  # float64
        ("i2", {"scale_factor": np.float32(0.1), "add_offset": np.float64(0.3)}),  # float64
        ("i2", {"scale_factor": np.float64(0.1)}),
        ("f4", {"scale_factor": np.float32(0.1), "missing_value": np.float32(-1)}),
        ("i4", {"missing_value": np.float64(7.0)}),
        ("i4", {"missing_value": np.float64(7.5)}),  # masks nothing: compared as a float
        ("i2", {"scale_factor": np.float32(0.1), "_FillValue": np.int16(3)}),
    ],
)
def test_time_numbers_are_xarrays_bit_for_bit(tmp_path, dtype, attrs):
    path = tmp_path / "in.nc"
    raw = np.array([-1, 3, 7, 1234, 30001])
    fill = attrs.pop("_FillValue", None)
    write_times(path, raw, np.zeros((5, 1)), dtype=dtype, attrs=attrs, fill=fill)
    expected = opened(path, decode_times=False)["time"].values.astype(np.float64)
    with h5py.File(path) as h5:
        stored = h5["time"]
        found = {k: stored.attrs[k] for k in times.TIME_ATTRS if k in stored.attrs}
        encoding = times.encoding_of(found, stored.dtype)
        got = encoding.numbers(stored[()])
    np.testing.assert_array_equal(got, expected)  # NaN where masked, the same roundings


@pytest.mark.parametrize("with_time", [True, False], ids=["time-coordinate", "no-coordinate"])
def test_a_time_label_beside_the_records_is_decoded_per_file(tmp_path, with_time):
    import xarray as xr

    paths = write_stamped_files(tmp_path / "d", with_time)
    spec = f"{tmp_path}/d/f*.nc:/v"
    got = run_here("stats", spec, over="time", group_by="stamp.month")
    combined = xr.combine_nested([opened(p) for p in paths], concat_dim="time")
    expected = combined["v"].groupby(combined["stamp"].dt.month).mean("time")
    np.testing.assert_array_equal(got["month"], expected["month"].values)  # 1, 2, 3
    np.testing.assert_allclose(got["mean"], expected.values, rtol=1e-12)
