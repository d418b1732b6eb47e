"""trend, rolling and anomaly give one rank's bits at any rank count (mpiexec -n 2 or 3)."""

import numpy as np
import pytest
from mpi4py import MPI
from ncdata import write_grid

import hpcapp

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(120)]

JOBS = {
    "trend": {},
    "rolling": {"params": {"window": 5, "stat": "std", "center": True, "min_periods": 2}},
    "rolling-min": {"params": {"window": 4, "stat": "min"}, "schedule": "dynamic"},
    "rolling-mean": {"params": {"window": 7, "stat": "mean", "center": True}},  # running sums
    "anomaly": {"params": {"standardize": True}},
}


@pytest.mark.parametrize("job", sorted(JOBS))
def test_series_bits_do_not_depend_on_ranks(shared_dir, job):
    comm = MPI.COMM_WORLD
    path, clim = shared_dir / "in.nc", shared_dir / "clim.nc"
    if comm.rank == 0 and not clim.exists():
        write_grid(path, shape=(90, 4, 5), bounds=False, missing=0.2)
        hpcapp.run("stats", f"{path}:/tas", group_by="time.month", output=str(clim),
                   comm=MPI.COMM_SELF)  # fmt: skip
    comm.Barrier()
    options = dict(JOBS[job])
    options["params"] = dict(options.get("params", {}))
    if job == "anomaly":
        options["params"]["climatology"] = f"{clim}:/tas_mean"
    kernel = job.split("-")[0]
    world = hpcapp.run(kernel, f"{path}:/tas", root=None, chunk_rows=4, **options)
    alone = hpcapp.run(kernel, f"{path}:/tas", comm=MPI.COMM_SELF, chunk_rows=4, **options)
    assert world.keys() == alone.keys() and alone
    for key in alone:
        assert np.asarray(world[key]).tobytes() == np.asarray(alone[key]).tobytes(), key
        assert np.isfinite(np.asarray(alone[key], np.float64)).any(), key


def test_one_job_anomaly_bits_do_not_depend_on_ranks(shared_dir):
    comm = MPI.COMM_WORLD
    path = shared_dir / "one.nc"
    if comm.rank == 0 and not path.exists():
        write_grid(path, shape=(90, 4, 5), bounds=False, missing=0.2)
    comm.Barrier()
    options = {"group_by": "time.month", "chunk_rows": 4, "params": {"standardize": True}}
    world = hpcapp.run("anomaly", f"{path}:/tas", root=None, output=str(shared_dir / "w.nc"),
                       **options)  # fmt: skip
    alone = None
    if comm.rank == 0:
        alone = hpcapp.run("anomaly", f"{path}:/tas", comm=MPI.COMM_SELF,
                           output=str(shared_dir / "a.nc"), **options)  # fmt: skip
    alone = comm.bcast(alone, root=0)
    assert world["anomaly"].tobytes() == alone["anomaly"].tobytes()
