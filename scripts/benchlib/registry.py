"""Every benchmark, by name: what it measures, its module, and the arguments of a smoke run."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import shutil
from types import ModuleType


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One registered benchmark.

    Its module (in this package, imported only when it runs: ``list`` stays light) defines
    ``add_arguments(parser)``, ``run(options, runner) -> dict`` (the JSON-ready result) and
    ``table(result) -> str`` (the markdown table the README shows).
    """

    name: str
    summary: str
    module: str
    tiny: str = ""  # options of a smoke run that ends in seconds (``--tiny``)
    needs: tuple[str, ...] = ()  # Python modules it cannot run without
    programs: tuple[str, ...] = ()  # programs it compares with when they are installed

    def load(self) -> ModuleType:
        """Import and return the benchmark's module."""
        return importlib.import_module(f"{__package__}.{self.module}")

    def missing(self) -> list[str]:
        """Return the modules it needs that are not installed."""
        return [name for name in self.needs if importlib.util.find_spec(name) is None]

    def absent_programs(self) -> list[str]:
        """Return the optional programs not on PATH (their contenders are skipped)."""
        return [name for name in self.programs if shutil.which(name) is None]


BENCHMARKS = (
    Benchmark(
        "peers",
        "hpcapp stats against raw h5py read, hand-written mpi4py, Dask, Pool; trivial-kernel "
        "overhead; montecarlo scaling; peak RSS; start-up (issue 5's targets)",
        "peers",
        "--size-gib 0.004 --ranks 2 --repeat 1 --mc-samples 2100000 --rss-gib 0.002,0.008",
    ),
    Benchmark(
        "nd-speed",
        "per-cell mean/std/min/max over time of a (T, lat, lon) field, plain and gzip: hpcapp "
        "against xarray + Dask and numpy",
        "nd_speed",
        "--steps 8 --lat 4 --lon 5 --ranks 1,2 --repeat 1 --time-chunk 4",
        needs=("dask", "xarray", "h5netcdf", "netCDF4"),
    ),
    Benchmark(
        "nd-memory",
        "peak RSS per rank of a per-cell stats result, next to hpcapp's memory estimate",
        "nd_memory",
        "--steps 6 --lat 5 --lon 7 --bins 4 --chunk-rows 2",
        needs=("netCDF4",),
    ),
    Benchmark(
        "groupmem",
        "day-of-year climatology (--group-by time.dayofyear): peak RSS, seconds and the "
        "memory estimate of hpcapp, against xarray's groupby mean and CDO ydaymean",
        "groupmem",
        "--years 2 --lat 4 --lon 5 --ranks 1,2 --chunk-rows 64",
        needs=("xarray", "netCDF4"),
        programs=("cdo",),
    ),
    Benchmark(
        "files-speed",
        "mean over time of many netCDF files: hpcapp against xarray open_mfdataset + Dask and "
        "NCO ncra",
        "files_speed",
        "--files 4 --steps 2 --lat 3 --lon 4 --ranks 1,2",
        needs=("dask", "xarray", "h5netcdf", "netCDF4"),
        programs=("ncra",),
    ),
    Benchmark(
        "fldmean",
        "area-weighted global-mean series (one value per day) of a packed daily field: hpcapp "
        "--weights area against xarray weighted + Dask and CDO fldmean",
        "fldmean",
        "--steps 20 --lat 6 --lon 12 --ranks 1,2 --repeat 1 --time-chunk 8",
        needs=("dask", "xarray", "netCDF4"),
        programs=("cdo",),
    ),
    Benchmark(
        "files-startup",
        "start-up of a stats job over many small HDF5 files against one file of the same rows",
        "files_startup",
        "--files 20 --ranks 1,2",
    ),
    Benchmark(
        "compressed",
        "stats on contiguous, gzip and Blosc-zstd inputs against one h5py process reading it",
        "compressed",
        "--values 65536 --hdf5-chunk-rows 1024 --ranks 1,2 --repeat 1",
    ),
    Benchmark(
        "rows",
        "per-row output write speed (wall, + fsync, no-rows), optionally against an older tree",
        "rows",
        "--gib 0.002 --ranks 1,2 --repeat 1",
    ),
    Benchmark(
        "schedule",
        "static against dynamic schedule on skewed, uniform and first-slow sleeping chunks",
        "schedule",
        "--unit 0.001 --repeat 1 --cases skewed",
    ),
    Benchmark(
        "fetch",
        "latency of asking rank 0 for work while it is busy: block-server thread against an "
        "RMA counter; the thread's cost",
        "fetch",
        "--ranks 2 --busy 0.2 --asks 5 --repeat 1",
    ),
    Benchmark(
        "reduce",
        "hpcapp's fixed-tree reduction of stats partials alone: seconds, messages, bytes",
        "reduce",
        "--ranks 1,2 --chunks 1000 --repeat 1",
    ),
    Benchmark(
        "startup",
        "per-rank import time and memory (RSS, PSS, USS), with and without numba",
        "startup",
        "--ranks 1,2",
    ),
    Benchmark(
        "exit",
        "wall time of a job outside its ranks' clocks: launch, MPI finalize, interpreter exit",
        "exit",
        "--ranks 1,2 --repeat 1",
    ),
    Benchmark(
        "stats-pass",
        "the compiled stats loop without a histogram: one-pass lanes against the three-pass "
        "loop, ns per value, same bits; the hand numba fold of peers, and the 2-D peers "
        "chunk phase by phase (read, loop, kernel call, merge) against it",
        "stats_pass",
        "--repeat 1 --phase-rows 16384",
    ),
    Benchmark(
        "cf-files",
        "ten yearly packed netCDF files: hpcapp's time mean and monthly climatology at 1 and 2 "
        "ranks against NCO ncra and CDO timmean/ymonmean, start-up and read phases",
        "cf_files",
        "--years 2 --lat 6 --lon 8 --repeat 1",
        needs=("netCDF4", "xarray", "dask"),
        programs=("ncra", "cdo"),
    ),
    Benchmark(
        "quantile",
        "per-cell p10/p50/p90 over time of a packed daily field: hpcapp's transpose against its "
        "own stats, xarray + Dask quantile after rechunk and CDO timpctl; peak memory per rank",
        "quantile",
        "--steps 40 --lat 6 --lon 7 --ranks 2 --repeat 1 --time-chunk 8",
        needs=("dask", "xarray", "h5netcdf", "netCDF4"),
        programs=("cdo",),
    ),
    Benchmark(
        "quantile-cells",
        "quantile's per-cell selection on one core: packed int16 selected as stored against "
        "numpy's quantile on the decoded float64, ns per value, same bits",
        "quantile_cells",
        "--records 40 --cells 50 --repeat 1",
    ),
    Benchmark(
        "versions",
        "this tree against an older checkout (--before DIR) on four representative jobs, run "
        "alternately: median wall seconds, after/before, same result bytes",
        "versions",
        "--rows 20000 --steps 20 --lat 4 --lon 5 --samples 100000 --repeat 1",
        needs=("netCDF4",),
    ),
    Benchmark(
        "resample",
        "monthly means (--resample time=1M) of a daily packed (time, lat, lon) field: hpcapp "
        "against xarray resample + Dask and CDO monmean",
        "resample",
        "--years 1 --lat 4 --lon 5 --ranks 1,2 --repeat 1 --time-chunk 40",
        needs=("dask", "xarray", "netCDF4"),
        programs=("cdo",),
    ),
)
BENCHMARKS += (
    Benchmark(
        "rolling",
        "31-day centred running mean of a 10-year daily 180 x 360 packed field: hpcapp against "
        "xarray + Dask and CDO runmean",
        "rolling",
        "--steps 40 --lat 4 --lon 5 --window 5 --ranks 1,2 --time-chunk 10",
        needs=("dask", "xarray", "h5netcdf", "netCDF4"),
        programs=("cdo",),
    ),
    Benchmark(
        "rolling-phases",
        "one chunk of the rolling mean, phase by phase: read, decode, the loop across records "
        "against strips of cells (decoding in the loop), pwrite, fsync; same bits",
        "rolling_phases",
        "--chunk-rows 40 --lat 6 --lon 8 --repeat 1",
    ),
)
REGISTRY = {bench.name: bench for bench in BENCHMARKS}
