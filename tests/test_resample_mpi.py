"""--resample gives one rank's bits at any rank count (run under mpiexec -n 2 or 3)."""

import numpy as np
import pytest
from mpi4py import MPI
from test_resample import write_daily

import hpcapp

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(120)]


@pytest.mark.parametrize("frequency", ["1M", "5D", "1Y"])
@pytest.mark.parametrize("schedule", ["static", "dynamic"])
def test_resampled_bits_do_not_depend_on_ranks(shared_dir, frequency, schedule):
    comm = MPI.COMM_WORLD
    path = shared_dir / "in.nc"
    if comm.rank == 0 and not path.exists():
        write_daily(path, "noleap", n=800, missing=(7, 500), hole=(100, 160))
    comm.Barrier()
    options = {"over": "time", "resample": f"time={frequency}", "chunk_rows": 9}
    world = hpcapp.run("stats", f"{path}:/tas", root=None, schedule=schedule, **options)
    alone = hpcapp.run("stats", f"{path}:/tas", comm=MPI.COMM_SELF, **options)
    assert world.keys() == alone.keys() >= {"mean", "count", "time", "time_bnds"}
    for key in alone:
        assert np.asarray(world[key]).tobytes() == np.asarray(alone[key]).tobytes(), key


def test_many_files_give_one_ranks_bits(shared_dir):
    comm = MPI.COMM_WORLD
    folder = shared_dir / "years"
    if comm.rank == 0:
        folder.mkdir()
        for index, year in enumerate((2001, 2002, 2003)):
            write_daily(folder / f"tas_{year}.nc", "standard", n=365, first=0.5,
                        units=f"hours since {year}-01-01", step=24.0, seed=index)  # fmt: skip
    comm.Barrier()
    spec = f"{folder}/tas_*.nc:/tas"
    options = {"over": "time,lat", "resample": "time=1M", "chunk_rows": 20}
    world = hpcapp.run("stats", spec, root=None, **options)
    alone = hpcapp.run("stats", spec, comm=MPI.COMM_SELF, **options)
    assert len(alone["time"]) == 36
    for key in alone:
        assert np.asarray(world[key]).tobytes() == np.asarray(alone[key]).tobytes(), key


def test_asking_for_the_mean_only_gives_one_ranks_bits(shared_dir):
    """``-p stats=mean`` (two partial parts) on 2+ ranks: one rank's bits."""
    comm = MPI.COMM_WORLD
    path = shared_dir / "mean.nc"
    if comm.rank == 0:
        write_daily(path, "standard", n=400, missing=(3,))
    comm.Barrier()
    options = {"over": "time", "resample": "time=1M", "chunk_rows": 11, "params": {"stats": "mean"}}
    world = hpcapp.run("stats", f"{path}:/tas", root=None, **options)
    alone = hpcapp.run("stats", f"{path}:/tas", comm=MPI.COMM_SELF, **options)
    assert "mean" in world and "std" not in world
    for key in alone:
        assert np.asarray(world[key]).tobytes() == np.asarray(alone[key]).tobytes(), key
