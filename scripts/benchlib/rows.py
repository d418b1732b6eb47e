"""Per-row output write speed, before and after a change.

Generates a float64 input with ``hpcapp generate`` (``--gib``, 8 columns), then runs a "map"
kernel whose per-row output is the chunk times 2 (as many bytes out as in) at each rank count,
with the hpcapp of this tree ("after") and, if ``--before DIR`` names a checkout of an older
commit, with that one too, alternating. For each run: the job's wall seconds, then the seconds
an ``fsync`` of the output takes right after it (what was still only in the page cache: a fair
"durable" time whether or not the job synced), and the same job with a kernel that returns no
per-row output (what reading and computing cost alone). Output MB/s = output bytes / wall.
Every output is checked against 2 * input on sampled rows. Big files are deleted at the end.

    git worktree add /tmp/rows-before <commit>
    python scripts/bench.py rows --before /tmp/rows-before --ranks 1,2,4 --repeat 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .harness import BenchError, Runner, int_list, loadavg, markdown
from .launcher import REPO

KERNELS = """
import numpy as np
import hpcapp

@hpcapp.kernel(per_row=("y",))
def double(chunk):
    return {"y": chunk * 2, "n": np.int64(len(chunk))}

def reduce_only(chunk):
    return {"s": (chunk * 2).sum(axis=0), "n": np.int64(len(chunk))}
"""
COLS = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this benchmark's options."""
    parser.add_argument("--gib", type=float, default=1.0, help="input (= output) size")
    parser.add_argument("--ranks", type=int_list, default=[1, 2, 4])
    parser.add_argument("--before", type=Path, help="checkout of the commit to compare with")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--dir", type=Path, help="scratch directory (default: a temporary one)")


def fsync_seconds(path: Path) -> float:
    """Return how long making ``path`` durable takes now."""
    start = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - start


def check_output(out: Path, data: Path, n_rows: int) -> None:
    """Check sampled rows of result ``y`` against 2 * input (and the dataset's shape)."""
    import h5py

    from hpcapp.io.results import result_variables

    rows = np.unique(np.r_[0, n_rows - 1, np.random.default_rng(0).integers(0, n_rows, 2000)])
    with h5py.File(out, "r") as h5, h5py.File(data, "r") as source:
        got, x = result_variables(h5)["y"], source["x"]
        if got.shape != x.shape or got.dtype != np.float64:
            raise BenchError(f"{out}: result y is {got.dtype} {got.shape}, not float64 {x.shape}")
        for row in rows:
            if not np.array_equal(got[row], x[row] * 2):
                raise BenchError(f"{out}: row {row} differs")


def summary(name: str, ranks: int, got: dict[str, list[float]], out_bytes: int) -> dict:
    """Return the medians of one tree at one rank count."""
    wall = statistics.median(got["wall"])
    durable = statistics.median(w + f for w, f in zip(got["wall"], got["fsync"], strict=True))
    return {
        "tree": name,
        "ranks": ranks,
        "wall": wall,
        "wall_plus_fsync": durable,
        "no_rows_wall": statistics.median(got["no_rows"]),
        "out_mb_per_s": out_bytes / wall / 1e6,
        "durable_mb_per_s": out_bytes / durable / 1e6,
        "samples": got,
    }


def run(options: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    """Time the per-row job and the no-rows job of every tree at every rank count."""
    trees = {"after": REPO}
    if options.before is not None:
        trees = {"before": options.before.resolve(), **trees}
    n_rows = int(options.gib * 2**30) // (8 * COLS)
    out_bytes = n_rows * COLS * 8
    rows: list[dict] = []
    runner.precompile()
    with tempfile.TemporaryDirectory(prefix="bench-rows-", dir=options.dir) as name:
        scratch = Path(name)
        data, kernels = scratch / "in.h5", scratch / "kernels.py"
        kernels.write_text(KERNELS)
        generate = ["generate", f"{data}:/x", "--rows", str(n_rows), "--cols", str(COLS)]
        runner.run(runner.hpcapp(2, *generate))
        for ranks in options.ranks:
            samples: dict[str, dict[str, list[float]]] = {}
            for _ in range(options.repeat):
                for name, tree in trees.items():
                    env = {**runner.env, "PYTHONPATH": str(tree)}
                    got = samples.setdefault(name, {"wall": [], "fsync": [], "no_rows": []})
                    out = scratch / f"out-{name}.h5"
                    args = [f"{data}:/x", "-o", str(out), "-q", "--overwrite"]
                    job = runner.hpcapp(ranks, "run", f"{kernels}:double", *args)
                    got["wall"].append(runner.timed(job, env=env))
                    got["fsync"].append(fsync_seconds(out))
                    check_output(out, data, n_rows)
                    out.unlink()
                    job = runner.hpcapp(ranks, "run", f"{kernels}:reduce_only", *args)
                    got["no_rows"].append(runner.timed(job, env=env))
                    out.unlink()
            rows += [summary(name, ranks, got, out_bytes) for name, got in samples.items()]
    return {"gib": options.gib, "loadavg_at_end": loadavg(), "rows": rows}


def table(result: dict[str, Any]) -> str:
    """Return the README's table: wall, MB/s out, with fsync, and the no-rows job."""
    headers = ["ranks", "code", "wall s", "MB/s out", "wall + fsync s", "MB/s durable"]
    headers.append("no rows: wall s")
    cells = [
        [
            row["ranks"],
            row["tree"],
            f"{row['wall']:.2f}",
            f"{row['out_mb_per_s']:.0f}",
            f"{row['wall_plus_fsync']:.2f}",
            f"{row['durable_mb_per_s']:.0f}",
            f"{row['no_rows_wall']:.2f}",
        ]
        for row in result["rows"]
    ]
    return markdown(headers, cells)
