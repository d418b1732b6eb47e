"""The compiled ``stats`` pass against numpy on the whole array, on the cases that break binning."""

import subprocess
import sys

import numpy as np
import pytest
from helpers import COMPILED_SHAPES, REPO, clean_env, run_here, write_dataset

from hpcapp.kernels import _fused, _fused_call, precompile
from hpcapp.kernels import stats as stats_module
from hpcapp.kernels.stats import finalize_stats, merge_stats, stats

# The real threshold: the autouse fixture below lowers it in this process, not in the CLI's.
FUSED_MIN_VALUES = stats_module.FUSED_MIN_VALUES
INT_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
ALL_DTYPES = [*INT_DTYPES, "float16", "float32", "float64"]


@pytest.fixture(autouse=True)
def fused_for_every_size(monkeypatch):
    """Send every chunk, however small, through the compiled pass."""
    monkeypatch.setattr(stats_module, "FUSED_MIN_VALUES", 0)


def chunked(data, chunk_rows, bins=None, value_range=None):
    """Return the merged partial of ``data`` cut into chunks of ``chunk_rows`` rows."""
    params = {} if value_range is None else {"bins": bins, "range": list(value_range)}
    partial = None
    # Infinities make the moments NaN, with numpy's warnings on the way: expected here.
    with np.errstate(invalid="ignore", over="ignore"):
        for start in range(0, len(data), chunk_rows):
            part = stats(data[start : start + chunk_rows], **params)
            partial = part if partial is None else merge_stats(partial, part)
    return partial


def numpy_hist(data, bins, value_range):
    """Return numpy.histogram of each column's non-NaN values (squeezed for 1-D data)."""
    columns = data.reshape(len(data), -1)
    hist = []
    for col in range(columns.shape[1]):
        column = columns[:, col]
        if column.dtype.kind == "f":
            column = column[~np.isnan(column)]
        hist.append(np.histogram(column, bins=bins, range=value_range)[0])
    return hist[0] if data.ndim == 1 else np.stack(hist)


def edge_values(dtype, bins, value_range):
    """Return every bin edge, lo and hi, and their neighbours one ulp down and up, in dtype."""
    edges = np.histogram_bin_edges(np.empty(0, dtype), bins, value_range)
    values = np.concatenate([edges, [value_range[0], value_range[1]]]).astype(dtype)
    with np.errstate(over="ignore"):
        around = [values, np.nextafter(values, -np.inf), np.nextafter(values, np.inf)]
    return np.concatenate(around).astype(dtype)


FLOAT_RANGES = [
    ("float64", (0.0, 1.0)),
    ("float64", (-4.0, 4.0)),
    ("float64", (0.1, 0.7)),
    ("float64", (-1e-3, 2e-3)),
    ("float64", (1e6, 1e6 + 3.0)),
    ("float64", (-1e300, 1e300)),
    ("float64", (1e-300, 3e-300)),
    ("float32", (0.0, 1.0)),
    ("float32", (0.1, 0.7)),
    ("float32", (0.100000002, 0.3)),  # float32(lo) < lo: numpy compares in float32
    ("float32", (-1e30, 1e30)),
    ("float32", (1e-30, 3e-30)),
    ("float32", (1e6, 1e6 + 1.0)),  # too narrow for float32: numpy's own path
    ("float16", (-2.0, 3.0)),
]


@pytest.mark.parametrize(("dtype", "value_range"), FLOAT_RANGES)
@pytest.mark.parametrize("bins", [1, 7, 64, 1000])
def test_values_on_and_beside_every_edge_bin_like_numpy(dtype, value_range, bins):
    try:
        values = edge_values(dtype, bins, value_range)
    except ValueError:
        # numpy refuses this many bins for the dtype's precision: so does stats, loudly.
        data = np.linspace(*value_range, 200_000).astype(dtype)
        for chunk_rows in (len(data), 10):
            with pytest.raises(ValueError, match="bins"):
                chunked(data, chunk_rows, bins, value_range)
        return
    rng = np.random.default_rng(bins)
    lo, hi = value_range
    inside = (lo + (hi - lo) * rng.random(3000)).astype(dtype)
    data = np.concatenate([values, inside, [np.nan, np.inf, -np.inf]]).astype(dtype)
    data = data[rng.permutation(len(data))]
    for chunk_rows in (len(data), 1000):
        got = chunked(data, chunk_rows, bins, value_range)
        np.testing.assert_array_equal(got["hist"], numpy_hist(data, bins, value_range))
    # Every edge value (and NaN, infinities) alone in a chunk of one row.
    alone = np.concatenate([values, [np.nan, np.inf, -np.inf]]).astype(dtype)
    got = chunked(alone, 1, bins, value_range)
    np.testing.assert_array_equal(got["hist"], numpy_hist(alone, bins, value_range))


