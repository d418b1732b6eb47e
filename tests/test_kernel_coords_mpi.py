"""Kernels declaring coords=True give one rank's bits at any rank count (mpiexec -n 2 or 3)."""

import numpy as np
import pytest
from mpi4py import MPI
from ncdata import write_grid
from sample_kernels import COORDS_KERNELS

import hpcapp

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(120)]


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("coslat", {"sel": "lat=-60:60"}),
        ("weighted", {"weights": "area"}),
        ("january", {}),
        ("january", {"schedule": "dynamic"}),
    ],
)
def test_coords_bits_do_not_depend_on_ranks(shared_dir, name, options):
    comm = MPI.COMM_WORLD
    path, kernels = shared_dir / "in.nc", shared_dir / "coords_kernels.py"
    if comm.rank == 0 and not path.exists():
        write_grid(path, shape=(45, 6, 10), missing=0.2)
        kernels.write_text(COORDS_KERNELS)
    comm.Barrier()
    spec = f"{kernels}:{name}"
    world = hpcapp.run(spec, f"{path}:/tas", root=None, chunk_rows=4, **options)
    alone = hpcapp.run(spec, f"{path}:/tas", comm=MPI.COMM_SELF, chunk_rows=4, **options)
    assert world.keys() == alone.keys()
    for key in alone:
        assert np.asarray(world[key]).tobytes() == np.asarray(alone[key]).tobytes(), key
    if name == "january":  # every rank's chunks had their own rows
        np.testing.assert_array_equal(world["row"], np.arange(45))
