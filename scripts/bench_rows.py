"""Per-row output write speed, before and after a change: ``python scripts/bench_rows.py``.

Generates a float64 input with ``hpcapp generate`` (``--gib``, 8 columns), then runs a "map"
kernel whose per-row output is the chunk times 2 (as many bytes out as in) at each rank count,
with the hpcapp of this tree ("after") and, if ``--before DIR`` names a checkout of an older
commit, with that one too, alternating. For each run: the job's wall seconds, then the seconds
an ``fsync`` of the output takes right after it (what was still only in the page cache: a fair
"durable" time whether or not the job synced), and the same job with a kernel that returns no
per-row output (what reading and computing cost alone). Output MB/s = output bytes / wall.
Every output is checked against 2 * input on sampled rows. Big files are deleted at the end.

    git worktree add /tmp/rows-before <commit>
    python scripts/bench_rows.py --before /tmp/rows-before --ranks 1,2,4
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

import numpy as np

KERNELS = """
import numpy as np
import hpcapp

@hpcapp.kernel(per_row=("y",))
def double(chunk):
    return {"y": chunk * 2, "n": np.int64(len(chunk))}

def reduce_only(chunk):
    return {"s": (chunk * 2).sum(axis=0), "n": np.int64(len(chunk))}
"""
REPO = Path(__file__).resolve().parent.parent


def mpiexec() -> str:
    """Return the mpiexec beside this Python, else ``mpiexec``."""
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else "mpiexec"


def hpcapp(tree: Path, ranks: int, args: list[str]) -> float:
    """Run ``hpcapp ARGS`` from ``tree`` on ``ranks`` ranks; return its wall seconds."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    command = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "hpcapp", *args]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return seconds


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
    """Check sampled rows of ``/result/y`` against 2 * input (and the dataset's shape)."""
    import h5py

    rows = np.unique(np.r_[0, n_rows - 1, np.random.default_rng(0).integers(0, n_rows, 2000)])
    with h5py.File(out, "r") as h5, h5py.File(data, "r") as source:
        got, x = h5["result/y"], source["x"]
        assert got.shape == x.shape and got.dtype == np.float64
        for row in rows:
            assert np.array_equal(got[row], x[row] * 2), f"{out}: row {row} differs"


def main() -> None:
    """Measure, print a table and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="input (= output) size")
    parser.add_argument("--ranks", default="1,2,4")
    parser.add_argument("--before", type=Path, help="checkout of the commit to compare with")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--dir", type=Path, help="scratch directory (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=Path("bench-rows.json"))
    options = parser.parse_args()
    # The compiled loops and hpcapp's bytecode, once: no timed run compiles either.
    subprocess.run([sys.executable, "-m", "hpcapp.kernels._fused"], check=True)
    ranks_list = [int(r) for r in options.ranks.split(",")]
    trees = {"after": REPO}
    if options.before is not None:
        trees = {"before": options.before.resolve(), **trees}
    cols = 8
    n_rows = int(options.gib * 2**30) // (8 * cols)
    scratch = Path(tempfile.mkdtemp(prefix="bench-rows-", dir=options.dir))
    data, kernels = scratch / "in.h5", scratch / "kernels.py"
    kernels.write_text(KERNELS)
    rows: list[dict] = []
    try:
        hpcapp(REPO, 2, ["generate", f"{data}:/x", "--rows", str(n_rows), "--cols", str(cols)])
        out_bytes = n_rows * cols * 8
        for ranks in ranks_list:
            samples: dict[str, dict[str, list[float]]] = {}
            for _ in range(options.repeat):
                for name, tree in trees.items():
                    got = samples.setdefault(name, {"wall": [], "fsync": [], "no_rows": []})
                    out = scratch / f"out-{name}.h5"
                    args = ["-o", str(out), "-q", "--overwrite"]
                    got["wall"].append(
                        hpcapp(tree, ranks, ["run", f"{kernels}:double", f"{data}:/x", *args])
                    )
                    got["fsync"].append(fsync_seconds(out))
                    check_output(out, data, n_rows)
                    out.unlink()
                    got["no_rows"].append(
                        hpcapp(tree, ranks, ["run", f"{kernels}:reduce_only", f"{data}:/x", *args])
                    )
                    out.unlink()
            for name, got in samples.items():
                wall = statistics.median(got["wall"])
                pairs = zip(got["wall"], got["fsync"], strict=True)
                durable = statistics.median(w + f for w, f in pairs)
                rows.append(
                    {
                        "tree": name,
                        "ranks": ranks,
                        "wall": wall,
                        "wall_plus_fsync": durable,
                        "no_rows_wall": statistics.median(got["no_rows"]),
                        "out_mb_per_s": out_bytes / wall / 1e6,
                        "durable_mb_per_s": out_bytes / durable / 1e6,
                        "samples": got,
                    }
                )
    finally:
        for path in scratch.iterdir():
            path.unlink()
        scratch.rmdir()
    print(f"{options.gib:g} GiB float64 x {cols} in, the same out (chunk * 2); load now: ", end="")
    print(Path("/proc/loadavg").read_text().split()[:3])
    print("| ranks | tree | wall s | MB/s out | wall + fsync s | MB/s durable | no-rows wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['ranks']} | {row['tree']} | {row['wall']:.2f} | {row['out_mb_per_s']:.0f} | "
            f"{row['wall_plus_fsync']:.2f} | {row['durable_mb_per_s']:.0f} | "
            f"{row['no_rows_wall']:.2f} |"
        )
    options.json.write_text(json.dumps({"gib": options.gib, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
