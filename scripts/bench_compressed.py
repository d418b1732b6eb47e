"""Compressed inputs: hpcapp ``stats`` at 1 and 2 ranks against one h5py process reading it all.

    python scripts/bench_compressed.py --values 134217728 --ranks 1,2

Makes one float64 dataset (``--values`` values, 8 columns, ``hpcapp generate``, uniform) stored
three ways: contiguous, chunked gzip + shuffle, and (if ``hdf5plugin`` is installed) chunked
Blosc-zstd + shuffle; HDF5 chunks of ``--hdf5-chunk-rows`` rows. Each file is read once first,
so all runs read from the page cache. Then, alternating, ``--repeat`` times each:

- h5py, one fresh process: ``read_direct`` of the whole dataset in slabs of whole HDF5 chunks
  (about 4 MiB; the I/O a single-process script does, with no computing at all; Blosc on one
  thread, as in each rank);
- ``hpcapp run stats`` at each rank count (default chunk rows: whole HDF5 chunks; the compiled
  loops and bytecode are built first with ``python -m hpcapp.kernels._fused``).

Speeds are MB/s of uncompressed input, three ways: *wall*, each process timed from outside
(start-up included, h5py's import too); *own clock*, h5py's read loop against hpcapp's slowest
rank's read + compute + reduce (from the output's timing table); *read*, h5py's read loop
against hpcapp's slowest rank's read phase alone (decompression scaling with ranks). Ratios
are hpcapp at the highest rank count over h5py.
Temporary files are deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py

REPO = Path(__file__).resolve().parent.parent
COLS = 8


def mpiexec() -> str:
    """Return the mpiexec beside this Python, else ``mpiexec``."""
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else "mpiexec"


def environment() -> dict[str, str]:
    """Return the environment of the runs: this tree, one thread, HDF5 finding the plugins."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "BLOSC_NTHREADS": "1"}
    try:
        import hdf5plugin

        env["HDF5_PLUGIN_PATH"] = hdf5plugin.PLUGIN_PATH
    except ImportError:
        pass
    return env


