"""Write the result file on rank 0: results, provenance and timing, atomically.

The file is written under a temporary name in the output's directory and renamed over the
output only when complete, so a killed job leaves the previous file (or none), never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

# Marks a file written by the no-argument demo, which may replace only its own earlier result.
DEMO_ATTR = "hpcapp_demo"


def check_output(path: str, overwrite: bool, input_path: str | None = None) -> None:
    """Refuse an output we cannot or must not write; raise UsageError with the fix."""
    from hpcapp.errors import UsageError

    out = Path(path)
    parent = out.parent if str(out.parent) else Path(".")
    if out.suffix == "":
        raise UsageError(f"output {path!r} has no file extension: name it like result.h5")
    if not parent.is_dir():
        raise UsageError(f"output directory {str(parent)!r} does not exist: create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"output directory {str(parent)!r} is not writable")
    if out.is_dir():
        raise UsageError(f"output {path!r} is a directory: give a file name like {path}/out.h5")
    if input_path is not None and out.exists() and out.samefile(input_path):
        raise UsageError(f"output {path!r} is the input file: choose another output name")
    if out.exists() and not overwrite:
        raise UsageError(f"output {path!r} already exists: pass --overwrite to replace it")


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place if the block succeeds."""
    final = Path(path)
    temporary = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        yield temporary
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)


def iso_utc(seconds: float) -> str:
    """Format a POSIX time as ISO 8601 UTC with a Z suffix."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def write_output(
    path: str,
    results: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any],
    timing: np.ndarray,
    timing_columns: tuple[str, ...],
    write_column: int,
    started_seconds: float,
    base: str | None = None,
    layout: Any = None,
) -> float:
    """Write results, attributes and timing to ``path`` atomically; return the write seconds.

    ``base`` is a working file that already holds per-row outputs: it is completed and becomes
    the output, instead of a new file. ``layout(file)``, if given, then completes the file
    (named dimensions and CF attributes: :func:`hpcapp.io.output.make_layout`).
    """
    import h5py

    clock = time.perf_counter()
    with atomic_path(path) as temporary:
        if base is not None:
            os.replace(base, temporary)
        else:
            temporary.unlink(missing_ok=True)
        with h5py.File(temporary, "a") as h5:
            for key, value in attrs.items():
                h5.attrs[key] = value
            group = h5.require_group("result")
            for key, value in results.items():
                dataset = group.create_dataset(key, data=np.asarray(value))
                # A kernel's note on one result (e.g. why it is rounded): see api.with_attrs.
                for name, note in getattr(value, "attrs", {}).items():
                    dataset.attrs[name] = note
            table = timing.copy()
            table[0, write_column] = time.perf_counter() - clock
            dataset = h5.create_dataset("timing", data=table)
            dataset.attrs["columns"] = list(timing_columns)
            dataset.attrs["description"] = "per-rank seconds in each phase, and rows processed"
            if layout is not None:
                layout(h5)
            h5.attrs["finished"] = iso_utc(time.time())
            h5.attrs["wall_seconds"] = float(time.time() - started_seconds)
    return time.perf_counter() - clock


def params_json(params: Mapping[str, Any]) -> str:
    """Serialise kernel parameters for provenance, sorted so equal runs give equal text."""
    return json.dumps(dict(params), sort_keys=True, default=str)
