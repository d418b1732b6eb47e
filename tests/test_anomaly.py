"""``anomaly``: each record minus its group's climatology, against xarray's groupby arithmetic."""

import numpy as np
import pytest
import xarray as xr
from helpers import refused_here, run_here
from ncdata import write_grid, write_masked_time


def climatology_of(tmp_path, spec, group_by, name="clim.nc"):
    out = tmp_path / name
    run_here("stats", spec, group_by=group_by, output=str(out), chunk_rows=30)
    return out


@pytest.mark.parametrize("group", ["month", "dayofyear"])
@pytest.mark.parametrize("standardize", [False, True])
def test_anomaly_equals_xarray_groupby(tmp_path, group, standardize):
    path = tmp_path / "in.nc"
    spec = write_grid(path, shape=(800, 2, 3), bounds=False, missing=0.2)
    clim = climatology_of(tmp_path, spec, f"time.{group}")
    params = {"climatology": f"{clim}:/tas_mean", "standardize": standardize}
    got = [run_here("anomaly", spec, params=params, chunk_rows=rows) for rows in (7, 800)]
    with xr.open_dataset(path) as ds, xr.open_dataset(clim) as c:
        expected = ds.tas.groupby(f"time.{group}") - c.tas_mean
        if standardize:
            expected = expected.groupby(f"time.{group}") / c.tas_std
        expected = expected.values
    np.testing.assert_array_equal(np.isnan(got[0]["anomaly"]), np.isnan(expected))
    np.testing.assert_allclose(got[0]["anomaly"], expected, rtol=1e-12, atol=1e-12)
    assert got[0]["anomaly"].tobytes() == got[1]["anomaly"].tobytes()


def test_the_output_is_shaped_like_the_input(tmp_path):
    path = tmp_path / "in.nc"
    spec = write_grid(path, shape=(40, 2, 3), bounds=False)
    clim = climatology_of(tmp_path, spec, "time.month")
    out = tmp_path / "out.nc"
    run_here("anomaly", spec, params={"climatology": f"{clim}:/tas_mean"}, output=str(out))
    with xr.open_dataset(out) as ds:
        assert ds.tas_anomaly.dims == ("time", "lat", "lon")
        assert ds.tas_anomaly.attrs["units"] == "K"  # the input's quantity
    params = {"climatology": f"{clim}:/tas_mean", "standardize": True}
    run_here("anomaly", spec, params=params, output=str(tmp_path / "z.nc"))
    with xr.open_dataset(tmp_path / "z.nc") as ds:
        assert "units" not in ds.tas_anomaly.attrs  # standard deviations: no units
        # Days 0-30 are January: their anomalies average to zero.
        np.testing.assert_allclose(ds.tas_anomaly[:31].mean("time"), 0, atol=1e-12)


def test_masked_times_give_nan_rows(tmp_path):
    spec = write_masked_time(tmp_path / "in.nc", "fill")
    clim = climatology_of(tmp_path, spec, "time.month")
    got = run_here("anomaly", spec, params={"climatology": f"{clim}:/v_mean"}, chunk_rows=4)
    # Days 0, 10 are January; 40, 41 February; records 3 and 4 have no time.
    expected = [1 - 1.5, 2 - 1.5, np.nan, np.nan, 4 - 5, 6 - 5]
    np.testing.assert_array_equal(got["anomaly"][:, 0], expected)


def test_refusals(tmp_path):
    path = tmp_path / "in.nc"
    spec = write_grid(path, shape=(40, 2, 3), bounds=False)
    plain = tmp_path / "plain.nc"
    run_here("stats", spec, output=str(plain))  # no group dimension
    refused_here(
        "anomaly",
        spec,
        str(plain),
        "month or dayofyear",
        params={"climatology": f"{plain}:/tas_mean"},
    )
    other = write_grid(tmp_path / "other.nc", shape=(40, 3, 3), bounds=False)
    clim = climatology_of(tmp_path, other, "time.month")
    refused_here("anomaly", spec, "shape", params={"climatology": f"{clim}:/tas_mean"})
    refused_here(
        "anomaly", spec, "*_mean", params={"climatology": f"{clim}:/tas_var", "standardize": True}
    )
    refused_here("anomaly", spec, "nowhere.nc", params={"climatology": "nowhere.nc:/tas_mean"})
    refused_here("anomaly", spec, "no such variable", params={"climatology": f"{clim}:/nope"})