def run(ranks: int, args: list[str]) -> float:
    """Run ``hpcapp ARGS`` on ``ranks`` ranks and return its wall seconds."""
    command = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "hpcapp", *args]
    start = time.perf_counter()
    done = subprocess.run(command, env=environment(), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return time.perf_counter() - start


def make_copies(source: Path, directory: Path, chunk_rows: int) -> dict[str, Path]:
    """Copy the contiguous dataset into chunked, compressed files; return name -> file."""
    filters: dict[str, dict] = {"gzip+shuffle": {"compression": "gzip", "shuffle": True}}
    try:
        import hdf5plugin

        filters["blosc-zstd"] = dict(hdf5plugin.Blosc(cname="zstd", clevel=5, shuffle=1))
    except ImportError:
        print("hdf5plugin is not installed: no Blosc-zstd case")
    files = {"contiguous": source}
    with h5py.File(source, "r") as h5:
        x = h5["x"]
        for name, options in filters.items():
            path = directory / f"{name}.h5"
            with h5py.File(path, "w") as out:
                y = out.create_dataset("x", x.shape, x.dtype, chunks=(chunk_rows, COLS), **options)
                for start in range(0, x.shape[0], 16 * chunk_rows):
                    y[start : start + 16 * chunk_rows] = x[start : start + 16 * chunk_rows]
            files[name] = path
    return files


H5PY_READ = """
import sys, time
import h5py, numpy as np
start = time.perf_counter()
with h5py.File(sys.argv[1], "r") as h5:
    x = h5["x"]
    step = x.chunks[0] if x.chunks else 1 << 16
    step *= max(1, (4 << 20) // (step * x.dtype.itemsize * x.shape[1]))
    buffer = np.empty((step, x.shape[1]), x.dtype)
    for first in range(0, x.shape[0], step):
        n = min(step, x.shape[0] - first)
        x.read_direct(buffer[:n], np.s_[first : first + n])
print(time.perf_counter() - start)
"""


def h5py_read(path: Path) -> tuple[float, float]:
    """Read the whole dataset in one fresh process, in slabs of whole HDF5 chunks.

    Return its wall seconds (start-up included) and its read loop's seconds.
    """
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", H5PY_READ, str(path)], env=environment(), capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    return time.perf_counter() - start, float(done.stdout)


def rank_seconds(out: Path, phases: tuple[str, ...]) -> float:
    """Return the slowest rank's seconds in ``phases``, from the job's timing table."""
    with h5py.File(out, "r") as h5:
        table = h5["timing"][()]
        columns = list(h5["timing"].attrs["columns"])
    keep = [columns.index(name) for name in phases]
    return float(table[:, keep].sum(axis=1).max())


def main() -> None:
    """Measure, print a table and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=2**27)
    parser.add_argument("--hdf5-chunk-rows", type=int, default=1 << 15)
    parser.add_argument("--ranks", default="1,2")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--schedule", default="static", choices=("static", "dynamic"))
    parser.add_argument("--dir", type=Path, help="scratch directory (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=Path("bench-compressed.json"))
    options = parser.parse_args()
    os.environ["BLOSC_NTHREADS"] = "1"  # one thread per process, for h5py as for each rank
    ranks_list = [int(r) for r in options.ranks.split(",")]
    rows = options.values // COLS
    n_bytes = rows * COLS * 8
    scratch = Path(tempfile.mkdtemp(prefix="bench-compressed-", dir=options.dir))
    results: list[dict] = []
    try:
        # Compile (or load) the stats loops once: no run below pays numba's compile time.
        subprocess.run(
            [sys.executable, "-m", "hpcapp.kernels._fused"], env=environment(), check=True
        )
        source = scratch / "contiguous.h5"
        run(2, ["generate", f"{source}:/x", "--rows", str(rows), "--cols", str(COLS)])
        files = make_copies(source, scratch, options.hdf5_chunk_rows)
        for name, path in files.items():
            h5py_read(path)  # into the page cache
            samples: dict[str, list[float]] = {"h5py wall": [], "h5py": []}
            for _ in range(options.repeat):
                wall, read = h5py_read(path)
                samples["h5py wall"].append(wall)
                samples["h5py"].append(read)
                for ranks in ranks_list:
                    out = scratch / "out.h5"
                    args = ["run", "stats", f"{path}:/x", "-o", str(out), "-q", "--overwrite"]
                    args += ["--schedule", options.schedule]
                    samples.setdefault(f"wall@{ranks}", []).append(run(ranks, args))
                    inner = rank_seconds(out, ("read", "compute", "reduce"))
                    samples.setdefault(f"inner@{ranks}", []).append(inner)
                    samples.setdefault(f"read@{ranks}", []).append(rank_seconds(out, ("read",)))
                    out.unlink()
            medians = {key: statistics.median(values) for key, values in samples.items()}
            mbps = {key: n_bytes / seconds / 1e6 for key, seconds in medians.items()}
            top = max(ranks_list)
            results.append(
                {
                    "storage": name,
                    "file_mb": path.stat().st_size / 1e6,
                    "seconds": medians,
                    "mb_per_s": mbps,
                    "ratio_inner": mbps[f"inner@{top}"] / mbps["h5py"],
                    "ratio_wall": mbps[f"wall@{top}"] / mbps["h5py wall"],
                    "ratio_read": mbps[f"read@{top}"] / mbps["h5py"],
                    "samples": samples,
                }
            )
    finally:
        for path in scratch.iterdir():
            path.unlink()
        scratch.rmdir()
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"{n_bytes / 2**30:.2f} GiB float64 x {COLS}, page cache; load at the end: {load}")
    print(f"schedule {options.schedule}; MB/s as own clock / wall / read phase")
    header = " | ".join(f"hpcapp@{r}" for r in ranks_list)
    top = max(ranks_list)
    print(f"| storage | file MB | h5py 1 process | {header} | ratio @{top} / h5py |")
    print("| --- " * (4 + len(ranks_list)) + "|")
    for row in results:
        mbps = row["mb_per_s"]
        cells = " | ".join(
            f"{mbps[f'inner@{r}']:.0f} / {mbps[f'wall@{r}']:.0f} / {mbps[f'read@{r}']:.0f}"
            for r in ranks_list
        )
        print(
            f"| {row['storage']} | {row['file_mb']:.0f} | {mbps['h5py']:.0f} / "
            f"{mbps['h5py wall']:.0f} / {mbps['h5py']:.0f} | {cells} | "
            f"{row['ratio_inner']:.2f}x / {row['ratio_wall']:.2f}x / {row['ratio_read']:.2f}x |"
        )
    options.json.write_text(json.dumps({"bytes": n_bytes, "results": results}, indent=1))


if __name__ == "__main__":
    main()
