"""The data and the hpcapp jobs of the ``peers`` benchmark: shapes, generating, reading outputs."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from .harness import Runner, timing_table

BINS, RANGE = 64, (0.0, 1.0)  # `generate` makes uniform [0, 1) values: every value is counted


@dataclasses.dataclass(frozen=True)
class Shape:
    """One of the benchmarked data shapes: a 1-D dataset, or rows x ``cols``."""

    key: str
    dtype: str
    cols: int | None

    @property
    def label(self) -> str:
        """Return a short description such as ``2-D x8 float32``."""
        return f"1-D {self.dtype}" if self.cols is None else f"2-D x{self.cols} {self.dtype}"

    @property
    def row_bytes(self) -> int:
        """Return the bytes of one row."""
        return (self.cols or 1) * np.dtype(self.dtype).itemsize


ONE_D = Shape("1d", "float64", None)


def generate(runner: Runner, path: Path, shape: Shape, rows: int, ranks: int) -> float:
    """Write the dataset ``path:/x`` with ``hpcapp generate``; return the seconds it took."""
    command = ["generate", f"{path}:/x", "--rows", str(rows), "--dtype", shape.dtype]
    command.append("--overwrite")
    if shape.cols is not None:
        command += ["--cols", str(shape.cols)]
    return runner.timed(runner.hpcapp(ranks, *command))


def warm_cache(path: Path) -> float:
    """Read the whole file once so the timed runs find it in the page cache; return seconds."""
    began = time.perf_counter()
    buffer = bytearray(16 << 20)
    with open(path, "rb", buffering=0) as file:
        while file.readinto(buffer):
            pass
    return time.perf_counter() - began


def hpcapp_report(path: Path) -> dict[str, Any]:
    """Return inner seconds (max over ranks of read+compute+reduce) and results of a job."""
    import h5py

    timing = timing_table(path)
    busy = sum(timing[c] for c in ("read", "compute", "reduce"))
    from hpcapp.io.ncfile import text
    from hpcapp.io.results import read_results

    results = {key: np.asarray(value) for key, value in read_results(str(path)).items()}
    with h5py.File(path, "r") as h5:
        mpi_library = text(h5.attrs.get("mpi_library", ""))
    summary: dict[str, Any] = {"rows": int(timing["rows"].sum())}
    for key, value in results.items():
        if key in ("sum", "min", "max", "s"):
            summary["sum" if key == "s" else key] = np.atleast_1d(value).astype(float).tolist()
        elif key == "hist":
            summary["hist"] = value.reshape(-1, value.shape[-1]).tolist()
    return {
        "seconds": float(busy.max()),
        "rank_seconds": {
            "min": float(busy.min()),
            "mean": float(busy.mean()),
            "max": float(busy.max()),
        },
        "result": summary,
        "mpi_library": mpi_library,
    }
