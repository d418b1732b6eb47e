"""Compressed inputs: hpcapp ``stats`` at 1 and 2 ranks against one h5py process reading it all.

Makes one float64 dataset (``--values`` values, 8 columns, ``hpcapp generate``, uniform) stored
three ways: contiguous, chunked gzip + shuffle, and (if ``hdf5plugin`` is installed) chunked
Blosc-zstd + shuffle; HDF5 chunks of ``--hdf5-chunk-rows`` rows. Each file is read once first,
so all runs read from the page cache. Then, alternating, ``--repeat`` times each:

- h5py, one fresh process: ``read_direct`` of the whole dataset in slabs of whole HDF5 chunks
  (about 4 MiB; the I/O a single-process script does, with no computing at all; Blosc on one
  thread, as in each rank);
- ``hpcapp run stats`` at each rank count (default chunk rows: whole HDF5 chunks).

Speeds are MB/s of uncompressed input, three ways: *wall*, each process timed from outside
(start-up included, h5py's import too); *own clock*, h5py's read loop against hpcapp's slowest
rank's read + compute + reduce (from the output's timing table); *read*, h5py's read loop
against hpcapp's slowest rank's read phase alone (decompression scaling with ranks). Ratios
are hpcapp at the highest rank count over h5py. Temporary files are deleted at the end.

    python scripts/bench.py compressed --values 134217728 --ranks 1,2 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from .harness import Runner, int_list, loadavg, markdown, rank_seconds, say

COLS = 8


def make_copies(source: Path, directory: Path, chunk_rows: int) -> dict[str, Path]:
    """Copy the contiguous dataset into chunked, compressed files; return name -> file."""
    import h5py

    filters: dict[str, dict] = {"gzip+shuffle": {"compression": "gzip", "shuffle": True}}
    try:
        import hdf5plugin

        filters["blosc-zstd"] = dict(hdf5plugin.Blosc(cname="zstd", clevel=5, shuffle=1))
    except ImportError:
        say("hdf5plugin is not installed: no Blosc-zstd case")
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


def h5py_read(runner: Runner, path: Path) -> tuple[float, float]:
    """Read the whole dataset in one fresh process, in slabs of whole HDF5 chunks.

    Return its wall seconds (start-up included) and its read loop's seconds.
    """
    done = runner.run([runner.python, "-c", H5PY_READ, str(path)])
    return done.wall, float(done.stdout)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""
    parser.add_argument("--values", type=int, default=2**27)
    parser.add_argument("--hdf5-chunk-rows", type=int, default=1 << 15)
    parser.add_argument("--ranks", type=int_list, default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--schedule", default="static", choices=("static", "dynamic"))
    parser.add_argument("--dir", type=Path, help="scratch directory (default: a temporary one)")


def plugin_env() -> dict[str, str]:
    """Return one Blosc thread per process, and where HDF5 finds hdf5plugin's filters."""
    env = {"BLOSC_NTHREADS": "1"}
    try:
        import hdf5plugin

        env["HDF5_PLUGIN_PATH"] = hdf5plugin.PLUGIN_PATH
    except ImportError:
        pass
    return env


def measure(runner: Runner, options: argparse.Namespace, path: Path, scratch_dir: Path) -> dict:
    """Return the samples of h5py's read and of hpcapp at each rank count on one file."""
    h5py_read(runner, path)  # into the page cache
    samples: dict[str, list[float]] = {"h5py wall": [], "h5py": []}
    for _ in range(options.repeat):
        wall, read = h5py_read(runner, path)
        samples["h5py wall"].append(wall)
        samples["h5py"].append(read)
        for ranks in options.ranks:
            out = scratch_dir / "out.h5"
            args = ["run", "stats", f"{path}:/x", "-o", str(out), "-q", "--overwrite"]
            args += ["--schedule", options.schedule]
            samples.setdefault(f"wall@{ranks}", []).append(
                runner.timed(runner.hpcapp(ranks, *args))
            )
            inner = rank_seconds(out, ("read", "compute", "reduce"))
            samples.setdefault(f"inner@{ranks}", []).append(inner)
            samples.setdefault(f"read@{ranks}", []).append(rank_seconds(out, ("read",)))
            out.unlink()
    return samples


def run(options: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    """Measure every storage and return the MB/s and ratios."""
    runner.env.update(plugin_env())
    os.environ["BLOSC_NTHREADS"] = "1"  # the copies made in this process too
    rows = options.values // COLS
    n_bytes = rows * COLS * 8
    top = max(options.ranks)
    results: list[dict] = []
    runner.precompile()
    with tempfile.TemporaryDirectory(prefix="bench-compressed-", dir=options.dir) as name:
        tmp = Path(name)
        source = tmp / "contiguous.h5"
        runner.run(
            runner.hpcapp(2, "generate", f"{source}:/x", "--rows", str(rows), "--cols", str(COLS))
        )
        for name, path in make_copies(source, tmp, options.hdf5_chunk_rows).items():
            samples = measure(runner, options, path, tmp)
            medians = {key: statistics.median(values) for key, values in samples.items()}
            mbps = {key: n_bytes / seconds / 1e6 for key, seconds in medians.items()}
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
            say(f"compressed: {name}: {mbps}")
    return {
        "bytes": n_bytes,
        "ranks": options.ranks,
        "schedule": options.schedule,
        "loadavg_at_end": loadavg(),
        "results": results,
    }


def table(result: dict[str, Any]) -> str:
    """Return the README's table: MB/s as own clock / wall / read phase, and the ratios."""
    ranks = result["ranks"]
    top = max(ranks)
    headers = ["storage", "file MB", "h5py 1 process", *(f"hpcapp@{r}" for r in ranks)]
    headers.append(f"ratio @{top} / h5py")
    cells = []
    for row in result["results"]:
        mbps = row["mb_per_s"]
        cells.append(
            [
                row["storage"],
                f"{row['file_mb']:.0f}",
                f"{mbps['h5py']:.0f} / {mbps['h5py wall']:.0f} / {mbps['h5py']:.0f}",
                *(
                    f"{mbps[f'inner@{r}']:.0f} / {mbps[f'wall@{r}']:.0f} / {mbps[f'read@{r}']:.0f}"
                    for r in ranks
                ),
                f"{row['ratio_inner']:.2f}x / {row['ratio_wall']:.2f}x / {row['ratio_read']:.2f}x",
            ]
        )
    return markdown(headers, cells)
