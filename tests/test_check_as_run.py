"""``hpcapp check`` judges the kernel ``run`` would run: its data options, its verdict, a sample."""

import argparse
import inspect
import itertools

import numpy as np
import pytest
from helpers import cli_here, read_results, run_here, write_dataset
from ncdata import write_netcdf, write_times

import hpcapp
from hpcapp.cli.parser import build_parser
from hpcapp.errors import UsageError
from hpcapp.jobs.check import sample_blocks
from hpcapp.jobs.config import JobConfig
from hpcapp.jobs.options import data_options
from hpcapp.testing import run_check

# A kernel declared over=True whose sums over `over` keep the record axis when it is not
# reduced: its partials then change shape with the chunk, which run cannot combine.
ND_KERNEL = """\
import numpy as np
import hpcapp

@hpcapp.kernel(over=True)
def sums(chunk, over=(0,)):
    over = tuple(over)
    return {"s": np.nansum(chunk, axis=over, dtype=np.float64),
            "n": np.isfinite(chunk).sum(axis=over)}
"""


@pytest.fixture
def grid(tmp_path):
    """A small (time, lat, lon) netCDF-4 input and a kernel file."""
    values = np.random.default_rng(3).normal(280.0, 5.0, size=(60, 3, 4))
    spec = write_netcdf(tmp_path / "grid.nc", values)
    kernel = tmp_path / "nd.py"
    kernel.write_text(ND_KERNEL)
    return spec, f"{kernel}:sums", values


@pytest.mark.parametrize("extra", [[], ["--over", "lat,lon"], ["--over", "time,lat"]])
def test_check_passes_exactly_when_run_works(grid, tmp_path, extra):
    spec, kernel, _ = grid
    checked = cli_here(["check", kernel, spec, *extra])
    out = tmp_path / "out.h5"
    # Several chunks, as on a real input (this one fits in one).
    ran = cli_here(["run", kernel, spec, "-o", str(out), "-q", "--chunk-rows", "7", *extra])
    assert checked.returncode in (0, 1) and ran.returncode in (0, 1), checked.stderr + ran.stderr
    assert (checked.returncode == 0) == (ran.returncode == 0), checked.stdout + ran.stderr
    if extra[1:] == ["lat,lon"]:  # the case that breaks: the records are not reduced
        assert checked.returncode == 1 and "partials of different chunks do not match" in (
            checked.stdout
        )
        assert "over=(1, 2) (lat,lon)" in checked.stdout
    else:
        assert checked.returncode == 0 and "all rules hold" in checked.stdout


def test_over_is_refused_by_check_as_by_run(grid, tmp_path):
    spec, _, _ = grid
    kernel = "hpcapp.examples.row_norms:row_norms"
    checked = cli_here(["check", kernel, spec, "--over", "lat"])
    ran = cli_here(["run", kernel, spec, "-o", str(tmp_path / "x.h5"), "--over", "lat"])
    assert checked.returncode == ran.returncode == 2
    assert checked.stderr.splitlines()[-1] == ran.stderr.splitlines()[-1]  # the same refusal


@hpcapp.kernel(per_row="norm")
def cell_norms(chunk):
    """Only a per-row key: each record's root sum of squares."""
    return {"norm": np.sqrt(np.nansum(chunk.astype(np.float64) ** 2, axis=(1, 2)))}


def test_a_per_row_only_kernel_passes_check_and_run_gives_its_rows(grid, tmp_path):
    spec, _, values = grid
    report = run_check(cell_norms, spec, trials=5)
    assert report.ok, report.text()
    assert "per-row outputs: norm" in report.text()
    out = tmp_path / "rows.h5"
    run_here(cell_norms, spec, output=str(out), chunk_rows=7)
    expected = np.sqrt(np.nansum(values**2, axis=(1, 2)))
    np.testing.assert_array_equal(read_results(out)["norm"], expected)


def test_stats_over_lat_lon_is_checked_as_run_binds_it(grid):
    """Built-in stats without the record axis: per-row outputs, as run writes them."""
    spec, _, _ = grid
    report = run_check("stats", spec, over=("lat", "lon"), trials=3)
    assert report.ok, report.text()
    assert "per-row outputs: count" in report.text()


def _daily(tmp_path, days=730):
    """Two years of daily records v(time, lat) whose values are the record's index."""
    values = np.repeat(np.arange(days, dtype=np.float64)[:, None], 2, axis=1)
    spec = write_times(tmp_path / "daily.nc", np.arange(days), values)
    months = (np.datetime64("1850-01-01") + np.arange(days)).astype("datetime64[M]")
    return spec, months.astype(np.int64) % 12


def test_group_by_month_is_checked_group_by_group(tmp_path):
    spec, month_of_row = _daily(tmp_path)
    seen = []

    def record(chunk):
        seen.append(np.unique(month_of_row[chunk[:, 0].astype(np.int64)]))
        return {"s": chunk.sum(axis=0), "n": np.int64(len(chunk))}

    report = run_check(record, spec, group_by="time.month", trials=3, max_bytes=8_000)
    assert report.ok, report.text()
    assert "--group-by time.month: combined per month of time" in report.text()
    assert seen and all(len(months) == 1 for months in seen)  # one month per call, as run
    assert len(np.unique(np.concatenate(seen))) == 12
    seen.clear()
    assert run_check(record, spec, trials=1).ok  # not grouped: calls span months
    assert max(len(months) for months in seen) > 1
    assert run_here(record, spec, group_by="time.month")["month"].tolist() == list(range(1, 13))


