"""``hpcapp.run`` on N-D inputs: list options as sequences, per-row results, an xarray Dataset."""

import numpy as np
import pytest
from helpers import cli_here, read_results, refused_here, result_bytes, run_here
from ncdata import write_netcdf

import hpcapp
from hpcapp.errors import KernelError
from hpcapp.io.results import names_in

SHAPE = (24, 3, 4)  # time, lat, lon


@pytest.fixture
def tas(tmp_path):
    """A small (time, lat, lon) netCDF input with coordinates, and its values."""
    values = np.random.default_rng(7).normal(280.0, 5.0, SHAPE).astype(np.float32)
    return write_netcdf(tmp_path / "tas.nc", values), values


@hpcapp.kernel(per_row=("twice",), combine="sum")
def doubled(chunk):
    """A per-row user kernel: every row twice over, and the column sums."""
    return {"twice": 2.0 * chunk, "total": chunk.sum(axis=0)}


@pytest.mark.parametrize("over", [("lat", "lon"), ["lat", "lon"], (1, 2), ["lat", 2]])
def test_over_as_a_sequence_is_the_job_of_its_comma_list(tmp_path, tas, over):
    spec, _ = tas
    run_here("stats", spec, over="lat,lon", output=str(tmp_path / "text.nc"))
    run_here("stats", spec, over=over, output=str(tmp_path / "seq.nc"))
    assert result_bytes(tmp_path / "seq.nc") == result_bytes(tmp_path / "text.nc")


def test_dims_as_a_sequence_names_the_dimensions(tmp_path):
    from helpers import write_dataset

    spec = write_dataset(tmp_path / "in.h5", np.arange(60.0).reshape(5, 3, 4))
    run_here("stats", spec, dims="t,y,x", over="y,x", output=str(tmp_path / "text.nc"))
    run_here("stats", spec, dims=("t", "y", "x"), over=["y", "x"], output=str(tmp_path / "seq.nc"))
    assert result_bytes(tmp_path / "seq.nc") == result_bytes(tmp_path / "text.nc")
    assert names_in(str(tmp_path / "seq.nc"))["mean"] == "x_mean"


def test_a_toml_list_is_the_comma_list(tmp_path, tas):
    spec, _ = tas
    toml = tmp_path / "job.toml"
    toml.write_text(f'kernel = "stats"\ninput = "{spec}"\nover = ["lat", "lon"]\n')
    done = cli_here(["run", "--config", str(toml), "-o", str(tmp_path / "toml.nc"), "-q"])
    assert done.returncode == 0, done.stderr
    run_here("stats", spec, over="lat,lon", output=str(tmp_path / "text.nc"))
    assert result_bytes(tmp_path / "toml.nc") == result_bytes(tmp_path / "text.nc")


@pytest.mark.parametrize("over", [2.5, [], [1.5], {"lat": 1}, [True]])
def test_other_types_are_refused_in_one_line(tas, over):
    refused_here("stats", tas[0], "over must be a comma-separated string or a list", over=over)


def test_a_toml_list_of_other_things_is_refused(tmp_path, tas):
    toml = tmp_path / "job.toml"
    toml.write_text(f'kernel = "stats"\ninput = "{tas[0]}"\nover = [1.5]\n')
    done = cli_here(["run", "--config", str(toml), "-o", str(tmp_path / "o.nc")])
    assert done.returncode == 2
    assert "over must be a comma-separated string or a list" in done.stderr


def test_per_row_results_come_back_with_and_without_an_output(tmp_path, tas):
    spec, values = tas
    out = tmp_path / "gm.nc"
    written = run_here("stats", spec, over=("lat", "lon"), output=str(out), chunk_rows=5)
    returned = run_here("stats", spec, over=("lat", "lon"), chunk_rows=5)
    in_file = read_results(out)
    assert written.keys() == returned.keys() == in_file.keys()
    for key, value in in_file.items():
        assert written[key].tobytes() == value.tobytes(), key
        assert returned[key].tobytes() == value.tobytes(), key
    assert returned["mean"].shape == (SHAPE[0],)
    np.testing.assert_allclose(returned["mean"], values.astype(np.float64).mean(axis=(1, 2)))


def test_a_user_kernels_rows_come_back_without_an_output(tmp_path):
    from helpers import write_dataset

    data = np.random.default_rng(3).normal(size=(1001, 3))
    results = run_here(doubled, write_dataset(tmp_path / "in.h5", data), chunk_rows=100)
    assert results["twice"].tobytes() == (2.0 * data).tobytes()
    np.testing.assert_allclose(results["total"], data.sum(axis=0))


def test_rows_too_big_to_gather_are_refused_saying_give_an_output(tmp_path, tas, monkeypatch):
    from helpers import write_dataset

    import hpcapp.jobs.app
    import hpcapp.jobs.plan

    for module in (hpcapp.jobs.plan, hpcapp.jobs.app):
        monkeypatch.setattr(module, "ROWS_GATHERED", 64)  # 24 float64 means are 192 bytes
    # A built-in kernel: before any work, from the estimate.
    refused_here("stats", tas[0], "MiB hpcapp.run returns without an output: give an output",
                 over="lat,lon")  # fmt: skip
    # A user kernel is not called before the job: after its first chunk, on every rank.
    spec = write_dataset(tmp_path / "in.h5", np.ones((50, 2)))
    with pytest.raises(KernelError, match="without an output: give an output"):
        run_here(doubled, spec, chunk_rows=10)
    # With an output the job runs; what does not fit stays in the file, and a warning says so.
    out = tmp_path / "gm.nc"
    with pytest.warns(UserWarning, match="not returned, read them from"):
        results = run_here("stats", tas[0], over="lat,lon", output=str(out))
    assert "mean" not in results and read_results(out)["mean"].shape == (SHAPE[0],)


@pytest.mark.parametrize("over", ["time", "lat,lon"])
def test_as_xarray_is_the_file_as_xarray_opens_it(tmp_path, tas, over):
    import xarray as xr

    spec, _ = tas
    out = tmp_path / "out.nc"
    labelled = run_here("stats", spec, over=over, output=str(out), as_xarray=True)
    with labelled, xr.open_dataset(out) as expected:
        xr.testing.assert_identical(labelled, expected)
    unwritten = run_here("stats", spec, over=over, as_xarray=True)
    with xr.open_dataset(out) as expected:
        names = list(names_in(str(out)).values())
        assert sorted(unwritten.data_vars) == sorted(expected.data_vars)
        for name in names:  # the results with their dims, coordinates and attributes
            xr.testing.assert_identical(unwritten[name], expected[name].load())
    kept = ("lat", "lon") if over == "time" else ("time",)
    assert unwritten[names_in(str(out))["mean"]].dims == kept


def test_as_xarray_without_xarray_says_so_in_one_line(tas, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "xarray", None)  # import xarray raises ImportError
    with pytest.raises(ImportError, match=r"^hpcapp.run\(as_xarray=True\) needs xarray"):
        run_here("stats", tas[0], as_xarray=True)
