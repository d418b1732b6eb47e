"""The (time, lat, lon) float32 netCDF-4 field of the N-D benchmarks."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .harness import int_list, say


def write_field(path: Path, steps: int, lat: int, lon: int, gzip: bool) -> None:
    """Write a netCDF-4 (time, lat, lon) float32 field, one time block at a time (kept if there)."""
    import netCDF4

    if path.exists():
        return
    rng = np.random.default_rng(7)
    with netCDF4.Dataset(path, "w") as ds:
        for name, size in (("time", steps), ("lat", lat), ("lon", lon)):
            ds.createDimension(name, size)
            coord = ds.createVariable(name, "f8", (name,))
            coord[:] = np.arange(size, dtype=np.float64)
        options = {"zlib": True, "complevel": 1} if gzip else {}
        var = ds.createVariable(
            "t", "f4", ("time", "lat", "lon"), chunksizes=(min(16, steps), lat, lon), **options
        )
        var.units = "K"
        for start in range(0, steps, 64):
            stop = min(start + 64, steps)
            block = 280 + 10 * rng.standard_normal((stop - start, lat, lon), dtype=np.float32)
            var[start:stop] = np.round(block, 2)  # compressible like real data
    say(f"wrote {path} ({path.stat().st_size / 2**30:.2f} GiB)")


def add_grid_arguments(parser: argparse.ArgumentParser, steps: int) -> None:
    """Add the field's size and the scratch directory."""
    parser.add_argument(
        "--dir",
        type=Path,
        help="directory of the inputs and outputs, kept (default: a temporary one, deleted); "
        "an input already there is reused",
    )
    parser.add_argument("--steps", type=int, default=steps, help=f"time steps (default {steps})")
    parser.add_argument("--lat", type=int, default=180)
    parser.add_argument("--lon", type=int, default=360)
    parser.add_argument("--ranks", default="1,2", type=int_list, help="rank counts (default 1,2)")
