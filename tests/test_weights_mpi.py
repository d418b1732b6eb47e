"""--weights gives one rank's bits at any rank count (run under mpiexec -n 2 or 3)."""

import numpy as np
import pytest
from mpi4py import MPI
from ncdata import write_grid

import hpcapp

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(120)]


@pytest.mark.parametrize("over", ["time,lat,lon", "lat,lon", "time,lat"])
@pytest.mark.parametrize(("measures", "packed"), [(False, False), (True, False), (True, True)])
def test_weighted_bits_do_not_depend_on_ranks(shared_dir, over, measures, packed):
    comm = MPI.COMM_WORLD
    path = shared_dir / f"in-{measures}-{packed}.nc"
    if comm.rank == 0 and not path.exists():
        write_grid(path, shape=(11, 6, 10), measures=measures, missing=0.2, packed=packed)
    comm.Barrier()
    options = {"over": over, "weights": "area", "chunk_rows": 2}
    world = hpcapp.run("stats", f"{path}:/tas", root=None, **options)
    alone = hpcapp.run("stats", f"{path}:/tas", comm=MPI.COMM_SELF, **options)
    assert world.keys() == alone.keys() >= {"mean", "var", "std", "sum", "sum_of_weights"}
    for key in alone:
        assert np.asarray(world[key]).tobytes() == np.asarray(alone[key]).tobytes(), key
