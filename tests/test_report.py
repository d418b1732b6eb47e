"""The report after a run: times on one clock that add up, a digest of gridded results, -q."""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import cli_here, run_cli, write_dataset
from ncdata import write_netcdf

from hpcapp.jobs import report
from hpcapp.jobs.report import results_lines

STEP = re.compile(
    r"^    (start-up|read\+compute|combine|write|other|total): .*?((?: +-?\d+\.\d{3})+)$"
)


def time_table(stdout: str) -> dict[str, list[float]]:
    """Return each step's numbers (rank 0, then min, mean, max where given) from a summary."""
    table = {}
    for line in stdout.splitlines():
        match = STEP.match(line)
        if match:
            table[match.group(1)] = [float(v) for v in match.group(2).split()]
    return table


def test_times_add_up_on_one_clock(tmp_path):
    """Rank 0's steps add up to the total, which is the headline's and includes start-up."""
    spec = write_dataset(tmp_path / "in.h5", np.random.default_rng(1).normal(size=(4000, 3)))
    done = run_cli(["run", "stats", spec, "-o", str(tmp_path / "o.h5"), "--chunk-rows", "500"], 2)
    assert done.returncode == 0, done.stderr
    table = time_table(done.stdout)
    assert list(table) == ["start-up", "read+compute", "combine", "write", "other", "total"]
    (total,) = table["total"]
    headline = re.search(r"2 ranks, (\d+\.\d\d) s$", done.stdout.splitlines()[0])
    # The headline has 2 decimals, the table 3: they differ by at most half a hundredth.
    assert headline and abs(float(headline.group(1)) - total) <= 0.005 + 1e-9, done.stdout
    steps = sum(table[name][0] for name in ("start-up", "read+compute", "combine", "write"))
    (other,) = table["other"]
    assert abs(steps + other - total) <= 0.003, done.stdout  # rounding of six numbers
    # The wall time counts from the process's start, as start-up does: no step exceeds it.
    assert other >= -0.003, done.stdout
    assert table["start-up"][0] <= total and table["read+compute"][3] <= total, done.stdout
    assert "seconds, from each rank's process start" in done.stdout


def test_gridded_results_get_a_digest(tmp_path):
    values = np.random.default_rng(2).normal(280, 5, size=(6, 3, 4)).astype(np.float32)
    values[:, 1, 2] = np.nan  # one cell with no value at all
    spec = write_netcdf(tmp_path / "tas.nc", values)
    done = cli_here(["run", "stats", spec, "-o", str(tmp_path / "o.h5"), "--over", "time"])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    at = lines.index("  12 cells (lat 3 x lon 4); 1 all missing (count 0); over the other cells:")
    assert lines[at + 1].split() == ["min", "mean", "max"]
    digest = {line.split()[0]: line.split()[1:] for line in lines[at + 2 : at + 7]}
    assert digest["count"] == ["6", "6", "6"]
    cells = values.astype(np.float64).reshape(6, 12)
    cells = cells[:, ~np.isnan(cells).all(axis=0)]  # the 11 cells with values
    means = cells.mean(axis=0)
    assert digest["mean"] == [f"{v:.6g}" for v in (means.min(), means.mean(), means.max())]
    assert digest["max"][2] == f"{cells.max():.6g}"
    assert "column" not in done.stdout


def test_a_table_for_a_few_columns_a_digest_for_other_large_results():
    few = {
        "count": np.array([3, 3]),
        **{k: np.array([1.0, 2.0]) for k in ["mean", "std", "min", "max"]},
    }
    assert results_lines(few)[0].split() == ["column", "count", "mean", "std", "min", "max"]
    grid = np.arange(30.0).reshape(5, 6)
    grid[0, 0] = np.nan
    (line,) = results_lines({"grid": grid})
    assert line == "  grid: shape (5, 6): min 1 mean 15 max 29 over cells; 1 cells NaN"
    assert results_lines({"total": np.float64(2.5)}) == ["  total = 2.5"]


@pytest.mark.parametrize("block", [1, 7, 1 << 20])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int16"])
def test_the_digest_in_blocks_is_numpys_over_the_whole_result(monkeypatch, block, dtype):
    monkeypatch.setattr(report, "DIGEST_BLOCK", block)
    rng = np.random.default_rng(2)
    values = (rng.normal(size=(6, 5, 4)) * 100).astype(dtype)
    keep = rng.random((6, 5, 4)) > 0.3
    if dtype != "int16":
        values[0, :2] = np.nan
    wide = values.astype(np.float64)
    low, mid, high, missing = report.over_cells(values)
    assert (low, high, missing) == (np.nanmin(wide), np.nanmax(wide), np.isnan(wide).sum())
    assert mid == pytest.approx(np.nanmean(wide), rel=1e-12)
    kept = wide[keep]
    low, mid, high, _ = report.over_cells(values, keep)
    assert (low, high) == (np.nanmin(kept), np.nanmax(kept))
    assert mid == pytest.approx(np.nanmean(kept), rel=1e-12)
    assert report.over_cells(np.full(9, np.nan)) is None


def test_quiet_prints_nothing_but_errors(tmp_path):
    spec = write_dataset(tmp_path / "in.h5", np.arange(6000.0).reshape(3000, 2))
    args = ["run", "stats", spec, "-o", str(tmp_path / "o.h5"), "--chunk-rows", "100", "-q"]
    done = run_cli(args, 2, env={"HPCAPP_PROGRESS": "bar"})
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    again = run_cli(args, 2)  # the output exists: an error, and only that
    assert again.returncode == 2 and again.stdout == ""
    assert again.stderr.startswith("hpcapp: error:") and again.stderr.count("\n") == 1
