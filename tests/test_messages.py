"""Messages about a wrong input name list the data variables, as netCDF readers see them."""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pytest
from helpers import refused_here, write_dataset
from input_helpers import refused


@pytest.fixture
def cmip_file(tmp_path):
    """A CMIP-style daily file: tas, its coordinates, their bounds and the `bnds` dimension."""
    path = tmp_path / "tas_day_1991.nc"
    with netCDF4.Dataset(path, "w") as ds:
        for name, size in (("time", None), ("lat", 3), ("lon", 4), ("bnds", 2)):
            ds.createDimension(name, size)
        for name, dims in (("time", ("time",)), ("lat", ("lat",)), ("lon", ("lon",))):
            coord = ds.createVariable(name, "f8", dims)
            coord.bounds = f"{name}_bnds"
            ds.createVariable(f"{name}_bnds", "f8", (*dims, "bnds"))
        ds["time"].units = "days since 1991-01-01"
        ds["lat"][:], ds["lon"][:] = [-45, 0, 45], [0, 90, 180, 270]
        ds.createVariable("height", "f8", ())  # a scalar coordinate: data to netCDF
        tas = ds.createVariable("tas", "f4", ("time", "lat", "lon"))
        tas.coordinates = "height"
        tas[:] = np.ones((5, 3, 4), np.float32)
    return path


def netcdf_data_variables(path) -> list[str]:
    """What netCDF4-python calls variables, less coordinate variables and bounds."""
    with netCDF4.Dataset(path) as ds:
        bounds = {getattr(v, "bounds", None) for v in ds.variables.values()}
        return [f"/{n}" for n in ds.variables if n not in ds.dimensions and n not in bounds]


def test_a_missing_dataset_suggests_data_variables_only(cmip_file, tmp_path):
    assert netcdf_data_variables(cmip_file) == ["/height", "/tas"]
    message = refused(str(cmip_file), tmp_path=tmp_path)
    assert f"add :/DATASET, e.g. {cmip_file}:/height;" in message
    assert "data variables: /height () float64; /tas (5, 3, 4) float32;" in message
    assert "coordinates and bounds: /lat, /lat_bnds, /lon, /lon_bnds, /time, /time_bnds" in message
    assert "/bnds" not in message.replace("_bnds", "")


@pytest.mark.parametrize(
    "dataset,hint",
    [("/ta", "did you mean '/tas'?"), ("/tass", "did you mean '/tas'?"), ("/bnd", None)],
)
def test_a_wrong_dataset_suggests_data_variables_only(cmip_file, tmp_path, dataset, hint):
    message = refused(f"{cmip_file}:{dataset}", tmp_path=tmp_path)
    assert f"has no dataset '{dataset}'" in message
    if hint:
        assert hint in message
    else:
        assert "did you mean" not in message
    assert "/bnds" not in message.replace("_bnds", "")


def test_a_plain_hdf5_file_lists_its_datasets(tmp_path):
    import h5py

    with h5py.File(tmp_path / "plain.h5", "w") as h5:
        h5["temperature"] = np.zeros((4, 2))
        h5["pressure"] = np.zeros(4)
    message = refused(f"{tmp_path / 'plain.h5'}:/temperatur", tmp_path=tmp_path)
    assert "did you mean '/temperature'?" in message
    assert "datasets: /pressure (4,) float64; /temperature (4, 2) float64" in message


def test_options_that_would_be_ignored_are_refused(tmp_path):
    """--compression without per-row outputs, --distribute scatter of generated data: exit 2."""
    spec = write_dataset(tmp_path / "in.h5", np.ones((10, 3)))
    out = str(tmp_path / "out.h5")
    refused_here("stats", spec, "--compression", "'stats' has none", output=out, compression="gzip")
    assert not Path(out).exists()
    refused_here("montecarlo", None, "nothing to scatter", output=out, distribute="scatter")
    assert not Path(out).exists()
