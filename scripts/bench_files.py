"""Many-file benchmark: start-up over 10,000 small files, and the mean over time of 1,000 files.

    python scripts/bench_files.py startup DIR --files 10000 --ranks 1,2
    python scripts/bench_files.py speed DIR --files 1000 --ranks 1,2 --workers 2 --repeat 3

``startup`` writes DIR/small/f-NNNNN.h5 (a (4, 8) float64 dataset each), then runs
``hpcapp run stats 'DIR/small/*.h5:/x'`` under ``mpiexec -n R`` and reports the wall time and
hpcapp's own start-up column (process start to first chunk: imports, MPI, inspecting every file),
next to the same job on one file holding the same rows: the difference is what the files cost.

``speed`` writes DIR/day/f-NNNN.nc (netCDF-4, dims time/lat/lon with a CF time coordinate,
16 steps of 90 x 180 float32 each, ~1 MiB a file, ~1 GiB in all), then times the mean over time
per cell: hpcapp ``stats --over time`` (which also computes std, min, max, counts) under
``mpiexec -n R``; xarray ``open_mfdataset`` (``parallel`` False and True) with its fastest
combine options and ``.mean("time")`` on dask's threaded scheduler (``--workers`` threads);
and NCO's ``ncra`` reading the file list on stdin, if it is installed (Debian: apt install nco).
Every contender is a fresh process timed from outside; the best of ``--repeat`` runs is kept and
each mean is compared with hpcapp's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}

XARRAY = """
import sys
import numpy as np, xarray as xr, dask
pattern, workers, out, parallel = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
dask.config.set(scheduler="threads", num_workers=workers)  # opening the files too (parallel)
ds = xr.open_mfdataset(pattern, engine="h5netcdf", combine="nested", concat_dim="time",
                       parallel=parallel, data_vars="minimal", coords="minimal", compat="override")
