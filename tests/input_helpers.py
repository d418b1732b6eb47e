"""Helpers of the input tests: run ``stats`` and check its numbers, or its refusal.

Both run the command line in this process (one rank), unless an environment is given: then
under mpiexec, since HDF5 and Python read some variables only when a process starts.
"""

import numpy as np
from helpers import cli_here, read_results, run_cli


def stats(spec, out, n_ranks=1, chunk_rows=None, env=None, extra=()):
    """Run ``stats`` and return its results, failing the test if it did not exit 0.

    ``n_ranks`` counts only under mpiexec (with ``env``): reading an input is each rank's own
    business, and the ranks' agreement is tested by the MPI tests.
    """
    args = ["run", "stats", spec, "-o", str(out), "-q", *extra]
    if chunk_rows is not None:
        args += ["--chunk-rows", str(chunk_rows)]
    done = cli_here(args) if env is None else run_cli(args, n_ranks, env=env)
    assert done.returncode == 0, done.stderr
    return read_results(out)


def assert_matches_numpy(got, data):
    columns = data.reshape(len(data), -1).astype(np.float64)
    np.testing.assert_array_equal(np.atleast_1d(got["count"]), np.sum(~np.isnan(columns), 0))
    np.testing.assert_allclose(np.atleast_1d(got["mean"]), np.nanmean(columns, 0), rtol=1e-12)
    np.testing.assert_allclose(np.atleast_1d(got["var"]), np.nanvar(columns, 0), rtol=1e-9)
    np.testing.assert_array_equal(np.atleast_1d(got["min"]), np.nanmin(columns, 0))
    np.testing.assert_array_equal(np.atleast_1d(got["max"]), np.nanmax(columns, 0))


def bits(results):
    return {key: np.asarray(value).tobytes() for key, value in results.items()}


def refused(spec, *fragments, n_ranks=1, env=None, tmp_path=None, extra=()):
    """Run ``stats`` on a bad input: exit 2, one error line holding every fragment."""
    out = tmp_path / "refused.h5"
    args = ["run", "stats", spec, "-o", str(out), *extra]
    done = cli_here(args) if env is None else run_cli(args, n_ranks, env=env)
    assert done.returncode == 2, (spec, done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("hpcapp: error: "), (spec, done.stderr)
    for fragment in fragments:
        assert fragment in lines[0], (spec, fragment, lines[0])
    assert not out.exists()
    return lines[0]
