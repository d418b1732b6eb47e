"""``stats`` against exact references (fractions, math.fsum, numpy.histogram), property-based.

Every test runs the numpy path and the compiled path (forced through FUSED_MIN_VALUES) and cuts
the data into random chunks merged in order: integers, counts, min/max and histograms must be
bitwise those of one pass; float moments within the bounds documented in hpcapp.kernels.stats.
Profiles (tests/conftest.py): ``ci`` by default, ``--hypothesis-profile=long`` for many more.
"""

from __future__ import annotations

import contextlib
import math
from fractions import Fraction

import h5py
import numpy as np
import pytest
from helpers import cli_here, read_results, write_dataset
from hypothesis import assume, example, given
from hypothesis import strategies as st

from hpcapp.errors import UsageError
from hpcapp.kernels import stats as stats_module
from hpcapp.kernels.api import InputInfo, from_function
from hpcapp.kernels.stats_params import edge_dtype

KERNEL = from_function(stats_module.stats, "stats")
INT_CODES = ["i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8"]
FLOAT_CODES = ["f2", "f4", "f8"]
EPS = 2.0**-53
TINY = 2.0**-1074


@contextlib.contextmanager
def path(name: str):
    """Force every chunk through the ``numpy`` or the ``fused`` (compiled) path."""
    saved = stats_module.FUSED_MIN_VALUES
    stats_module.FUSED_MIN_VALUES = 0 if name == "fused" else 1 << 62
    try:
        yield
    finally:
        stats_module.FUSED_MIN_VALUES = saved


def run(data: np.ndarray, cuts: list[int], params: dict, route: str) -> dict:
    """Return the finished results of ``data`` cut at row indices ``cuts``, merged in order."""
    checked = KERNEL.check_params(params, InputInfo(data.dtype.str, data.shape[1:]))
    with path(route):
        parts = [KERNEL.apply(piece, checked) for piece in np.split(data, cuts)]
    merged = parts[0]
    for part in parts[1:]:
        merged = KERNEL.merge(merged, part)
    return KERNEL.finish(merged, checked)


def cuts_for(draw, n_rows: int) -> list[int]:
    """Draw sorted cut points (possibly empty chunks) for ``n_rows`` rows."""
    return sorted(draw(st.lists(st.integers(0, n_rows), max_size=4)))


def assert_same(left: dict, right: dict, keys) -> None:
    """Assert bitwise-equal values and equal dtypes for ``keys`` of two result sets."""
    for key in keys:
        a, b = np.asarray(left[key]), np.asarray(right[key])
        assert a.dtype == b.dtype, key
        np.testing.assert_array_equal(a, b, err_msg=key)


def columns(data: np.ndarray) -> list[np.ndarray]:
    """Return the columns of a 1-D (one column) or 2-D array."""
    return [data] if data.ndim == 1 else [data[:, j] for j in range(data.shape[1])]


@st.composite
def integer_case(draw):
    """Draw an integer or bool array (either byte order), weighted to its dtype's extremes."""
    code = draw(st.sampled_from([*INT_CODES, "b1"]))
    dtype = np.dtype(code if code == "b1" else draw(st.sampled_from("<>")) + code)
    if code == "b1":
        elements = st.booleans()
    else:
        info = np.iinfo(dtype)
        edges = [info.min, info.max, 0, 1, info.max - 1, info.min + 1]
        elements = st.one_of(st.sampled_from(edges), st.integers(int(info.min), int(info.max)))
    n_rows = draw(st.integers(1, 30))
    n_cols = draw(st.sampled_from([None, 1, 3]))
    shape = (n_rows,) if n_cols is None else (n_rows, n_cols)
    values = draw(st.lists(elements, min_size=math.prod(shape), max_size=math.prod(shape)))
    return np.array(values, dtype=dtype).reshape(shape), cuts_for(draw, n_rows)