mean = ds["t"].mean("time", dtype=np.float64)
np.save(out, mean.compute(scheduler="threads", num_workers=workers).values)
"""


def mpiexec() -> str:
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else "mpiexec"


def timed(argv: list[str], **kwargs) -> float:
    began = time.perf_counter()
    done = subprocess.run(argv, env=ENV, capture_output=True, text=True, **kwargs)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(argv)}\n{done.stderr[-2000:]}")
    return seconds


def hpcapp(spec: str, out: Path, ranks: int, *extra: str) -> list[str]:
    return [mpiexec(), "-n", str(ranks), sys.executable, "-m", "hpcapp", "run", "stats", spec,
            "-o", str(out), "--overwrite", "-q", *extra]  # fmt: skip


def startup_column(path: Path) -> float:
    import h5py

    with h5py.File(path, "r") as h5:
        columns = [c.decode() if isinstance(c, bytes) else c for c in h5["timing"].attrs["columns"]]
        return float(h5["timing"][:, columns.index("startup")].max())


def startup(args: argparse.Namespace) -> None:
    import h5py

    folder = Path(args.dir) / "small"
    folder.mkdir(parents=True, exist_ok=True)
    rows = np.arange(args.files * 4 * 8, dtype=np.float64).reshape(args.files * 4, 8)
    if len(list(folder.glob("f-*.h5"))) != args.files:
        began = time.perf_counter()
        for index in range(args.files):
            with h5py.File(folder / f"f-{index:05d}.h5", "w") as h5:
                h5["x"] = rows[4 * index : 4 * index + 4]
        print(f"wrote {args.files} files in {time.perf_counter() - began:.1f} s", flush=True)
    single = Path(args.dir) / "single.h5"
    with h5py.File(single, "w") as h5:
        h5["x"] = rows
    print(f"| ranks | {args.files} files: wall | start-up | one file: wall | start-up |")
    print("|---|---|---|---|---|")
    for ranks in args.ranks:
        out, base = Path(args.dir) / "many.h5", Path(args.dir) / "one.h5"
        wall = min(timed(hpcapp(f"{folder}/f-*.h5:/x", out, ranks)) for _ in range(args.repeat))
        first = startup_column(out)
        wall_one = min(timed(hpcapp(f"{single}:/x", base, ranks)) for _ in range(args.repeat))
        print(f"| {ranks} | {wall:.2f} s | {first:.2f} s | {wall_one:.2f} s | "
              f"{startup_column(base):.2f} s |", flush=True)  # fmt: skip


def write_days(folder: Path, files: int, steps: int, lat: int, lon: int) -> None:
    import netCDF4

    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("f-*.nc"))) == files:
        return
    rng = np.random.default_rng(11)
    began = time.perf_counter()
    for index in range(files):
        with netCDF4.Dataset(folder / f"f-{index:04d}.nc", "w") as ds:
            for name, size in (("time", None), ("lat", lat), ("lon", lon)):
                ds.createDimension(name, size)
            time_var = ds.createVariable("time", "f8", ("time",))
            time_var.units, time_var.calendar = "hours since 2000-01-01", "standard"
            time_var[:] = np.arange(index * steps, (index + 1) * steps, dtype=np.float64)
            for name, size in (("lat", lat), ("lon", lon)):
                ds.createVariable(name, "f8", (name,))[:] = np.linspace(-90, 90, size)
            var = ds.createVariable("t", "f4", ("time", "lat", "lon"), chunksizes=(steps, lat, lon))
            var.units = "K"
            block = 280 + 10 * rng.standard_normal((steps, lat, lon), dtype=np.float32)
            var[:] = np.round(block, 2)
    total = sum(p.stat().st_size for p in folder.glob("f-*.nc"))
    print(f"wrote {files} files, {total / 2**30:.2f} GiB, in {time.perf_counter() - began:.0f} s")


def speed(args: argparse.Namespace) -> None:
    import h5py

    folder = Path(args.dir) / "day"
    write_days(folder, args.files, args.steps, args.lat, args.lon)
    spec = f"{folder}/f-*.nc:/t"
    rows: list[tuple[str, float, str]] = []
    reference = None
    for ranks in args.ranks:
        out = Path(args.dir) / f"hpcapp{ranks}.h5"
        argv = hpcapp(spec, out, ranks, "--over", "time")
        seconds = min(timed(argv) for _ in range(args.repeat))
        with h5py.File(out, "r") as h5:
            mean = h5["result/mean"][()]
        reference = mean if reference is None else reference
        same = "bitwise = 1 rank" if np.array_equal(mean, reference) else "DIFFERS"
        rows.append((f"hpcapp, {ranks} rank(s)", seconds, same))
        print(rows[-1], flush=True)
    for parallel in (False, True):
        out = Path(args.dir) / "xarray.npy"
        argv = [sys.executable, "-c", XARRAY, f"{folder}/f-*.nc", str(args.workers), str(out)]
        seconds = min(timed([*argv, str(int(parallel))]) for _ in range(args.repeat))
        name = f"xarray open_mfdataset(parallel={parallel}) + dask ({args.workers} threads)"
        rows.append((name, seconds, _compare(np.load(out), reference)))
        print(rows[-1], flush=True)
    if shutil.which("ncra"):
        listing = "\n".join(str(p) for p in sorted(folder.glob("f-*.nc")))
        out = Path(args.dir) / "ncra.nc"
        argv = ["ncra", "-O", "-v", "t", "-o", str(out)]
        seconds = min(timed(argv, input=listing) for _ in range(args.repeat))
        with h5py.File(out, "r") as h5:
            rows.append(("NCO ncra (1 process, file list on stdin)", seconds,
                         _compare(h5["t"][0], reference)))  # fmt: skip
        print(rows[-1], flush=True)
    else:
        print("ncra not found: apt install nco to compare with it")
    best = {name: s for name, s, _ in rows}
    top = min(s for name, s in best.items() if name.startswith("hpcapp"))
    print("\n| contender | seconds | vs best hpcapp | mean |\n|---|---|---|---|")
    for name, seconds, note in rows:
        print(f"| {name} | {seconds:.2f} | {seconds / top:.2f}x | {note} |")


def _compare(mean: np.ndarray, reference: np.ndarray) -> str:
    error = float(np.max(np.abs(mean - reference) / np.abs(reference)))
    return f"max relative difference {error:.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("startup", "speed"):
        command = sub.add_parser(name)
        command.add_argument("dir")
        command.add_argument(
            "--ranks", type=lambda t: [int(x) for x in t.split(",")], default=[1, 2]
        )
        command.add_argument("--repeat", type=int, default=1)
    sub.choices["startup"].add_argument("--files", type=int, default=10_000)
    speed_parser = sub.choices["speed"]
    speed_parser.add_argument("--files", type=int, default=1000)
    speed_parser.add_argument("--steps", type=int, default=16)
    speed_parser.add_argument("--lat", type=int, default=90)
    speed_parser.add_argument("--lon", type=int, default=180)
    speed_parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    # The compiled loops and hpcapp's bytecode, once: no timed run compiles either.
    subprocess.run([sys.executable, "-m", "hpcapp.kernels._fused"], env=ENV, check=True)
    (startup if args.command == "startup" else speed)(args)


if __name__ == "__main__":
    main()
