#!/usr/bin/env python3
"""Golden outputs: run ~10 representative jobs and print a digest of every result.

    python scripts/golden.py DIR > before.json      # on the old code
    python scripts/golden.py DIR > after.json       # on the new code
    python scripts/golden.py DIR --compare before.json

For a restructuring that must not change one bit: 2-D stats with a histogram, N-D ``--over``
forms, packed CF input, many files, ``--group-by`` and ``--group-every``, per-row outputs,
montecarlo, a user kernel, and a resumed job (interrupted after its first chunks). Every job
runs under ``mpiexec -n 2`` with a fixed ``--chunk-rows``; inputs are written into DIR with fixed
seeds. The digest is SHA-256 of each result's bytes, dtype and shape, and of its dimensions'
coordinates; it is named as in the ``/result`` group outputs once had (see :func:`digest`), so
digests recorded before the flat netCDF layout still compare.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

if not __package__:
    # Run as a file: Python put scripts/ first on the path; the launcher lookup is
    # scripts.benchlib's, shared with the benchmarks and the tests.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from scripts.benchlib.launcher import REPO, find_mpiexec

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "HPCAPP_PROGRESS": "lines"}
USER_KERNEL = REPO / "hpcapp" / "examples" / "exceedances.py"


def mpiexec() -> str:
    """Return the launcher (``$MPIEXEC``, PATH, else the mpich wheel's beside this Python)."""
    try:
        return find_mpiexec()
    except FileNotFoundError as error:
        sys.exit(f"golden: {error}")


def write_inputs(directory: Path) -> dict[str, str]:
    """Write the inputs (fixed seeds) and return their specs."""
    import h5py
    import netCDF4

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2026)
    specs: dict[str, str] = {}
    with h5py.File(directory / "table.h5", "w") as h5:
        h5["x"] = rng.normal(size=(20_000, 4))
    specs["table"] = f"{directory / 'table.h5'}:/x"
    days = 3 * 365
    with netCDF4.Dataset(directory / "field.nc", "w") as ds:
        for name, size in (("time", days), ("lat", 6), ("lon", 8)):
            ds.createDimension(name, size)
        time_var = ds.createVariable("time", "f8", ("time",))
        time_var.units, time_var.calendar = "days since 2000-01-01", "standard"
        time_var[:] = np.arange(days)
        lat = ds.createVariable("lat", "f8", ("lat",))
        lat.units = "degrees_north"
        lat[:] = np.linspace(-75, 75, 6)
        var = ds.createVariable("tas", "i2", ("time", "lat", "lon"), fill_value=np.int16(-32767))
        var.set_auto_maskandscale(False)
        var.scale_factor, var.add_offset, var.units = np.float32(0.01), np.float32(280.0), "K"
        stored = rng.integers(-2000, 2000, size=(days, 6, 8)).astype(np.int16)
        stored[rng.random(stored.shape) < 0.02] = -32767
        var[:] = stored
    specs["field"] = f"{directory / 'field.nc'}:/tas"
    parts = directory / "parts"
    parts.mkdir(exist_ok=True)
    for year in range(3):
        with netCDF4.Dataset(parts / f"tas_{2000 + year}.nc", "w") as ds:
            ds.createDimension("time", 365)
            ds.createDimension("x", 5)
            time_var = ds.createVariable("time", "f8", ("time",))
            time_var.units, time_var.calendar = "days since 2000-01-01", "noleap"
            time_var[:] = np.arange(365) + 365 * year
            var = ds.createVariable("tas", "f4", ("time", "x"))
            var[:] = rng.normal(280, 5, size=(365, 5)).astype(np.float32)
    specs["parts"] = f"{parts}/tas_*.nc:/tas"
    return specs


def jobs(specs: dict[str, str]) -> dict[str, list[str]]:
    """Return the representative jobs: name -> ``hpcapp run`` arguments (output added later)."""
    kernel = f"{USER_KERNEL}:exceedances"
    return {
        "stats-2d-hist": ["stats", specs["table"], "-p", "range=-4,4", "-p", "bins=32"],
        "stats-2d-cols": ["stats", specs["table"], "-p", "range=-4:4,-3:3,-2:2,-1:1"],
        "nd-over-time": ["stats", specs["field"], "--over", "time", "-p", "range=250,310"],
        "nd-over-latlon": ["stats", specs["field"], "--over", "lat,lon"],
        "nd-over-all": ["stats", specs["field"], "--over", "time,lat,lon"],
        "nd-raw": ["stats", specs["field"], "--over", "time", "--raw"],
        "group-month": ["stats", specs["field"], "--over", "time", "--group-by", "time.month"],
        "group-every": ["stats", specs["table"], "--group-every", "1000"],
        "many-files": ["stats", specs["parts"], "--over", "time", "--group-by", "time.season"],
        "many-files-rows": ["stats", specs["parts"], "--over", "x"],
        "montecarlo": ["montecarlo", "-p", "samples=2000000", "-p", "seed=7"],
        "user-kernel": [kernel, specs["table"], "-p", "threshold=1.5"],
        "row-norms": ["hpcapp.examples.row_norms:row_norms", specs["table"]],
    }


def run(
    args: list[str], out: Path, extra: tuple[str, ...] = (), chunk_rows: int = 97
) -> subprocess.CompletedProcess:
    """Run one job on 2 ranks with fixed chunks."""
    command = [mpiexec(), "-n", "2", sys.executable, "-m", "hpcapp", "run", *args]
    command += ["-o", str(out), "--chunk-rows", str(chunk_rows), "-q", *extra]
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)


