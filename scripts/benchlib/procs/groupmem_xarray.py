"""xarray contender of ``groupmem``: the day-of-year mean of a netCDF variable, then peak RSS.

    python -m scripts.benchlib.procs.groupmem_xarray FILE.nc:/tas OUT.nc

Opens FILE with ``xarray.open_dataset`` (decoded as xarray decodes it, no Dask), computes
``groupby("time.dayofyear").mean()`` and writes it to OUT; prints ``BENCH_RSS rank=0
maxrss_kib=K`` on stderr, as ``procs/rss`` does.
"""

from __future__ import annotations

import resource
import sys

import xarray as xr


def run() -> int:
    """Compute and write the climatology, then report this process's peak RSS."""
    spec, out = sys.argv[1], sys.argv[2]
    path, _, name = spec.rpartition(":")
    with xr.open_dataset(path) as ds:
        ds[name.lstrip("/")].groupby("time.dayofyear").mean().to_netcdf(out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"BENCH_RSS rank=0 maxrss_kib={peak}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run())