EXTREMES = [
    np.array([[2**63 - 1, -(2**63)], [-(2**63), 2**63 - 1], [12345, -(2**62) - 3]], np.int64),
    np.array([2**64 - 1, 2**64 - 1, 2**63, 70000], np.uint64),
    np.array([-(2**31), 2**31 - 1, 70000], ">i4"),
]


@given(case=integer_case(), route=st.sampled_from(["numpy", "fused"]))
@example(case=(EXTREMES[0], [1]), route="fused")
@example(case=(EXTREMES[1], [2, 2]), route="fused")
@example(case=(EXTREMES[2], []), route="fused")
def test_integer_statistics_are_exact(case, route):
    data, cuts = case
    got = run(data, cuts, {}, route)
    once = run(data, [], {}, "numpy")
    assert_same(got, once, ["count", "nan_count", "sum", "mean", "var", "std", "min", "max"])
    native = (
        data.astype(np.uint8)
        if data.dtype.kind == "b"
        else data.astype(data.dtype.newbyteorder("="))
    )
    assert got["min"].dtype == native.dtype and got["min"].dtype.isnative
    totals = []
    for j, column in enumerate(columns(native)):
        exact = [int(v) for v in column]
        n, total = len(exact), sum(exact)
        var = Fraction(n * sum(v * v for v in exact) - total * total, n * n)
        at = (j,) if data.ndim == 2 else ()
        assert got["count"][at] == n and got["nan_count"][at] == 0
        assert got["mean"][at] == float(Fraction(total, n))
        assert got["var"][at] == float(var)
        std = float(got["std"][at])
        below = (Fraction(std) + Fraction(math.nextafter(std, 0))) / 2 if std else 0
        above = (Fraction(std) + Fraction(math.nextafter(std, math.inf))) / 2
        assert below * below <= var <= above * above  # std is sqrt(var) correctly rounded
        assert got["min"][at] == min(exact) and got["max"][at] == max(exact)
        totals.append(total)
        if got["sum"].dtype == np.int64:
            assert int(got["sum"][at]) == total
        else:
            assert float(got["sum"][at]) == float(total)
    # int64 when every column's sum fits, else float64 marked as rounded
    fits = all(-(2**63) <= total < 2**63 for total in totals)
    assert got["sum"].dtype == (np.int64 if fits else np.float64)
    assert ("rounded" in getattr(got["sum"], "attrs", {})) == (not fits)


def reference_moments(column: np.ndarray) -> tuple[float, float, float]:
    """Return numpy's nan-aware mean and var semantics, computed exactly, and sum(|x|)."""
    kept = [float(v) for v in column if not math.isnan(v)]
    if not kept:
        return math.nan, math.nan, 0.0
    if any(math.isinf(v) for v in kept):
        signs = {math.copysign(1.0, v) for v in kept if math.isinf(v)}
        mean = math.nan if len(signs) == 2 else math.inf * signs.pop()
        return mean, math.nan, math.inf
    n = len(kept)
    mean = sum(map(Fraction, kept)) / n
    var = sum((Fraction(v) - mean) ** 2 for v in kept) / n
    return float(mean), float(var), math.fsum(abs(v) for v in kept)


@st.composite
def float_case(draw):
    """Draw a float array: NaN, +-inf, -0.0, subnormals, large offsets; either byte order."""
    code = draw(st.sampled_from(FLOAT_CODES))
    dtype = np.dtype(draw(st.sampled_from("<>")) + code)
    width = {"f2": 16, "f4": 32, "f8": 64}[code]
    bound = {"f2": 2.0**15, "f4": 2.0**100, "f8": 2.0**500}[code]
    finite = st.floats(-bound, bound, width=width, allow_subnormal=True)
    specials = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, 1e-310])
    offset = draw(st.sampled_from([0.0, 0.0, 1e9, -3e7])) if code == "f8" else 0.0
    if offset:
        elements = st.floats(-10, 10).map(lambda v: v + offset)
    else:
        elements = st.one_of(finite, specials) if draw(st.booleans()) else finite
    n_rows = draw(st.integers(1, 30))
    n_cols = draw(st.sampled_from([None, 1, 3]))
    shape = (n_rows,) if n_cols is None else (n_rows, n_cols)
    values = draw(st.lists(elements, min_size=math.prod(shape), max_size=math.prod(shape)))
    with np.errstate(over="ignore"):
        data = np.array(values, dtype=dtype).reshape(shape)
    return data, cuts_for(draw, n_rows)


