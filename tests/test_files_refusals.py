"""A bad file among ten yearly packed files: the same one-line refusal on any rank count.

The 7th of 10 files is inspected by rank 1 at 2 and 3 ranks (each rank a block of the list);
the refusal names the file, the variable and the attribute exactly as the 1-rank job does.
Run under ``mpiexec -n 1``, ``-n 2`` and ``-n 3`` (``--with-mpi``).
"""

import numpy as np
import pytest
from helpers import refused_here

BAD = 6  # the 7th file


def write_year(path, year, kind=None):
    """Write a small yearly tas(time, lat, lon) packed as int16 (climate.py's layout)."""
    import netCDF4

    with netCDF4.Dataset(path, "w") as ds:
        for name, n in (("time", 5), ("lat", 3), ("lon", 4)):
            ds.createDimension(name, n)
        time = ds.createVariable("time", "f8", ("time",))
        start = year - 1 if kind == "overlap" else year  # the previous file's dates again
        time.units = "days since the flood" if kind == "time" else f"days since {start}-01-01"
        time.calendar = "noleap"
        time[:] = np.arange(5.0)
        lat = ds.createVariable("lat", "f8", ("lat",))
        lat[:] = [-45.0, 0.0, 45.0] if kind != "lat" else [-40.0, 0.0, 40.0]
        ds.createVariable("lon", "f8", ("lon",))[:] = np.arange(4) * 90.0
        tas = ds.createVariable("tas", "i2", ("time", "lat", "lon"), zlib=True, fill_value=-32767)
        tas.set_auto_scale(False)
        tas.scale_factor, tas.add_offset = 0.01, 273.15
        tas.units = "degC" if kind == "units" else "K"
        tas[:] = np.arange(60, dtype=np.int16).reshape(5, 3, 4) * (year - 1990)


EXPECTED = {
    "units": "file 7 of 10 ({}:/tas) has other CF attributes (units: ['degC']) than the first "
    "file ({})",
    "time": "file 7 of 10 of the input '{}': {}:/time (the record coordinate): cannot decode "
    "units 'days since the flood' (calendar 'noleap'): ",
    "lat": "file 7 of 10 ({}:/tas) has other values of the coordinate 'lat' than the first "
    "file ({})",
    "overlap": "file 7 of 10 ({}:/time) starts at 1996-01-01 00:00:00, not after "
    "1996-01-05 00:00:00, the last time of file 6 ({}): times must increase across the files "
    "(a duplicate or overlapping file?)",
}


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("kind", list(EXPECTED))
def test_a_bad_seventh_file_is_refused_alike_on_any_rank_count(shared_dir, kind):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    folder = shared_dir / kind
    paths = [folder / f"tas_{1991 + i}.nc" for i in range(10)]
    if comm.rank == 0:
        folder.mkdir()
        for index, path in enumerate(paths):
            write_year(path, 1991 + index, kind if index == BAD else None)
    comm.Barrier()
    spec = f"{folder}/tas_*.nc:/tas"
    out = shared_dir / f"{kind}.h5"
    message = refused_here("stats", spec, comm=comm, output=str(out), over="time")
    assert comm.allgather(message) == [message] * comm.size
    first, bad, before = paths[0], paths[BAD], paths[BAD - 1]
    expected = {
        "units": EXPECTED["units"].format(bad, first),
        "time": EXPECTED["time"].format(spec, bad),
        "lat": EXPECTED["lat"].format(bad, first),
        "overlap": EXPECTED["overlap"].format(bad, before),
    }[kind]
    if kind == "time":  # then cftime's own words
        assert message.startswith(expected), message
    else:
        assert message == expected
    assert not out.exists()
