"""quantile and median against numpy.nanquantile (and xarray) on packed netCDF with gaps."""

import warnings

import numpy as np
import pytest
from helpers import (
    cli_here,
    read_results,
    refused_here,
    root_attrs,
    run_cli,
    run_here,
    write_dataset,
)
from mpi4py import MPI
from ncdata import write_netcdf

from hpcapp.kernels.quantile import METHODS, OrderStatistics, cell_quantiles, whole_quantiles
from hpcapp.parallel.select import from_keys, order_keys, select

xr = pytest.importorskip("xarray")
Q = [0.1, 0.5, 0.9]


def packed(tmp_path, shape=(41, 6, 7), seed=3):
    """Write an int16 field packed around 280 K, a fifth of it missing and one cell all missing."""
    rng = np.random.default_rng(seed)
    stored = rng.integers(-3000, 3000, size=shape).astype(np.int16)
    stored[rng.random(shape) < 0.2] = -32767
    stored[:, 2, 3] = -32767
    attrs = {"scale_factor": 0.01, "add_offset": 280.0, "units": "K"}
    path = tmp_path / "in.nc"
    spec = write_netcdf(path, stored, attrs=attrs, fill_value=-32767)
    with xr.open_dataset(path) as ds:
        decoded = ds["tas"].astype("float64").load()
    return spec, decoded


def nanquantile(values, q, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the all-missing cell
        return np.nanquantile(values, q, **options)


def same_bits(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("method", ["linear", "nearest", "hazen", "inverted_cdf"])
def test_per_cell_equals_numpy_and_xarray(tmp_path, method):
    spec, decoded = packed(tmp_path)
    out = tmp_path / "out.nc"
    params = {"q": Q, "method": method}
    run_here("quantile", spec, over="time", params=params, output=str(out))
    same_bits(read_results(out)["quantile"], nanquantile(decoded.values, Q, axis=0, method=method))
    with xr.open_dataset(out) as ds:
        written = ds["tas_quantile"]
        assert written.dims == ("quantile", "lat", "lon")
        assert written["quantile"].values.tolist() == Q
        assert written.attrs["units"] == "K" and "cell_methods" not in written.attrs
        np.testing.assert_array_equal(written["lat"], decoded["lat"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the all-missing cell
            reference = decoded.quantile(Q, dim="time", method=method)
        same_bits(written.values, reference.values)
    attrs = root_attrs(out)
    assert attrs["series_batches"] == 1
    assert attrs["series_bytes_read"] == attrs["series_input_bytes"] == 41 * 6 * 7 * 2


def test_median_and_scalar_q(tmp_path):
    spec, decoded = packed(tmp_path)
    median = run_here("median", spec, output=str(tmp_path / "median.nc"))
    same_bits(median["median"], nanquantile(decoded.values, 0.5, axis=0))
    with xr.open_dataset(tmp_path / "median.nc") as ds:
        assert ds["tas_median"].dims == ("lat", "lon")
        assert ds["tas_median"].attrs["cell_methods"] == "time: median"
    out = tmp_path / "out.nc"
    one = run_here("quantile", spec, params={"q": 0.25}, output=str(out))
    same_bits(one["quantile"], nanquantile(decoded.values, 0.25, axis=0))
    with xr.open_dataset(out) as ds:
        assert ds["tas_quantile"].dims == ("lat", "lon")


def test_batches_give_the_same_bits(tmp_path):
    spec, decoded = packed(tmp_path)
    whole = run_here("quantile", spec, params={"q": Q})
    out = tmp_path / "out.nc"
    # 5 KiB beyond the base: two slabs of lat per batch (of int16: packed tiles), 5 records a chunk.
    small = {"memory_per_rank": "200.005MiB", "chunk_rows": 5}
    run_here("quantile", spec, params={"q": Q}, output=str(out), **small)
    assert root_attrs(out)["series_batches"] > 1
    same_bits(read_results(out)["quantile"], whole["quantile"])
    same_bits(whole["quantile"], nanquantile(decoded.values, Q, axis=0))


def test_selection_reads_its_box(tmp_path):
    spec, decoded = packed(tmp_path)
    got = run_here("quantile", spec, params={"q": Q}, isel={"lat": "1:4", "time": "3:30"})
    box = decoded.values[3:30, 1:4]
    same_bits(got["quantile"], nanquantile(box, Q, axis=0))


@pytest.mark.parametrize("method", ["linear", "lower", "midpoint", "median_unbiased"])
def test_whole_field_equals_numpy(tmp_path, method):
    spec, decoded = packed(tmp_path)
    params = {"q": [0.0, *Q, 0.999, 1.0], "method": method}
    got = run_here("quantile", spec, over="time,lat,lon", params=params, chunk_rows=7)
    same_bits(got["quantile"], nanquantile(decoded.values, params["q"], method=method))


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"over": "lat"}, "nothing in between"),
        ({"over": "time,lat"}, "nothing in between"),
        ({"params": {"q": [0.5, 1.5]}}, "[0, 1]"),
        ({"params": {"q": 0.5, "method": "cubic"}}, "numpy's"),
        ({"params": {"q": 0.5}, "group_by": "time.month"}, "--group-by"),
        ({"params": {"q": 0.5}, "memory_per_rank": "200.001MiB"}, "one slab"),
        ({"params": {"q": 0.5}, "memory_per_rank": "100MiB"}, "nothing for the series"),
    ],
)
def test_refused(tmp_path, options, fragment):
    spec, _ = packed(tmp_path)
    options = {**options, "output": str(tmp_path / "out.nc")}
    options.setdefault("params", {"q": 0.5})
    refused_here("quantile", spec, fragment, **options)
    assert not (tmp_path / "out.nc").exists()
    assert not (tmp_path / "out.nc.checkpoint").exists()


