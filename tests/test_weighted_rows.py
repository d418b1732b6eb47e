"""The per-record weighted loop (``--over lat,lon --weights``): packed chunks decoded in it.

References: the same loop on the values hpcapp's numpy decoder gives (the same bits: the decode
inside is exact), numpy's decode-then-reduce (``column_partial``, to rounding: the order of the
sums differs) and xarray's ``weighted`` end to end.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from helpers import as_bytes, read_results, run_here
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from ncdata import write_grid
from test_cf_fused import decoded, packed_cases, stored_values

from hpcapp.errors import UsageError
from hpcapp.io.coding.variables import CFDecoding, decoding_of
from hpcapp.kernels import _loops
from hpcapp.kernels.hookspec import InputInfo
from hpcapp.kernels.nd import stats
from hpcapp.kernels.packed import Packed
from hpcapp.kernels.weighted import bind_weights, column_partial
from hpcapp.kernels.weighted_rows import row_weights, rows_partial

KEYS = ("count", "sum_of_weights", "sum", "m2")
# Cells per row around the loop's groups of 64 values: none whole, one, one and a tail, many.
CELLS = [1, 5, 63, 64, 65, 130, 1000]


def weights_of(kind: str, shape: tuple[int, int], seed: int) -> np.ndarray:
    """Return weights: positive, some zero, some NaN, or all zero."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.0, 3.0, shape)
    pick = rng.random(shape)
    if kind == "zeros":
        w[pick < 0.3] = 0.0
    elif kind == "nan":
        w[pick < 0.05] = np.nan
    elif kind == "all zero":
        w[:] = 0.0
    return w


def assert_near(got: dict, want: dict, values: np.ndarray, weights: np.ndarray) -> None:
    """Counts equal, NaN where numpy's is, the sums within rounding of numpy's."""
    np.testing.assert_array_equal(got["count"], want["count"])
    x = np.where(np.isnan(values), 0.0, values)
    w = np.abs(np.where(np.isnan(values), 0.0, weights))
    with np.errstate(invalid="ignore"):
        mean = np.abs(np.where(want["sum_of_weights"] > 0, want["sum"] / want["sum_of_weights"], 0))
        scales = {
            "sum_of_weights": np.sum(w, axis=1),
            "sum": np.sum(w * np.abs(x), axis=1),
            "m2": np.sum(w * (np.abs(x) + mean[:, None]) ** 2, axis=1),
        }
    for key, scale in scales.items():
        a, b = np.asarray(got[key]), np.asarray(want[key])
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=key)
        ok = ~np.isnan(b)
        assert np.all(np.abs(a[ok] - b[ok]) <= 1e-13 * scale[ok]), key


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    case=packed_cases(),
    rows=st.integers(1, 5),
    cells=st.sampled_from(CELLS),
    per_row=st.booleans(),
    kind=st.sampled_from(["positive", "zeros", "nan", "all zero"]),
)
def test_the_packed_loop_is_decode_then_reduce(case, rows, cells, per_row, kind):
    kinds, attrs, mask_valid_range, _, seed, _ = case
    try:
        decoding = decoding_of(attrs, kinds, mask_valid_range=mask_valid_range)
    except UsageError:
        assume(False)  # a valid range that _Unsigned makes empty: refused before any work
    unpack = decoding.linear_unpack
    assume(unpack is not None)
    stored = stored_values(kinds, attrs, (rows, cells), seed)
    meant = stored.view(np.dtype(decoding.stored_dtype))
    values = decoded(decoding, stored)
    w = weights_of(kind, (rows if per_row else 1, cells), seed)
    with np.errstate(invalid="ignore", over="ignore"):
        got = rows_partial(Packed(meant, unpack), w, 1)
        # The loop on the values decoded first: the same bits.
        assert as_bytes(got) == as_bytes(rows_partial(values, w, 1)), attrs
        want = column_partial(values, np.broadcast_to(w, values.shape), axis=1)
    assert_near(got, want, values.astype(np.float64), np.broadcast_to(w, values.shape))
    # Each row's bits are its own, whatever rows share its chunk.
    for i in range(rows):
        alone = rows_partial(Packed(meant[i : i + 1], unpack), w[i % len(w)][None], 1)
        for key in KEYS:
            assert alone[key].tobytes() == got[key][i : i + 1].tobytes(), (key, i)


