"""Run the hpcapp CLI in this process, then report this rank's peak RSS (``peers``, ``nd-memory``).

    mpiexec -n N python -m scripts.benchlib.procs.rss run stats FILE.h5:/x -o OUT.h5 --overwrite

Every rank prints one line ``BENCH_RSS rank=R maxrss_kib=K`` on stderr after the job, with
``ru_maxrss`` of the process (KiB on Linux); the exit code is hpcapp's.
"""

from __future__ import annotations

import resource
import sys

from hpcapp.__main__ import main, prepare_process


def run() -> int:
    """Run ``hpcapp ARGS`` and print this rank's peak resident set size."""
    code = main(sys.argv[1:], startup=prepare_process())  # set up as the console script does
    from mpi4py import MPI  # already imported and initialised by the job above

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"BENCH_RSS rank={MPI.COMM_WORLD.Get_rank()} maxrss_kib={peak}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(run())