@given(case=float_case(), route=st.sampled_from(["numpy", "fused"]))
def test_float_statistics_within_their_bound(case, route):
    data, cuts = case
    got = run(data, cuts, {}, route)
    once = run(data, [], {}, "numpy")
    assert_same(got, once, ["count", "nan_count", "min", "max"])
    for key in ("sum", "mean", "var", "std", "min", "max"):
        assert got[key].dtype == once[key].dtype and got[key].dtype.isnative, key
    native = data.astype(data.dtype.newbyteorder("="))
    for j, column in enumerate(columns(native)):
        at = (j,) if data.ndim == 2 else ()
        nan = np.isnan(column)
        n = int((~nan).sum())
        assert got["count"][at] == n and got["nan_count"][at] == nan.sum()
        mean, var, size = reference_moments(column)
        if n == 0:
            assert np.isnan(got["mean"][at]) and np.isnan(got["min"][at])
            continue
        assert got["min"][at] == np.nanmin(column) and got["max"][at] == np.nanmax(column)
        if math.isinf(size):
            assert np.isnan(got["var"][at])
            assert got["mean"][at] == mean or (math.isnan(mean) and np.isnan(got["mean"][at]))
            continue
        biggest = float(np.max(np.abs(column[~nan])))
        assert abs(got["mean"][at] - mean) <= 2 * n * EPS * size / n + TINY
        kept = column[~nan].astype(np.float64)
        spread = float(kept.max() - kept.min())
        # Rounding of the shifted sums, of the means' difference in merges, of subnormals;
        bound = 8 * n * n * EPS * var + 8 * n * EPS * biggest * spread + 8 * n * TINY
        bound += 4 * (n * EPS * biggest) ** 2  # the mean the numpy path centres on
        assert abs(got["var"][at] - var) <= bound, (got["var"][at], var, bound)


@st.composite
def histogram_case(draw):
    """Draw data around the bin edges of a drawn range, for any dtype."""
    code = draw(st.sampled_from([*INT_CODES, *FLOAT_CODES]))
    dtype = np.dtype(draw(st.sampled_from("<>")) + code)
    bins = draw(st.integers(1, 40))
    lo = draw(st.floats(-1e6, 1e6))
    hi = lo + draw(st.sampled_from([1e-6, 1e-3, 0.5, 1.0, 7.0, 1e3, 1e6]))
    assume(lo < hi)
    work = edge_dtype(dtype)
    with np.errstate(all="ignore"):
        edges = np.linspace(lo, hi, bins + 1).astype(work)
        near = np.concatenate([edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf)])
        pool = near.astype(dtype) if dtype.kind == "f" else np.round(near).astype(np.float64)
    if dtype.kind != "f":
        info = np.iinfo(dtype)
        pool = pool[(pool >= info.min) & (pool <= info.max)].astype(dtype)
        assume(pool.size)
    picks = draw(st.lists(st.integers(0, pool.size - 1), min_size=1, max_size=60))
    n_cols = draw(st.sampled_from([1, 2]))
    rows = len(picks) // n_cols
    assume(rows)
    data = pool[np.array(picks[: rows * n_cols])].reshape(rows, n_cols).astype(dtype)
    return data, cuts_for(draw, rows), bins, (lo, hi)