@pytest.mark.parametrize("dtype", INT_DTYPES)
@pytest.mark.parametrize("value_range", [(-10.5, 20.3), (0.25, 199.75), (-1e12, 1e19)])
def test_integers_with_ranges_off_the_integers_bin_like_numpy(dtype, value_range):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(7)
    data = rng.integers(info.min, info.max, size=(2000, 3), dtype=dtype, endpoint=True)
    data[:100] = rng.integers(max(info.min, -12), min(info.max, 210), size=(100, 3))
    for bins in (7, 64):
        got = chunked(data, 333, bins, value_range)
        np.testing.assert_array_equal(got["hist"], numpy_hist(data, bins, value_range))


def test_int64_near_two_to_the_53_bins_like_numpy():
    # Integers that float64 cannot all tell apart, in a range narrow for their size.
    data = (2**53 + np.arange(-300, 300)).astype(np.int64)
    for value_range in [(2.0**53 - 100, 2.0**53 + 100), (0.0, 2.0**54)]:
        got = stats(data, bins=7, range=list(value_range))
        np.testing.assert_array_equal(got["hist"], numpy_hist(data, 7, value_range))


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("shape", [(1,), (1, 4), (255,), (1025, 1), (1030, 3), (300, 8), (9, 300)])
def test_partial_keys_dtypes_and_exact_values_match_numpy(dtype, shape, monkeypatch):
    rng = np.random.default_rng(11)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        data = rng.normal(0.5, 0.3, size=shape).astype(dt)
        data[rng.random(shape) < 0.1] = np.nan
    else:
        data = rng.integers(0, min(np.iinfo(dt).max, 200), size=shape).astype(dt)
    got = stats(data, bins=16, range=[0.0, 1.0])
    monkeypatch.setattr(stats_module, "FUSED_MIN_VALUES", data.size + 1)
    expected = stats(data, bins=16, range=[0.0, 1.0])
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert np.asarray(got[key]).dtype == value.dtype, key
        assert np.shape(got[key]) == np.shape(value), key
    exact = ["count", "nan_count", "min", "max", "hist", "hist_below", "hist_above"]
    if dt.kind != "f":
        exact += ["s1", "s2"]  # exact integers in their unique normal form: bitwise equal
    for key in exact:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    rtol = {"float16": 1e-3, "float32": 1e-6}.get(dtype, 1e-12)
    for key in ("sum", "mean", "m2") if dt.kind == "f" else ():
        np.testing.assert_allclose(got[key], expected[key], rtol=rtol, atol=1e-12, err_msg=key)