def resumed(args: list[str], out: Path) -> str:
    """Interrupt a job once a rank saved a part, then resume it to the end; say what happened."""
    out.unlink(missing_ok=True)  # an earlier run's output is another job's (new input stamps)
    shutil.rmtree(f"{out}.checkpoint", ignore_errors=True)
    command = [mpiexec(), "-n", "2", sys.executable, "-m", "hpcapp", "run", *args]
    command += ["-o", str(out), "--chunk-rows", "7", "-q", "--overwrite"]
    command += ["--checkpoint-every", "0"]
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Stopped a tenth of a second after its checkpoint directory appears (planning is done, the
    # chunks are being computed, ~0.25 s in all), not a fixed time after launch: a faster
    # start-up let the job end before the signal.
    checkpoint = Path(f"{out}.checkpoint")
    deadline = time.monotonic() + 120
    while process.poll() is None and not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=600)
    if process.returncode != 75:
        sys.exit(f"golden: the job to resume was not interrupted (exit {process.returncode})")
    done = run(args, out, ("--resume",), chunk_rows=7)
    if done.returncode != 0:
        sys.exit(f"golden: resumed job failed: {done.stderr}")
    return f"first run exit {process.returncode}, resume exit {done.returncode}"


def sha(dataset: object) -> str:
    """Return SHA-256 of a dataset's dtype, shape and bytes (strings as text)."""
    data = dataset[()]  # type: ignore[index]
    if data.dtype.kind == "O":  # strings
        data = np.array([str(v) for v in np.ravel(data)])
    text = f"{data.dtype.str}{data.shape}".encode()
    return hashlib.sha256(text + np.ascontiguousarray(data).tobytes()).hexdigest()


def digest(path: Path) -> dict[str, str]:
    """Return SHA-256 of every result and of its dimensions' coordinates, named as in /result.

    Outputs once held everything in a group ``/result`` (``mean``, ``lat``, ``bin``,
    ``bin_bounds``...). Now results sit at the root named from the input (``tas_mean``) with
    ``hpcapp_result = "mean"``: each is digested under that key, and the coordinates (and
    placeholders) of its dimensions, with their CF bounds, under their own names, which are
    those they had in ``/result``. So a digest of either layout compares with the other.
    ``--group-by time.month`` (etc.) labels, once ``group``, are now named ``month``: they are
    digested as ``group`` still, so digests recorded before compare (and cover the labels).
    """
    import h5py

    from hpcapp.io.labels import COMPONENTS
    from hpcapp.io.ncfile import text
    from hpcapp.io.results import result_variables

    found: dict[str, str] = {}
    with h5py.File(path, "r") as h5:
        if isinstance(h5.get("result"), h5py.Group):  # the layout before the flat one
            h5["result"].visititems(
                lambda name, item: (
                    found.__setitem__(name, sha(item)) if isinstance(item, h5py.Dataset) else None
                )
            )
            return found
        renamed = {name: "group" for name in COMPONENTS}
        for key, dataset in result_variables(h5).items():
            found[renamed.get(key, key)] = sha(dataset)
            for dim in dataset.dims:
                for scale in dim.values():
                    name = scale.name.lstrip("/")
                    found[renamed.get(name, name)] = sha(scale)
                    bounds = text(scale.attrs.get("bounds", ""))
                    if bounds and bounds in h5:
                        found[bounds] = sha(h5[bounds])
                        for vertex in h5[bounds].dims[1].values():
                            found[vertex.name.lstrip("/")] = sha(vertex)
    return found


def main() -> int:
    """Record or compare the golden digests."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=Path, help="scratch directory for inputs and outputs")
    parser.add_argument("--compare", type=Path, help="a JSON file of digests to compare with")
    options = parser.parse_args()
    specs = write_inputs(options.directory)
    digests: dict[str, dict[str, str]] = {}
    for name, args in jobs(specs).items():
        out = options.directory / f"{name}.h5"
        done = run(args, out, ("--overwrite",))
        if done.returncode != 0:
            sys.exit(f"golden: job {name} failed ({done.returncode}): {done.stderr}")
        digests[name] = digest(out)
        print(f"golden: {name}: {len(digests[name])} datasets", file=sys.stderr)
    out = options.directory / "resumed.h5"
    # The resumed job's chunks are 7 rows: its reference is the same job run without a stop.
    straight = options.directory / "straight.h5"
    done = run(jobs(specs)["nd-over-time"], straight, ("--overwrite",), chunk_rows=7)
    if done.returncode != 0:
        sys.exit(f"golden: job nd-over-time-c7 failed: {done.stderr}")
    digests["nd-over-time-c7"] = digest(straight)
    how = resumed(jobs(specs)["nd-over-time"], out)
    digests["resumed-nd-over-time-c7"] = digest(out)
    same = digests["resumed-nd-over-time-c7"] == digests["nd-over-time-c7"]
    print(f"golden: resumed: {how}; equal to the uninterrupted run: {same}", file=sys.stderr)
    if not same:
        return 1
    if options.compare is None:
        print(json.dumps(digests, indent=1, sort_keys=True))
        return 0
    before = json.loads(options.compare.read_text())
    differ = [
        f"{job}:{key}"
        for job in sorted(set(before) | set(digests))
        for key in sorted(set(before.get(job, {})) | set(digests.get(job, {})))
        if before.get(job, {}).get(key) != digests.get(job, {}).get(key)
    ]
    print("golden: identical" if not differ else "golden: DIFFER: " + ", ".join(differ))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