def test_cell_quantiles_every_method():
    rng = np.random.default_rng(0)
    values = np.round(rng.normal(size=(37, 23)), 2) + 0.0  # no -0.0: its sign is numpy's whim
    values[rng.random(values.shape) < 0.3] = np.nan
    values[:, 3] = np.nan
    for method in METHODS:
        for q in ([0.0, 0.1, 0.5, 0.9, 1.0], 0.37):
            same_bits(
                cell_quantiles(values, q, method), nanquantile(values, q, axis=0, method=method)
            )


@pytest.mark.parametrize("n", [0, 1, 2, 3, 10, 101])
def test_whole_quantiles_every_method(n):
    rng = np.random.default_rng(n)
    values = np.round(rng.normal(size=n), 1) + 0.0 if n else np.full(5, np.nan)  # all missing
    ordered = np.sort(values)
    field = OrderStatistics(n, lambda ranks: ordered[ranks])
    for method in METHODS:
        for q in ([0.0, 0.1, 0.25, 0.5, 0.9, 0.999, 1.0], 0.3):
            same_bits(whole_quantiles(field, q, method), nanquantile(values, q, method=method))


def test_keys_keep_the_order_and_select_finds_ranks():
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.normal(size=500) * 1e3, [0.0, -1e300, 1e300, 5e-324, -5e-324]])
    keys = order_keys(values)
    same_bits(from_keys(keys), values)
    assert np.array_equal(np.argsort(keys, kind="stable"), np.argsort(values, kind="stable"))
    ranks = np.array([0, 1, 250, 503, 504])
    same_bits(select(MPI.COMM_SELF, keys, ranks), np.sort(values)[ranks])


def test_check_and_kernels_say_what_quantile_is(tmp_path):
    spec, _ = packed(tmp_path)
    done = cli_here(["check", "quantile", spec, "-p", "q=0.5"])
    assert done.returncode == 0 and "bitwise identical over" in done.stdout, done.stderr
    listed = cli_here(["kernels"]).stdout
    assert "median" in listed and "-p q=...   (required)" in listed


def test_the_command_line_at_two_ranks(tmp_path):
    spec, decoded = packed(tmp_path)
    out = tmp_path / "out.nc"
    args = ["run", "quantile", spec, "--over", "time", "-p", "q=0.1,0.5,0.9", "-o", str(out)]
    args += ["--memory-per-rank", "200.0035MiB", "--chunk-rows", "4"]  # 3 slabs a batch
    done = run_cli(args, n_ranks=2)
    assert done.returncode == 0, done.stderr
    assert "series by transpose: 2 batch(es) of cells" in done.stdout
    same_bits(read_results(out)["quantile"], nanquantile(decoded.values, Q, axis=0))
    # --resume (which hpcapp slurm adds): a finished output is kept; else a fresh start.
    again = run_cli([*args, "--resume"], n_ranks=2)
    assert again.returncode == 0 and "already holds the result" in again.stdout, again.stderr
    out.unlink()
    fresh = run_cli([*args, "--resume"], n_ranks=2)
    assert fresh.returncode == 0, fresh.stderr
    same_bits(read_results(out)["quantile"], nanquantile(decoded.values, Q, axis=0))


def test_batches_and_tiles_cover_everything_once():
    from hpcapp.partition import batches, tiles

    assert batches(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert batches(2, 5) == [(0, 2)]
    assert tiles(7, 3) == [(3, 0), (2, 3), (2, 5)]
    assert tiles(2, 3) == [(1, 0), (1, 1), (0, 2)]  # more ranks than cells: empty tiles


def test_series_is_a_checked_declaration():
    import hpcapp

    def whole(series, q=0.5):
        return {"q": cell_quantiles(series, q)}

    assert hpcapp.kernel(series=True)(whole).series
    with pytest.raises(TypeError, match="series must be True or False"):
        hpcapp.kernel(series="yes")(whole)
    with pytest.raises(ValueError, match="neither generates"):
        hpcapp.kernel(series=True, per_row="q")(whole)


def test_plain_float32_rows_and_a_single_series(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 9)).astype(np.float32)
    x[rng.random(x.shape) < 0.3] = np.nan
    spec = write_dataset(tmp_path / "in.h5", x)
    one = write_dataset(tmp_path / "in.h5", x[:, 0], name="y")
    wide = x.astype(np.float64)
    small = {"memory_per_rank": "200.005MiB", "chunk_rows": 7}  # a few columns per batch
    got = run_here("quantile", spec, params={"q": [0.3, 0.7]}, **small)
    same_bits(got["quantile"], nanquantile(wide, [0.3, 0.7], axis=0))
    got = run_here("quantile", one, params={"q": [0.3, 0.7]})
    same_bits(got["quantile"], nanquantile(wide[:, 0], [0.3, 0.7]))
    got = run_here("median", spec, over="dim_0,dim_1")
    same_bits(got["median"], nanquantile(wide, 0.5))