def test_all_nan_columns_and_a_single_row():
    data = np.full((1, 3), np.nan)
    data[0, 1] = 2.5
    got = stats(data, bins=4, range=[0, 4])
    assert got["count"].tolist() == [0, 1, 0] and got["nan_count"].tolist() == [1, 0, 1]
    assert got["min"].tolist() == [np.inf, 2.5, np.inf]
    assert got["max"].tolist() == [-np.inf, 2.5, -np.inf]
    assert got["sum"].tolist() == [0.0, 2.5, 0.0] and got["mean"].tolist() == [0.0, 2.5, 0.0]
    assert got["m2"].tolist() == [0.0, 0.0, 0.0]
    assert got["hist"].tolist() == [[0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    final = finalize_stats(got, bins=4, range=[0, 4])
    assert np.isnan(final["mean"][0]) and np.isnan(final["min"][2])


def test_infinities_are_counted_and_poison_only_the_moments():
    data = np.array([1.0, np.inf, 2.0, -np.inf, np.nan, 3.0])
    got = stats(data, bins=3, range=[0, 3])
    assert got["count"] == 5 and got["nan_count"] == 1
    assert got["min"] == -np.inf and got["max"] == np.inf
    assert np.isnan(got["sum"]) and np.isnan(got["m2"])
    np.testing.assert_array_equal(got["hist"], numpy_hist(data, 3, (0, 3)))


def test_unsigned_sums_are_exact_and_do_not_wrap():
    data = np.full((1000, 2), 2**63 + 5, dtype=np.uint64)
    got = finalize_stats(stats(data))
    assert got["sum"].dtype == np.float64 and "rounded" in got["sum"].attrs
    assert got["sum"].tolist() == [float(1000 * (2**63 + 5))] * 2
    assert got["mean"].tolist() == [float(2**63 + 5)] * 2 and got["var"].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("shift", [1e9, -3e7])
def test_variance_of_a_large_offset_stays_accurate(shift):
    rng = np.random.default_rng(2)
    noise = rng.normal(0.0, 1.0, size=(50000, 3))
    data = shift + noise
    got = finalize_stats(chunked(data, 7000))
    np.testing.assert_allclose(got["var"], np.var(data - shift, axis=0), rtol=1e-7)


def test_variance_with_an_outlier_first():
    # The shift is the first value: make it the worst one.
    rng = np.random.default_rng(3)
    data = rng.normal(0.0, 1.0, size=100000)
    data[0] = 1e6
    got = finalize_stats(stats(data))
    centred = data - data.mean()
    np.testing.assert_allclose(got["var"], np.mean(centred * centred), rtol=1e-9)


@pytest.mark.parametrize("params", [{"bins": 32, "range": [-3, 3]}, {}])
@pytest.mark.parametrize("shape", [(4099, 3), (13, 1001)])
def test_bits_do_not_depend_on_the_buffer_address(params, shape):
    data = np.random.default_rng(4).normal(size=shape)
    data[::17, 1] = np.nan
    first = stats(data, **params)
    raw = np.empty(data.nbytes + 64, dtype=np.uint8)
    for offset in (8, 24, 40):
        moved = raw[offset : offset + data.nbytes].view(np.float64).reshape(data.shape)
        moved[...] = data
        other = stats(moved, **params)
        for key in first:
            assert first[key].tobytes() == other[key].tobytes(), key


def test_histogram_plan_refuses_ranges_too_narrow_for_the_dtype():
    assert _fused_call.histogram_plan("<f8", 64, -4.0, 4.0) is not None
    assert _fused_call.histogram_plan("<f4", 64, -4.0, 4.0) is not None
    assert _fused_call.histogram_plan("<f4", 8, 1e6, 1e6 + 1.0) is None
    assert _fused_call.histogram_plan("<i8", 7, 2.0**53 - 100, 2.0**53 + 100) is None


def test_cli_help_and_kernels_do_not_import_numba():
    code = (
        "import sys, runpy; sys.argv = ['hpcapp', 'kernels'];\n"
        "try:\n    runpy.run_module('hpcapp', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "import hpcapp.kernels.stats\n"
        "assert 'numba' not in sys.modules, 'numba imported'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


# The same bits on 1-4 ranks and both schedules: tests/test_ranks_mpi.py.
@pytest.mark.parametrize(
    ("shape", "dtype", "chunk_rows", "histogram"),
    COMPILED_SHAPES,
)
def test_compiled_pass_in_a_job_matches_numpy(tmp_path, shape, dtype, chunk_rows, histogram):
    assert chunk_rows * int(np.prod(shape[1:])) >= FUSED_MIN_VALUES  # a job takes numba
    rng = np.random.default_rng(9)
    data = rng.normal(0.0, 1.5, size=shape).astype(dtype)
    data[rng.random(shape) < 0.01] = np.nan
    spec = write_dataset(tmp_path / "in.h5", data)
    params = {"range": [-4, 4], "bins": 50} if histogram else {}
    got = run_here("stats", spec, chunk_rows=chunk_rows, params=params)
    if histogram:
        np.testing.assert_array_equal(got["hist"], numpy_hist(data, 50, (-4, 4)))
    np.testing.assert_array_equal(got["count"], np.sum(~np.isnan(data), axis=0))
    np.testing.assert_allclose(got["mean"], np.nanmean(data, axis=0, dtype=np.float64))
    np.testing.assert_allclose(got["std"], np.nanstd(data, axis=0, dtype=np.float64))
    np.testing.assert_array_equal(got["min"], np.nanmin(data, axis=0))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_compiled_stats_of_a_job_match_numpy(tmp_path, dtype):
    # 2.8 M values in 20 chunks, with a large offset in some rows: the shifted M2 must agree.
    rng = np.random.default_rng(20261125)
    data = rng.normal(0.5, 0.3, size=(1_400_000, 2)).astype(dtype)
    data[rng.random(data.shape) < 0.01] = np.nan
    data[::9973, 1] = 1e9
    spec = write_dataset(tmp_path / "in.h5", data)
    params = {"bins": 32, "range": [-0.5, 1.5]}
    got = run_here("stats", spec, chunk_rows=70_000, params=params)
    wide = data.astype(np.float64)
    np.testing.assert_array_equal(got["count"], np.sum(~np.isnan(wide), axis=0))
    np.testing.assert_allclose(got["mean"], np.nanmean(wide, axis=0), rtol=1e-12)
    np.testing.assert_allclose(got["var"], np.nanvar(wide, axis=0), rtol=1e-9)
    np.testing.assert_array_equal(got["min"], np.nanmin(data, axis=0))
    np.testing.assert_array_equal(got["max"], np.nanmax(data, axis=0))
    for col in range(2):
        column = data[:, col]
        expected = np.histogram(column[~np.isnan(column)], 32, (-0.5, 1.5))[0]
        np.testing.assert_array_equal(got["hist"][col], expected)


def test_precompile_covers_every_dtype():
    assert precompile.precompile()


def test_values_on_edges_are_settled_by_the_exact_path():
    guide = _fused_call.histogram_plan("<f4", 64, 0.1, 0.7)[0]

    def slots(values):
        out = np.empty(len(values), np.intp)
        _fused._bin_index(values, out, np.zeros(len(values), np.intp), guide, 64)
        return out

    assert (slots(edge_values("float32", 64, (0.1, 0.7))) < 0).mean() > 0.5
    mids = np.linspace(0.1, 0.7, 1001, dtype=np.float32)[1:-1] + np.float32(0.3 / 64)
    assert (slots(mids) >= 0).mean() > 0.99


@pytest.mark.parametrize("bad_scale", [np.inf, np.nan, -1e30, 1e30])
def test_a_wrong_plan_cannot_count_outside_the_histogram(bad_scale):
    # The float32 range 0,1e-37 once made bins / width infinite and the loop wrote out of bounds.
    guide, lo, scale, step, edges32 = _fused_call.histogram_plan("<f4", 64, 0.0, 1.0)
    wrong = (*guide[:4], np.float32(bad_scale), *guide[5:])
    data = np.random.default_rng(6).random((300_000, 2)).astype(np.float32)
    with np.errstate(over="ignore"):
        got = _fused_call.chunk_partial(
            data, np.dtype(np.float64), 64, (wrong, lo, scale, step, edges32)
        )
    assert got["hist"].shape == (2, 64) and got["hist"].sum() == data.size


def awkward(rng, shape, dtype):
    """Return values with NaN, infinities, signed zeros and an all-NaN column (floats)."""
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    data = (rng.standard_normal(shape) * 10).astype(dtype)
    pick = rng.random(shape)
    data[pick < 0.1] = np.nan
    data[pick > 0.97] = np.inf
    data[(pick > 0.95) & (pick < 0.96)] = -np.inf
    data[(pick > 0.5) & (pick < 0.55)] = 0.0
    data[(pick > 0.55) & (pick < 0.6)] = -0.0
    if shape[1] > 1:
        data[:, 0] = np.nan
    return data


@pytest.mark.parametrize("dtype", ["float32", "float64", "int8", "int64", "uint16", "uint64"])
@pytest.mark.parametrize("rows", [1, 3, 4, 5, 8, 13, 130])
@pytest.mark.parametrize("cols", [1, 3, 8, 100, _fused_call.LANES // 2 + 1, 300, 1025])
@pytest.mark.parametrize("bins", [None, 16])
def test_lane_pass_gives_the_three_pass_loops_bits(dtype, rows, cols, bins):
    """With a histogram too: the lanes bin each group of segments, the three-pass loop too."""
    chunk = awkward(np.random.default_rng(rows * cols), (rows, cols), dtype)
    acc = np.dtype(np.float64 if chunk.dtype.kind == "f" else np.int64)
    plan = None if bins is None else _fused_call.histogram_plan(chunk.dtype.str, bins, -9.0, 7.5)
    got = _fused_call.chunk_partial(chunk, acc, bins or 1, plan)
    want = _fused_call.three_pass_partial(chunk, bins or 1, plan)
    assert got.keys() == want.keys()
    assert ("hist" in want) == (bins is not None)
    for key, value in want.items():
        assert got[key].dtype == value.dtype, key
        assert got[key].tobytes() == value.tobytes(), key