def test_group_by_month_catches_a_mean_combined_by_sum(tmp_path):
    spec, _ = _daily(tmp_path)

    def mean_by_sum(chunk):
        return {"mean": chunk.mean(axis=0)}

    done = cli_here(["check", "stats", spec, "--group-by", "time.month", "-p", "range=0,730"])
    assert done.returncode == 0 and "all rules hold" in done.stdout, done.stdout + done.stderr
    report = run_check(mean_by_sum, spec, group_by="time.month", trials=3)
    assert not report.ok and "key 'mean'" in report.text(), report.text()
    assert "depends on how the rows are cut" in report.text()


def test_group_by_needs_a_file_beside_an_array():
    with pytest.raises(UsageError, match="--group-by reads labels"):
        run_check("stats", np.zeros((10, 2)), group_by="time.month")


CHECK_OWN = {"help", "kernel", "input", "dtype", "shape", "nan_fraction", "trials", "seconds",
             "seed", "rtol"}  # fmt: skip


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return commands.choices[name]


def _described(action: argparse.Action) -> tuple:
    return (
        tuple(action.option_strings),
        action.dest,
        action.help,
        action.type,
        action.metavar,
        action.choices,
        action.const,
        action.default,
        action.nargs,
    )


def test_check_takes_exactly_runs_data_options():
    names = set(data_options(JobConfig))
    assert {"params", "over", "dims", "group_by", "group_every", "raw"} <= names
    run = {a.dest: _described(a) for a in _subparser("run")._actions if a.dest in names}
    check = _subparser("check")
    own = {a.dest: _described(a) for a in check._actions if a.dest not in CHECK_OWN}
    assert set(own) == names  # every data option, nothing else
    assert own == run  # the same flags, help, types and defaults: derived, not copied
    exclusive = [{a.dest for a in g._group_actions} for g in check._mutually_exclusive_groups]
    assert {"group_every", "group_by"} in exclusive
    # hpcapp.testing.run_check takes them as keywords, by hpcapp.run's names.
    keywords = set(inspect.signature(run_check).parameters)
    assert names <= keywords and names <= set(inspect.signature(hpcapp.run).parameters), (
        "a data option of JobConfig needs a keyword of hpcapp.testing.run_check"
    )


def test_check_refuses_options_run_refuses(grid):
    spec, kernel, _ = grid
    both = cli_here(["check", kernel, spec, "--group-every", "2", "--group-by", "time.month"])
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    clash = cli_here(["check", kernel, spec, "--raw", "--mask-valid-range"])
    assert clash.returncode == 2 and "--raw and --mask-valid-range exclude" in clash.stderr


def test_check_reads_at_most_the_bound_in_blocks_across_files(tmp_path):
    """A 4-file input of 2,000 records: 200 of them are checked, from every file."""
    for part in range(4):
        rows = np.arange(part * 500, (part + 1) * 500, dtype=np.float64)
        write_dataset(tmp_path / f"part{part}.h5", np.repeat(rows[:, None], 10, axis=1))
    seen = []

    def record(chunk):
        seen.append(np.array(chunk[:, 0], copy=True))
        return {"s": chunk.sum(axis=0)}

    bound = 200 * 10 * 8  # 200 rows of 10 float64
    report = run_check(record, str(tmp_path / "part*.h5") + ":/x", max_bytes=bound, trials=2)
    assert report.ok and report.n_rows == 200, report.text()
    assert max(len(rows) for rows in seen) == 200  # the kernel never got more
    rows = np.unique(np.concatenate(seen)).astype(np.int64)
    assert len(rows) == 200 and rows[0] == 0 and rows[-1] == 1999
    assert set(rows // 500) == {0, 1, 2, 3}  # every file
    assert "200 of 2,000 rows, in 4 blocks" in report.text() and "at most" in report.text()


def test_sample_blocks_are_contiguous_disjoint_and_spread():
    assert sample_blocks(100, 8, max_bytes=10_000) == [(0, 100)]
    runs = sample_blocks(1_000, 8, max_bytes=8 * 101)
    assert sum(b - a for a, b in runs) == 101 and runs[0][0] == 0 and runs[-1][1] == 1_000
    assert all(b <= c for (_, b), (c, _) in itertools.pairwise(runs))
    assert sample_blocks(10, 10**9) == [(0, 2)]  # one huge row: still one cut's worth


def test_check_reads_only_the_selection_run_reads(tmp_path):
    """--isel is a data option: check samples the selected records only, as run reads them."""
    rows = np.arange(1000, dtype=np.float64)
    write_dataset(tmp_path / "x.h5", np.repeat(rows[:, None], 4, axis=1))
    seen = []

    def record(chunk):
        seen.append(np.array(chunk[:, 0], copy=True))
        return {"s": chunk.sum(axis=0)}

    report = run_check(record, str(tmp_path / "x.h5") + ":/x", isel="dim_0=100:300", trials=2)
    assert report.ok and report.n_rows == 200, report.text()
    got = np.unique(np.concatenate(seen))
    assert got[0] == 100 and got[-1] == 299 and len(got) == 200
