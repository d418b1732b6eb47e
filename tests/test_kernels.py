"""Each kernel's chunk + combine + finalize equals numpy on the whole array."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, sample_data

from hpcapp.errors import KernelError, UsageError
from hpcapp.kernels.api import InputInfo, as_partial, from_function, kernel
from hpcapp.kernels.registry import load_kernel
from hpcapp.parallel.reduce import FragmentTree
from hpcapp.partition import chunk_bounds, count_chunks


def run_serial(kern, data, chunk_rows, params=None, order=None):
    """Run a kernel chunk by chunk without MPI, adding chunks in ``order``."""
    params = kern.check_params(params or {})
    n_chunks = count_chunks(len(data), chunk_rows)
    tree = FragmentTree(kern.merge)
    for index in order or range(n_chunks):
        start, stop = chunk_bounds(index, len(data), chunk_rows)
        tree.add((0, index), as_partial(kern.apply(data[start:stop], params), kern.name))
    return kern.finish(tree.fold(), params)


def reference_stats(data, bins=None, value_range=None):
    columns = data.reshape(len(data), -1).astype(np.float64)
    expected = {
        "count": (~np.isnan(columns)).sum(axis=0),
        "nan_count": np.isnan(columns).sum(axis=0),
        "sum": np.nansum(columns, axis=0),
        "mean": np.nanmean(columns, axis=0),
        "var": np.nanvar(columns, axis=0),
        "std": np.nanstd(columns, axis=0),
        "min": np.nanmin(columns, axis=0),
        "max": np.nanmax(columns, axis=0),
    }
    if value_range is not None:
        expected["hist"] = np.stack(
            [
                np.histogram(
                    data.reshape(len(data), -1)[:, c][~np.isnan(columns[:, c])],
                    bins=bins,
                    range=value_range,
                )[0]
                for c in range(columns.shape[1])
            ]
        )
    if data.ndim == 1:
        expected = {k: v[0] for k, v in expected.items()}
    return expected


@pytest.mark.parametrize("dtype", ["float64", "float32", "int32", "int64", "uint16", "int8"])
@pytest.mark.parametrize("cols", [None, 3])
@pytest.mark.parametrize("chunk_rows", [1, 7, 100, 5000])
def test_stats_matches_numpy(dtype, cols, chunk_rows):
    nan = 0.05 if dtype.startswith("float") else 0.0
    # One-row chunks: 200 of them (each a kernel call and a merge) tell as much as 1000.
    data = sample_data(200 if chunk_rows == 1 else 1000, cols, dtype, nan=nan)
    params = {"bins": 16, "range": [0.0, 1.0] if nan else [0, 150]}
    got = run_serial(load_kernel("stats"), data, chunk_rows, params)
    expected = reference_stats(data, 16, tuple(params["range"]))
    for key in ("count", "nan_count", "min", "max", "hist"):
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    for key in ("sum", "mean", "var", "std"):
        np.testing.assert_allclose(got[key], expected[key], rtol=rtol, err_msg=key)
    edges = np.histogram_bin_edges(data[:0], 16, tuple(params["range"]))
    np.testing.assert_array_equal(got["hist_edges"], edges)
    assert got["min"].dtype == data.dtype


def test_stats_integer_sum_is_exact():
    data = np.full(1000, 2**40 + 1, dtype=np.int64)
    got = run_serial(load_kernel("stats"), data, 33)
    assert got["sum"] == data.sum() and got["sum"].dtype == np.int64


def test_stats_variance_survives_a_large_offset():
    rng = np.random.default_rng(5)
    data = 1e9 + rng.normal(0.0, 1.0, size=(20000, 2))
    got = run_serial(load_kernel("stats"), data, 999)
    np.testing.assert_allclose(got["var"], np.var(data, axis=0), rtol=1e-7)
    # Summing squares would lose every digit here; check we are far better than that.
    naive = (data**2).mean(axis=0) - data.mean(axis=0) ** 2
    assert np.all(np.abs(naive - np.var(data, axis=0)) > 1e-3)


def test_stats_all_nan_column_gives_nan_results():
    data = np.ones((50, 2))
    data[:, 1] = np.nan
    got = run_serial(load_kernel("stats"), data, 8)
    assert got["count"].tolist() == [50, 0] and got["nan_count"].tolist() == [0, 50]
    assert got["mean"][0] == 1.0 and np.isnan(got["mean"][1])
    assert np.isnan(got["min"][1]) and np.isnan(got["var"][1])


def test_results_do_not_depend_on_the_order_chunks_finish():
    data = sample_data(997, 4, "float64", nan=0.1)
    kern = load_kernel("stats")
    params = {"range": [0, 1]}
    first = run_serial(kern, data, 10, params)
    rng = np.random.default_rng(3)
    for _ in range(3):
        order = list(rng.permutation(count_chunks(len(data), 10)))
        other = run_serial(kern, data, 10, params, order=order)
        for key in first:
            assert first[key].tobytes() == other[key].tobytes(), key


def test_montecarlo_estimates_pi():
    kern = load_kernel("montecarlo")
    params = kern.check_params({"samples": 200_000, "seed": 4})
    tree = FragmentTree(kern.merge)
    for index in range(4):
        rng = np.random.default_rng(np.random.SeedSequence(4, spawn_key=(index,)))
        tree.add((0, index), as_partial(kern.apply(rng, params, n_rows=50_000), kern.name))
    got = kern.finish(tree.fold(), params)
    assert got["samples"] == 200_000
    assert abs(got["estimate"] - np.pi) < 5 * got["stderr"]
    assert 0 < got["stderr"] < 0.01


def test_user_kernel_module_and_file_give_the_same_kernel():
    data = sample_data(500, 2, "float64")
    by_module = load_kernel("hpcapp.examples.exceedances:exceedances")
    path = REPO / "hpcapp" / "examples" / "exceedances.py"
    by_file = load_kernel(f"{path}:exceedances")
    got = run_serial(by_module, data, 37, {"threshold": 0.7})
    again = run_serial(by_file, data, 37, {"threshold": 0.7})
    above = data > 0.7
    np.testing.assert_array_equal(got["n_above"], above.sum(axis=0))
    np.testing.assert_allclose(got["excess"], np.where(above, data - 0.7, 0).sum(axis=0))
    np.testing.assert_array_equal(got["peak"], data.max(axis=0))
    for key in got:
        assert got[key].tobytes() == again[key].tobytes()


def test_kernel_with_a_custom_combine():
    @kernel(combine=lambda a, b: {"n": a["n"] + b["n"], "first": a["first"]})
    def longest(chunk):
        return {"n": np.int64(len(chunk)), "first": chunk[:1].copy()}

    kern = from_function(longest, "longest")
    got = run_serial(kern, np.arange(10.0), 3)
    assert got["n"] == 10 and got["first"].tolist() == [0.0]


def test_params_are_checked_with_a_suggestion():
    kern = load_kernel("stats")
    with pytest.raises(UsageError, match="did you mean 'bins'"):
        kern.check_params({"bin": 3})
    with pytest.raises(UsageError, match="needs LO < HI"):
        kern.check_params({"range": [1, 0]})
    with pytest.raises(UsageError, match="bins must be an integer from 1"):
        kern.check_params({"bins": 0})

    @kernel()
    def needs(chunk, factor):
        return {"s": chunk.sum() * factor}

    with pytest.raises(UsageError, match="needs parameter"):
        from_function(needs, "needs").check_params({})


def test_malformed_partials_are_kernel_errors():
    with pytest.raises(KernelError, match="dict"):
        as_partial([1, 2], "k")
    with pytest.raises(KernelError, match="dtype"):
        as_partial({"s": np.array(["a"])}, "k")
    kern = from_function(lambda chunk: {"s": chunk.sum(axis=0)}, "k")
    tree = FragmentTree(kern.merge)
    tree.add((0, 0), {"s": np.zeros(2)})
    with pytest.raises(KernelError, match="chunks 0 and 1"):
        tree.add((0, 1), {"s": np.zeros(3)})


@pytest.mark.parametrize(
    "spec,message",
    [
        ("nosuch", "unknown kernel"),
        ("nosuchmodule_xyz:f", "cannot import"),
        ("hpcapp.examples.exceedances:nosuch", "has no function"),
        ("missing/file.py:f", "does not exist"),
    ],
)
def test_bad_kernel_specs_are_usage_errors(spec, message):
    with pytest.raises(UsageError, match=message):
        load_kernel(spec)


def test_kernels_never_import_mpi():
    for name in ("hpcapp.kernels.api", "hpcapp.kernels.stats", "hpcapp.kernels.montecarlo"):
        text = Path(importlib.util.find_spec(name).origin).read_text(encoding="utf-8")
        assert "mpi4py" not in text, name


def test_validate_gets_the_params_and_a_description_of_the_input():
    seen = []

    def wants(params, data):
        seen.append((dict(params), data))

    @kernel(validate=wants)
    def scaled(chunk, scale=1, shift=0):
        return {"s": chunk.sum() * scale + shift}

    kern = from_function(scaled, "scaled")
    kern.check_params({"scale": 2})
    kern.check_params({"scale": 2}, InputInfo(dtype="<f4", row_shape=(3,)))
    assert seen == [
        ({"scale": 2, "shift": 0}, InputInfo(given=frozenset({"scale"}))),
        ({"scale": 2, "shift": 0}, InputInfo("<f4", (3,), frozenset({"scale"}))),
    ]