@given(case=histogram_case(), route=st.sampled_from(["numpy", "fused"]))
def test_histogram_equals_numpy_or_is_refused(case, route):
    data, cuts, bins, value_range = case
    params = {"bins": bins, "range": list(value_range)}
    native = data.astype(data.dtype.newbyteorder("="))
    try:
        got = run(data, cuts, params, route)
    except UsageError:
        # Refused: either the range does not fit the data's float type (documented), or numpy
        # itself refuses it for that dtype.
        work = edge_dtype(native.dtype)
        with np.errstate(all="ignore"):
            width = work.type(value_range[1]) - work.type(value_range[0])
            scale = work.type(bins) / width
            fits = np.isfinite(scale) and np.isfinite(width) and width >= np.finfo(work).tiny
            if fits:
                with pytest.raises(ValueError):
                    np.histogram_bin_edges(np.empty(0, native.dtype), bins, value_range)
        return
    once = run(data, [], params, "numpy")
    assert_same(got, once, ["hist", "hist_below", "hist_above", "hist_edges"])
    for j, column in enumerate(columns(native)):
        kept = column[~np.isnan(column)] if column.dtype.kind == "f" else column
        expected, edges = np.histogram(kept, bins, value_range)
        np.testing.assert_array_equal(got["hist"][j], expected)
        np.testing.assert_array_equal(got["hist_edges"], edges)
        assert got["hist_below"][j] + got["hist_above"][j] + expected.sum() == kept.size


@given(
    ranges=st.lists(st.tuples(st.integers(-50, 50), st.integers(1, 60)), min_size=3, max_size=3),
    route=st.sampled_from(["numpy", "fused"]),
    form=st.sampled_from(["toml", "cli"]),
)
def test_per_column_ranges_bin_each_column_like_numpy(ranges, route, form):
    pairs = [(lo, lo + width) for lo, width in ranges]
    data = np.random.default_rng(5).normal(0, 30, size=(50, 3))
    data[::7, 1] = np.nan
    value = [list(p) for p in pairs] if form == "toml" else [f"{lo}:{hi}" for lo, hi in pairs]
    got = run(data, [20], {"bins": 5, "range": value}, route)
    for j, value_range in enumerate(pairs):
        kept = data[~np.isnan(data[:, j]), j]
        expected, edges = np.histogram(kept, 5, value_range)
        np.testing.assert_array_equal(got["hist"][j], expected)
        edges_j = got["hist_edges"] if got["hist_edges"].ndim == 1 else got["hist_edges"][j]
        np.testing.assert_array_equal(edges_j, edges)
        assert got["hist_below"][j] == (kept < value_range[0]).sum()
        assert got["hist_above"][j] == (kept > value_range[1]).sum()


@pytest.mark.parametrize(
    ("params", "row_shape", "message"),
    [
        ({"range": [0, math.inf]}, (), "not finite"),
        ({"range": [1, 1]}, (), "LO < HI"),
        ({"range": [0, 1e-37]}, (), "too narrow"),
        ({"range": [0, 1e-40]}, (), "width"),
        ({"range": [0, 1], "bins": 2**24 + 1}, (), "bins must be"),
        ({"range": [0, 1], "bins": 2**24}, (200,), "too large"),
        ({"range": "0:1,2:3,4:5"}, (2,), "3 LO:HI pairs but the data has 2 columns"),
        ({"range": "0:x"}, (), "not a number"),
    ],
)
def test_bad_histogram_parameters_are_refused_before_any_work(params, row_shape, message):
    with pytest.raises(UsageError, match=message):
        KERNEL.check_params(params, InputInfo("<f4", row_shape))


def test_parameters_remembered_per_chunk_are_still_refused_when_they_only_look_alike():
    # stats remembers accepted (bins, range) for its next chunks: True == 1 and 1.0 == 1 in
    # Python, but bins=True and bins=1.0 stay refused after bins=1, every time.
    chunk = np.linspace(0.0, 1.0, 40, dtype=np.float32).reshape(20, 2)
    ok = stats_module.stats(chunk, bins=1, range=[0, 1])
    np.testing.assert_array_equal(ok["hist"], [[20], [20]])
    for bins in (True, 1.0, True):
        with pytest.raises(ValueError, match="bins must be"):
            stats_module.stats(chunk, bins=bins, range=[0, 1])
    with pytest.raises(ValueError, match="range bounds must be numbers"):
        stats_module.stats(chunk, bins=1, range=[0, True])
    # The same range as a list, a tuple or a string gives the same histogram.
    for written in ([0, 1], (0, 1), "0,1", [0.0, 1.0]):
        again = stats_module.stats(chunk, bins=1, range=written)
        np.testing.assert_array_equal(again["hist"], ok["hist"])


