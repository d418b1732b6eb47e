"""A series job that failed at N ranks resumes from its kept batches with one rank's bits."""

import numpy as np
import pytest
from helpers import root_attrs
from mpi4py import MPI
from ncdata import write_netcdf
from test_series_resume import SLOW_SERIES

import hpcapp
from hpcapp.errors import KernelError
from hpcapp.io import series_checkpoint

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(120)]
SMALL = {"memory_per_rank": "200.01MiB", "chunk_rows": 4}  # batches of 1 to 4 lat rows


def test_a_failed_series_job_resumes_with_one_ranks_bits(shared_dir, monkeypatch):
    comm = MPI.COMM_WORLD
    path, kernel = shared_dir / "in.nc", shared_dir / "slow.py"
    if comm.rank == 0:
        rng = np.random.default_rng(9)
        stored = rng.integers(-3000, 3000, size=(40, 12, 5)).astype(np.int16)
        stored[rng.random(stored.shape) < 0.2] = -32767
        stored[5, 7, 2] = 32000  # 600 K: fails the batch holding lat 7
        attrs = {"scale_factor": 0.01, "add_offset": 280.0, "units": "K"}
        write_netcdf(path, stored, attrs=attrs, fill_value=-32767)
        kernel.write_text(SLOW_SERIES)
    comm.Barrier()
    spec, name = f"{path}:/tas", f"{kernel}:slow"
    out, folder = shared_dir / "out.nc", shared_dir / "out.nc.checkpoint"
    monkeypatch.setenv("HPCAPP_TEST_DELAY", "0")
    monkeypatch.setenv("HPCAPP_TEST_FAIL_ABOVE", "500")
    with pytest.raises(KernelError, match="above the limit"):
        hpcapp.run(name, spec, output=str(out), root=None, **SMALL)
    monkeypatch.delenv("HPCAPP_TEST_FAIL_ABOVE")
    kept = [series_checkpoint.run_of(p) for p in series_checkpoint.finished_batches(str(folder))]
    assert kept and kept[-1][1] <= 7, kept  # the batches before lat 7's
    world = hpcapp.run(name, spec, output=str(out), resume=True, root=None, **SMALL)
    alone = None
    if comm.rank == 0:
        target = str(shared_dir / "alone.nc")
        alone = hpcapp.run(name, spec, output=target, comm=MPI.COMM_SELF, **SMALL)
    alone = comm.bcast(alone, root=0)
    assert world.keys() == alone.keys() == {"peak", "n"}
    for key in alone:
        assert np.asarray(world[key]).tobytes() == np.asarray(alone[key]).tobytes(), key
    attrs = root_attrs(out)
    assert attrs["resumed"] and attrs["n_ranks"] == comm.size
    read = 12 - sum(b - a for a, b in kept)
    assert attrs["series_bytes_read"] == read * 40 * 5 * 2
