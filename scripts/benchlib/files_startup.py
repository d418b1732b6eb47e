"""Start-up of a ``stats`` job over many small HDF5 files, against one file of the same rows.

Writes DIR/small/f-NNNNN.h5 (a (4, 8) float64 dataset each), then runs ``hpcapp run stats
'DIR/small/*.h5:/x'`` under ``mpiexec -n R`` and reports the wall time (best of ``--repeat``) and
hpcapp's own start-up column (process start to first chunk: imports, MPI, inspecting every
file), next to the same job on one file holding the same rows: the difference is what the files
cost.

    python scripts/bench.py files-startup --files 10000 --ranks 2,1 --repeat 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from .harness import Runner, int_list, markdown, say, scratch, timing_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""
    parser.add_argument(
        "--dir", type=Path, help="directory of the files, kept (default: a temporary one)"
    )
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--ranks", type=int_list, default=[1, 2])
    parser.add_argument("--repeat", type=int, default=1)


def stats_job(runner: Runner, spec: str, out: Path, ranks: int, *extra: str) -> list[str]:
    """Return ``mpiexec -n RANKS python -m hpcapp run stats SPEC -o OUT ...``."""
    return runner.hpcapp(ranks, "run", "stats", spec, "-o", str(out), "--overwrite", "-q", *extra)


def startup_column(path: Path) -> float:
    """Return the slowest rank's start-up seconds, from a job output's timing table."""
    return float(timing_table(path)["startup"].max())


def write_small_files(folder: Path, files: int) -> np.ndarray:
    """Write ``files`` small files (kept if already there); return all their rows."""
    import h5py

    folder.mkdir(parents=True, exist_ok=True)
    rows = np.arange(files * 4 * 8, dtype=np.float64).reshape(files * 4, 8)
    if len(list(folder.glob("f-*.h5"))) != files:
        began = time.perf_counter()
        for index in range(files):
            with h5py.File(folder / f"f-{index:05d}.h5", "w") as h5:
                h5["x"] = rows[4 * index : 4 * index + 4]
        say(f"wrote {files} files in {time.perf_counter() - began:.1f} s")
    return rows


def run(options: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    """Time the job over many files and over one, at each rank count."""
    import h5py

    runner.precompile()
    results = []
    with scratch(options.dir, "bench-files-") as directory:
        folder = directory / "small"
        rows = write_small_files(folder, options.files)
        single = directory / "single.h5"
        with h5py.File(single, "w") as h5:
            h5["x"] = rows
        out, base = directory / "many.h5", directory / "one.h5"
        for ranks in options.ranks:
            many = stats_job(runner, f"{folder}/f-*.h5:/x", out, ranks)
            wall = min(runner.timed(many) for _ in range(options.repeat))
            one = stats_job(runner, f"{single}:/x", base, ranks)
            wall_one = min(runner.timed(one) for _ in range(options.repeat))
            results.append(
                {
                    "ranks": ranks,
                    "wall": wall,
                    "startup": startup_column(out),
                    "one_file_wall": wall_one,
                    "one_file_startup": startup_column(base),
                }
            )
            say(f"files-startup: {results[-1]}")
    return {"files": options.files, "rows": results}


def table(result: dict[str, Any]) -> str:
    """Return the README's table: wall and start-up, many files against one."""
    files = f"{result['files']:,} files"
    headers = ["ranks", f"{files}: wall", "start-up", "one file, same rows: wall", "start-up"]
    cells = [
        [
            row["ranks"],
            f"{row['wall']:.2f} s",
            f"{row['startup']:.2f} s",
            f"{row['one_file_wall']:.2f} s",
            f"{row['one_file_startup']:.2f} s",
        ]
        for row in result["rows"]
    ]
    return markdown(headers, cells)
