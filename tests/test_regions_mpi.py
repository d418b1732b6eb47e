"""--regions and --mask give one rank's bits at any rank count (run under mpiexec -n 2 or 3)."""

import numpy as np
import pytest
from mpi4py import MPI
from ncdata import write_grid, write_raster

import hpcapp

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(120)]


def inputs(shared_dir):
    """The input, a region raster with flags and missing cells, a mask (written by rank 0)."""
    comm = MPI.COMM_WORLD
    path = shared_dir / "in.nc"
    if comm.rank == 0 and not path.exists():
        write_grid(path, shape=(11, 6, 10), missing=0.2)
        rng = np.random.default_rng(2)
        ids = np.ma.masked_array(rng.integers(1, 5, (6, 10)), rng.random((6, 10)) < 0.2)
        write_raster(shared_dir / "r.nc", path, ids, flag_values=np.arange(1, 5),
                     flag_meanings="a b c d")  # fmt: skip
        write_raster(shared_dir / "m.nc", path, (rng.random((6, 10)) < 0.7).astype("i1"))
    comm.Barrier()
    return f"{path}:/tas", f"{shared_dir}/r.nc:/region", f"{shared_dir}/m.nc:/region"


@pytest.mark.parametrize(
    ("over", "regional", "masked", "weights"),
    [
        ("time,lat,lon", True, False, None),
        ("lat,lon", True, False, None),
        ("time,lat,lon", True, True, "area"),
        ("lat,lon", True, True, "area"),
        ("time,lat,lon", False, True, None),
        ("lat,lon", False, True, "area"),
        ("time,lat", False, True, None),  # the mask also covers lon, which is kept
    ],
)
def test_bits_do_not_depend_on_ranks(shared_dir, over, regional, masked, weights):
    spec, regions, mask = inputs(shared_dir)
    options = {
        "over": over,
        "chunk_rows": 2,
        "regions": regions if regional else None,
        "mask": mask if masked else None,
        "weights": weights,
    }
    world = hpcapp.run("stats", spec, root=None, **options)
    alone = hpcapp.run("stats", spec, comm=MPI.COMM_SELF, **options)
    assert world.keys() == alone.keys() >= {"mean", "std", "count"}
    assert ("region" in world) == regional
    for key in alone:
        assert np.asarray(world[key]).tobytes() == np.asarray(alone[key]).tobytes(), key