@pytest.mark.parametrize("cells", CELLS)
def test_float_and_integer_chunks_reduce_as_float64(cells):
    rng = np.random.default_rng(cells)
    values = rng.normal(280.0, 20.0, (4, cells)).astype(np.float32)
    values[rng.random(values.shape) < 0.1] = np.nan
    w = weights_of("zeros", (1, cells), cells)
    got = rows_partial(values, w, 1)
    assert as_bytes(got) == as_bytes(rows_partial(values.astype(np.float64), w, 1))
    assert_near(got, column_partial(values, np.broadcast_to(w, values.shape), axis=1), values, w)
    ints = rng.integers(-500, 500, (3, cells)).astype(">i4")  # not native, not float
    assert as_bytes(rows_partial(ints, w, 1)) == as_bytes(rows_partial(ints.astype("f8"), w, 1))


def test_rows_take_their_weights_along_kept_axes():
    """--over lon on (time, lat, lon): row (t, j) takes the weights of lat j."""
    rng = np.random.default_rng(5)
    chunk = rng.normal(size=(3, 4, 70))
    weights = rng.uniform(0, 1, (1, 4, 70))
    w = row_weights(weights, chunk.shape, 2)
    assert w.shape == (4, 70)
    got = rows_partial(chunk, w, 2)
    want = column_partial(
        chunk.reshape(12, 70), np.broadcast_to(weights, chunk.shape).reshape(12, 70), axis=1
    )
    assert_near(
        got, want, chunk.reshape(12, 70), np.broadcast_to(weights, chunk.shape).reshape(12, 70)
    )
    with pytest.raises(ValueError, match="do not fit"):
        rows_partial(chunk, w[:, :60], 2)
    empty = rows_partial(chunk[:0], w, 2)  # no rows, and rows of no cells: nothing to sum
    assert all(empty[key].shape == (0,) for key in KEYS)
    none = rows_partial(np.zeros((2, 0)), np.ones((1, 0)), 1)
    assert list(none["count"]) == [0, 0] and list(none["sum_of_weights"]) == [0, 0]


@pytest.fixture
def counted_loops(monkeypatch):
    """Count the weighted loops called, by (stored dtype, decoded dtype or None)."""
    calls = []
    real = _loops.weighted_loop

    def counted(stored, values=None):
        calls.append((stored, values))
        return real(stored, values)

    monkeypatch.setattr(_loops, "weighted_loop", counted)
    return calls


@pytest.mark.parametrize("over", ["lat,lon", "lon"])
def test_a_packed_job_decodes_in_the_loop_and_equals_xarray(
    tmp_path, monkeypatch, counted_loops, over
):
    path = tmp_path / "in.nc"
    spec = write_grid(path, shape=(9, 12, 70), measures=True, missing=0.1, packed=True)
    weights = "area"
    with xr.open_dataset(path) as ds:
        w = ds.areacella
        if over == "lon":  # area weights need lat: weights of a file, one row per lat
            w = w * np.random.default_rng(2).uniform(0.5, 2, w.shape)
            xr.Dataset({"w": w}).to_netcdf(tmp_path / "w.nc")
            weights = f"{tmp_path / 'w.nc'}:/w"
        found = ds.tas.weighted(w)
        dims = tuple(over.split(","))
        expected = {op: getattr(found, op)(dims).values for op in ("mean", "var", "sum")}
    options = {"over": over, "weights": weights, "chunk_rows": 4}
    run_here("stats", spec, output=str(tmp_path / "a.nc"), **options)
    got = read_results(tmp_path / "a.nc")
    assert (np.dtype("i2"), np.dtype("f8")) in counted_loops  # the chunks came stored
    for op, want in expected.items():
        np.testing.assert_allclose(got[op], want, rtol=1e-12, atol=0, err_msg=op)
    # Decoded first (no linear unpack): the float loop, the same bits.
    monkeypatch.setattr(CFDecoding, "linear_unpack", property(lambda self: None))
    del counted_loops[:]
    run_here("stats", spec, output=str(tmp_path / "b.nc"), **options)
    assert counted_loops and all(values is None for _, values in counted_loops)
    assert as_bytes(read_results(tmp_path / "b.nc")) == as_bytes(got)


def test_the_warm_up_loads_the_loop(counted_loops):
    """The per-record kernel's prepare runs the loop, so loading it counts as start-up."""
    unpack = decoding_of({"scale_factor": np.float32(0.5)}, np.dtype("i2")).linear_unpack
    params = {"over": (1, 2)}
    kernel = bind_weights(stats, np.ones((1, 3, 5)), params)
    assert kernel.packed and kernel.prepare is not None
    kernel.prepare(params, InputInfo(np.dtype("f4"), (3, 5), chunk_rows=10, unpack=unpack))
    assert counted_loops == [(np.dtype("i2"), np.dtype("f4"))]
