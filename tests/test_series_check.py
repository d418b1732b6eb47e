"""hpcapp check on series kernels: results must not depend on how the cells are tiled."""

import numpy as np
import pytest
from helpers import cli_here, write_dataset

from hpcapp.jobs.series_check import prepare_series_check
from hpcapp.kernels.quantile import median
from hpcapp.kernels.series_contract import fixed_tilings, random_tiling
from hpcapp.testing import run_check

SERIES_KERNELS = '''
import numpy as np
import hpcapp


@hpcapp.kernel(series=True)
def running_max(series):
    """Each series' running maximum (a per-row series) and its last value (per cell)."""
    out = np.fmax.accumulate(series, axis=0)
    return {"peak": out, "last": out[-1]}


@hpcapp.kernel(series=True)
def by_tile_mean(series):
    """Wrong: divides by the mean of the tile, not of the cell's series."""
    return {"norm": series - np.nansum(series) / max(series.size, 1)}


@hpcapp.kernel(series=True)
def transposed(series):
    """Wrong: one row per cell, not one value per cell last."""
    return {"t": series.T.copy()}


@hpcapp.kernel(series=True)
def kept_records(series):
    """Wrong: drops the records missing in every cell of its tile."""
    return {"kept": series[~np.isnan(series).all(axis=1)]}


@hpcapp.kernel(series=True)
def no_empty(series):
    """Wrong: fails on a tile without cells (a rank when ranks outnumber cells)."""
    if series.shape[1] == 0:
        raise ValueError("no cells")
    return {"last": series[-1]}
'''


@pytest.fixture
def field(tmp_path):
    """A (30, 5, 7) field with a fifth missing, one cell all missing; and the kernels' file."""
    rng = np.random.default_rng(4)
    data = np.round(rng.normal(280, 5, size=(30, 5, 7)), 2)
    data[rng.random(data.shape) < 0.2] = np.nan
    data[:, 1, 2] = np.nan
    data[3] = np.nan  # a record missing everywhere
    data[4, :, :4] = np.nan  # and one missing in part of the cells
    kernels = tmp_path / "series.py"
    kernels.write_text(SERIES_KERNELS)
    return write_dataset(tmp_path / "in.h5", data), kernels, data


def test_quantile_and_median_hold(field):
    spec, _, _ = field
    report = run_check("quantile", spec, params={"q": [0.1, 0.5, 0.9], "method": "hazen"})
    assert report.ok, report.text()
    assert "result 'quantile': per cell, written with shape (3, 5, 7)" in report.notes
    assert report.tilings >= 2 + 5  # the fixed tilings and random ones
    assert "bitwise identical over" in report.text()
    done = cli_here(["check", "median", spec, "--trials", "3"])
    assert done.returncode == 0, done.stderr
    assert "28 cells (dim_1 0-3 of 5, dim_2 0-6 of 7), all 30 records" in done.stdout


def test_a_per_row_series_kernel_holds_and_keeps_the_input_shape(field):
    spec, kernels, _ = field
    report = run_check(f"{kernels}:running_max", spec)
    assert report.ok, report.text()
    assert "result 'peak': a per-row series, written with shape (30, 5, 7)" in report.notes
    assert "result 'last': per cell, written with shape (5, 7)" in report.notes


def test_a_kernel_using_its_tile_fails_naming_it_and_what_differed(field):
    spec, kernels, _ = field
    done = cli_here(["check", f"{kernels}:by_tile_mean", spec, "--trials", "3"])
    assert done.returncode == 1, done.stderr
    assert f"kernel '{kernels}:by_tile_mean'" in done.stdout
    failed = [line for line in done.stdout.splitlines() if "FAIL" in line]
    assert len(failed) == 1, done.stdout  # one line per broken rule, however many tilings
    assert "result 'norm' depends on how the cells are tiled" in failed[0]
    assert "with 1 cell per tile" in failed[0] and "more tilings)" in failed[0]


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("transposed", "result 't' must end with one value per cell"),
        ("kept_records", "result 'kept' depends on how the cells are tiled: its tiles'"),
        ("no_empty", "the kernel raised on an empty tile"),
    ],
)
def test_shapes_and_empty_tiles_are_checked(field, name, fragment):
    spec, kernels, _ = field
    report = run_check(f"{kernels}:{name}", spec, trials=2)
    assert not report.ok
    assert any(fragment in failure for failure in report.failures), report.text()


def test_long_series_take_the_first_records_within_the_bound(field):
    spec, _, _ = field
    report = run_check("median", spec, max_bytes=28 * 8 * 12)  # 12 records of 28 cells
    assert report.ok, report.text()
    assert "the first 12 of 30 records" in report.notes[0]


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--over", "dim_0,dim_1,dim_2"], "no tiling to check"),
        (["--group-by", "dim_0"], "--group-by does not apply"),
    ],
)
def test_refused_with_usage_exit(field, extra, fragment):
    spec, _, _ = field
    done = cli_here(["check", "median", spec, *extra])
    assert done.returncode == 2 and fragment in done.stderr, done.stderr


def test_tilings_cover_every_cell_once_and_cross_rows():
    kept = (3, 5)
    for how, tiling in fixed_tilings(kept):
        cells = [c for a, b in tiling for c in range(a, b)]
        assert cells == list(range(15)), how
    assert any(a == b for a, b in dict(fixed_tilings(kept))["the tiles of 16 ranks"])
    rng = np.random.default_rng(0)
    for _ in range(50):
        tiling = random_tiling(15, 5, rng)
        assert [c for a, b in tiling for c in range(a, b)] == list(range(15))
        assert any(b % 5 for _, b in tiling[:-1]), tiling  # a tile ends inside a row


@pytest.mark.parametrize(
    ("isel", "box", "shape"),
    [
        (None, np.s_[:, 0:4, 0:7], (30, 5, 7)),  # 4 of 5 rows of the first kept dim, all 7
        ("dim_0=2:,dim_1=1:,dim_2=1:", np.s_[2:, 1:5, 1:7], (28, 4, 6)),  # the selection's
    ],
)
def test_the_sample_is_the_box_of_cells_run_reads(field, isel, box, shape):
    spec, _, data = field
    sample = prepare_series_check(median, spec, {"isel": isel})
    assert sample.series.tobytes() == np.ascontiguousarray(data[box]).tobytes()
    assert sample.shape == shape  # what run reads: the notes' written shapes
