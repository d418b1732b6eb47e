"""``-p stats=NAMES``: only those results, each bitwise the full job's; fewer partial parts."""

import numpy as np
import pytest
from helpers import cli_here, read_results, refused_here, run_here, write_dataset
from test_resample import write_daily

from hpcapp.kernels import nd
from hpcapp.kernels.grouped import Labelled, group_kernel
from hpcapp.kernels.stats_select import RESULTS

PARAMS = {"bins": 64, "range": None, "over": (0,)}


def assert_subset_of(got, full, asked):
    """``got`` holds the asked results (and no other statistic), each with ``full``'s bits."""
    stats = {key for key in got if key in RESULTS}
    assert stats == set(asked), (sorted(got), asked)
    for key in got:
        a, b = np.asarray(got[key]), np.asarray(full[key])
        assert a.dtype == b.dtype and a.shape == b.shape, key
        assert a.tobytes() == b.tobytes(), key


@pytest.mark.parametrize("asked", [("mean",), ("var", "min"), ("std",), ("count", "max")])
@pytest.mark.parametrize(
    "options",
    [
        {"over": "time", "resample": "time=1M"},  # grouped: periods, merged in the tree
        {"over": "time", "group_by": "time.month"},
        {"over": "time"},
        {"over": "lat,lon"},  # per-record results
    ],
)
def test_asked_results_have_the_bits_of_the_full_job(tmp_path, asked, options):
    spec = write_daily(tmp_path / "in.nc", n=200, grid=(3, 4))
    full = run_here("stats", spec, chunk_rows=9, **options)
    got = run_here("stats", spec, chunk_rows=9, params={"stats": ",".join(asked)}, **options)
    assert_subset_of(got, full, asked)


@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_integers_and_a_histogram(tmp_path, dtype):
    rng = np.random.default_rng(3)
    data = rng.integers(-50, 50, (40, 6)).astype(dtype)
    spec = write_dataset(tmp_path / "in.h5", data)
    params = {"bins": 5, "range": [-60, 60]}
    full = run_here("stats", spec, chunk_rows=7, params=params)
    got = run_here("stats", spec, chunk_rows=7, params={**params, "stats": ["mean", "std"]})
    assert_subset_of(got, full, ("mean", "std"))
    assert {"hist", "hist_edges", "hist_below", "hist_above"} <= got.keys()


def test_the_partial_keeps_only_the_parts_the_results_need():
    data = np.random.default_rng(0).normal(size=(10, 3, 4))
    assert set(nd.stats(data, **PARAMS, stats="mean")) == {"count", "sum"}
    assert set(nd.stats(data, **PARAMS, stats="std")) == {"count", "mean", "m2"}
    assert set(nd.stats(data, **PARAMS, stats="min,nan_count")) == {"count", "min", "nan_count"}
    ints = np.arange(20, dtype=np.int32).reshape(10, 2)
    assert set(nd.stats(ints, **PARAMS, stats="mean")) == {"count", "s1", "s2"}
    # Vectorised per-record groups (a day of year) trim theirs too: the same keys as per group.
    kern = group_kernel(nd.stats)
    labels = np.arange(10, dtype=np.int64)
    grouped = kern.func(Labelled(data, labels), **PARAMS, stats="mean")
    assert set(grouped) == {"__group__", "count", "sum"}


@pytest.mark.parametrize(
    "value,fragment",
    [("median", "no result 'median'"), ("", "no result ''"), (7, "names such as mean,std")],
)
def test_unknown_names_are_refused(tmp_path, value, fragment):
    spec = write_daily(tmp_path / "in.nc", n=20)
    refused_here("stats", spec, fragment, over="time", params={"stats": value})


def test_from_the_command_line(tmp_path):
    spec = write_daily(tmp_path / "in.nc", n=100)
    out = tmp_path / "o.nc"
    done = cli_here(["run", "stats", spec, "-o", str(out), "--over", "time",
                     "--resample", "time=1M", "-p", "stats=mean,max"])  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = read_results(str(out))
    assert {key for key in results if key in RESULTS} == {"mean", "max"}
    done = cli_here(["run", "stats", spec, "-o", str(out), "-p", "stats=mode", "--overwrite"])
    assert done.returncode == 2 and "no result 'mode'" in done.stderr


def test_the_memory_estimate_counts_only_the_kept_parts(tmp_path):
    """A day-of-year job's groups are most of its estimate: the mean's 2 parts, not 7."""
    from hpcapp.jobs.config import JobConfig
    from hpcapp.jobs.plan import plan_job
    from hpcapp.jobs.provenance import load_with_code

    spec = write_daily(tmp_path / "in.nc", "standard", n=800, grid=(30, 40))

    def estimate(params):
        config = JobConfig(kernel="stats", input=spec, group_by="time.dayofyear", params=params)
        plan = plan_job(config, *load_with_code("stats"), estimate_memory=True)
        assert plan.memory is not None
        return plan.memory["partials"]  # the groups held by the chunk tree

    full, mean = estimate({}), estimate({"stats": "mean"})
    assert mean < 0.3 * full, (mean, full)  # count, sum: 16 of the 56 bytes a cell