# End to end: the real CLI under mpiexec, on the inputs reported in issues 9 and 14.


def test_cli_int64_sum_beyond_int64_gives_the_exact_mean_and_std(tmp_path):
    spec = write_dataset(tmp_path / "f.h5", np.full(20, 1_700_000_000_000_000_000, np.int64), "t")
    done = cli_here(["run", "stats", spec, "-o", str(tmp_path / "o.h5"), "--chunk-rows", "3"])
    assert done.returncode == 0, done.stderr
    got = read_results(tmp_path / "o.h5")
    assert got["mean"] == 1.7e18 and got["std"] == 0.0 and got["var"] == 0.0
    assert got["sum"].dtype == np.float64 and got["sum"] == float(20 * 1_700_000_000_000_000_000)
    with h5py.File(tmp_path / "o.h5", "r") as h5:
        assert b"int64" in h5["t_sum"].attrs["rounded"]
        assert "rounded" not in h5["t_mean"].attrs


@pytest.mark.parametrize(
    ("range_arg", "message"),
    [("0,1e-37", "too narrow for 64 bins in float32"), ("0,inf", "is not finite")],
)
def test_cli_bad_ranges_exit_2_with_one_line_before_any_work(tmp_path, range_arg, message):
    data = np.random.default_rng(0).random(300_000).astype(np.float32)
    spec = write_dataset(tmp_path / "f.h5", data)
    out = tmp_path / "o.h5"
    done = cli_here(["run", "stats", spec, "-o", str(out), "-p", f"range={range_arg}"])
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


def test_cli_per_column_ranges_and_their_count(tmp_path):
    data = np.random.default_rng(1).normal(150, 120, size=(500, 2))
    spec = write_dataset(tmp_path / "f.h5", data)
    out = tmp_path / "o.h5"
    done = cli_here(["run", "stats", spec, "-o", str(out), "-p", "range=0:40,250:350"])
    assert done.returncode == 0, done.stderr
    got = read_results(out)
    assert got["hist_edges"].shape == (2, 65)
    for j, value_range in enumerate([(0, 40), (250, 350)]):
        expected, edges = np.histogram(data[:, j], 64, value_range)
        assert got["hist"][j].tolist() == expected.tolist()
        assert got["hist_edges"][j].tolist() == edges.tolist()
        assert got["hist_below"][j] == (data[:, j] < value_range[0]).sum()
        assert got["hist_above"][j] == (data[:, j] > value_range[1]).sum()
    done = cli_here(["run", "stats", spec, "-o", str(out), "-p", "range=0:1,2:3,4:5"])
    assert done.returncode == 2 and "3 LO:HI pairs but the data has 2 columns" in done.stderr


@pytest.mark.parametrize("dtype", [">f8", ">i4"])
def test_cli_big_endian_results_have_one_native_dtype_whatever_the_chunks(tmp_path, dtype):
    data = (np.random.default_rng(2).normal(size=(400, 3)) * 100).astype(dtype)
    spec = write_dataset(tmp_path / "f.h5", data)
    results = []
    for chunk_rows in ("400", "7"):
        out = tmp_path / f"o{chunk_rows}.h5"
        args = ["run", "stats", spec, "-o", str(out), "-p", "range=-200,200", "-p", "bins=8"]
        done = cli_here([*args, "--chunk-rows", chunk_rows])
        assert done.returncode == 0, done.stderr
        results.append(read_results(out))
    one, many = results
    assert one.keys() == many.keys()
    for key, value in one.items():
        assert value.dtype == many[key].dtype and value.dtype.isnative, key
    for key in ("count", "nan_count", "min", "max", "hist", "hist_edges"):
        assert one[key].tolist() == many[key].tolist(), key
    assert one["min"].tolist() == data.min(axis=0).tolist()