def test_the_cli_pipeline_under_mpiexec(tmp_path):
    """End to end: the climatology at 2 ranks, the anomalies at 3, the bits of one rank."""
    from helpers import read_results, run_cli

    spec = write_grid(tmp_path / "in.nc", shape=(70, 3, 4), bounds=False, missing=0.2)
    clim, out = tmp_path / "clim.nc", tmp_path / "out.nc"
    done = run_cli(["run", "stats", spec, "-o", str(clim), "--group-by", "time.month", "-q"], 2)
    assert done.returncode == 0, done.stderr
    params = ["-p", f"climatology={clim}:/tas_mean", "-p", "standardize=true"]
    done = run_cli(["run", "anomaly", spec, "-o", str(out), "--chunk-rows", "4", "-q", *params], 3)
    assert done.returncode == 0, done.stderr
    alone = run_here(
        "anomaly", spec, chunk_rows=4,
        params={"climatology": f"{clim}:/tas_mean", "standardize": True},
    )  # fmt: skip
    assert read_results(out)["anomaly"].tobytes() == alone["anomaly"].tobytes()


@pytest.mark.parametrize("group", ["month", "dayofyear"])
def test_one_job_computes_the_climatology_first(tmp_path, group):
    """--group-by without -p climatology: the grouped stats pass, then the anomalies."""
    spec = write_grid(tmp_path / "in.nc", shape=(400, 2, 3), bounds=False, missing=0.2)
    out = tmp_path / "anom.nc"
    got = run_here(
        "anomaly", spec, group_by=f"time.{group}", output=str(out), chunk_rows=9,
        params={"standardize": True},
    )  # fmt: skip
    clim = tmp_path / "anom.climatology.nc"
    with xr.open_dataset(clim) as c:
        assert c.tas_mean.dims == (group, "lat", "lon")
    two_jobs = run_here(
        "anomaly", spec, chunk_rows=9,
        params={"climatology": f"{clim}:/tas_mean", "standardize": True},
    )  # fmt: skip
    assert got["anomaly"].tobytes() == two_jobs["anomaly"].tobytes()
    with xr.open_dataset(tmp_path / "in.nc") as ds, xr.open_dataset(clim) as c:
        anomalies = ds.tas.groupby(f"time.{group}") - c.tas_mean
        expected = (anomalies.groupby(f"time.{group}") / c.tas_std).values
    np.testing.assert_allclose(got["anomaly"], expected, rtol=1e-12, atol=1e-12)
    # Resumed, both passes are found finished.
    again = run_here(
        "anomaly", spec, group_by=f"time.{group}", output=str(out), chunk_rows=9,
        params={"standardize": True}, resume=True,
    )  # fmt: skip
    assert again["anomaly"].tobytes() == got["anomaly"].tobytes()


def test_one_job_needs_an_output(tmp_path):
    spec = write_grid(tmp_path / "in.nc", shape=(40, 2, 3), bounds=False)
    refused_here("anomaly", spec, "give an output", group_by="time.month")


def test_slurm_checks_the_first_pass_of_the_one_job_form(tmp_path):
    from helpers import cli_here

    spec = write_grid(tmp_path / "in.nc", shape=(40, 2, 3), bounds=False)
    script = tmp_path / "job.sh"
    run = ["run", "anomaly", spec, "-o", str(tmp_path / "anom.nc"), "--group-by", "time.month"]
    done = cli_here(["slurm", "--nodes", "1", "--time", "10", "--output-script", str(script),
                     "--", *run])  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--group-by time.month" in script.read_text()
    # Without --group-by the climatology is the user's to give, and the check says so.
    done = cli_here(["slurm", "--nodes", "1", "--time", "10", "--output-script", str(script),
                     "--", *run[:-2]])  # fmt: skip
    assert done.returncode == 2 and "needs parameter(s) climatology" in done.stderr
