"""``hpcapp show``: the job of an output file in a few lines, and a digest of its results.

No MPI needed. ``--json`` prints the full record instead: every attribute (the job identity
parsed), every result's digest and the per-rank timing.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from hpcapp.errors import UsageError
from hpcapp.io.ncfile import text
from hpcapp.io.results import read_timing, result_variables
from hpcapp.text import plural

# Results are digested in blocks of this many values (a per-row output may be large).
_BLOCK_VALUES = 1 << 22


def describe(path: str, as_json: bool = False) -> str:
    """Return a report of an hpcapp output file: the job, a digest of each result, timing."""
    record = read_record(path)
    if as_json:
        return json.dumps(record, indent=1, default=str)
    return "\n".join([*_header(path, record), *_digests(record), *_timing(record)])


def read_record(path: str) -> dict[str, Any]:
    """Return everything ``show`` reports about an output file, as plain data."""
    import h5py

    file = Path(path)
    if not file.is_file() or not h5py.is_hdf5(file):
        raise UsageError(f"{path!r} is not an HDF5 file")
    with h5py.File(file, "r", locking=False) as h5:
        if "hpcapp_version" not in h5.attrs:
            raise UsageError(f"{path!r} is not an hpcapp output file (no hpcapp_version)")
        attrs = {key: _plain(value) for key, value in h5.attrs.items()}
        if isinstance(attrs.get("job_identity"), str):
            with contextlib.suppress(ValueError):  # else shown as written
                attrs["job_identity"] = json.loads(attrs["job_identity"])
        results = {
            key: digest(dataset.name.lstrip("/"), dataset)
            for key, dataset in sorted(result_variables(h5).items())
        }
        found = read_timing(h5)
    timing = {}
    if found is not None:
        table, columns = found
        timing = {column: table[:, i].tolist() for i, column in enumerate(columns)}
    return {"file": path, "attributes": attrs, "results": results, "timing": timing}


def digest(name: str, dataset: Any) -> dict[str, Any]:
    """Return a result's variable name, dims, dtype, and min / mean / max / missing cells."""
    own = dataset.name.rsplit("/", 1)[-1] if dataset.is_scale else None  # a coordinate's own dim
    dims = [
        text(dim[0].name).rsplit("/", 1)[-1]
        if len(dim)
        else (own if j == 0 and own else f"dim_{j}")
        for j, dim in enumerate(dataset.dims)
    ]
    found: dict[str, Any] = {
        "variable": name,
        "dims": dims,
        "shape": list(dataset.shape),
        "dtype": str(dataset.dtype),
    }
    if dataset.dtype.kind not in "iufb":
        return found
    low, high, total, valid, cells = math.inf, -math.inf, 0.0, 0, 0
    rows = max(1, _BLOCK_VALUES // max(1, math.prod(dataset.shape[1:])))
    blocks = range(0, dataset.shape[0], rows) if dataset.ndim else [None]
    for start in blocks:
        block = np.asarray(dataset[()] if start is None else dataset[start : start + rows])
        values = block.astype(np.float64).ravel()
        cells += values.size
        values = values[~np.isnan(values)]
        valid += values.size
        if values.size:
            low, high = min(low, values.min()), max(high, values.max())
            total += float(values.sum())
    found.update(cells=cells, missing=cells - valid)
    if valid:
        found.update(min=low, mean=total / valid, max=high)
    return found


def _header(path: str, record: dict[str, Any]) -> list[str]:
    attrs = record["attributes"]
    identity = attrs.get("job_identity")
    versions = identity.get("code", {}).get("versions", {}) if isinstance(identity, dict) else {}
    code = ", ".join(f"{name} {version}" for name, version in sorted(versions.items()))
    shape = " x ".join(str(n) for n in np.atleast_1d(attrs.get("input_shape", [])))
    input_line = f"{attrs.get('input', 'none')}"
    if shape:
        input_line += f" ({shape} {attrs.get('input_dtype', '')}"
        input_line += f", CF decoding {attrs['cf_decoding']})" if "cf_decoding" in attrs else ")"
    if "input_file_count" in attrs:
        input_line += f", {plural(int(attrs['input_file_count']), 'file')}"
    ranks = int(attrs.get("n_ranks", 0))
    hosts = int(attrs.get("hosts", 1))
    layout = (
        f"{plural(ranks, 'rank')} on {plural(hosts, 'host')}, "
        f"{plural(int(attrs.get('n_chunks', 0)), 'chunk')} of "
        f"{plural(int(attrs.get('chunk_rows', 0)), 'row')}, "
        f"{attrs.get('schedule', 'static')} schedule"
    )
    wall = attrs.get("wall_seconds")
    when = f"{float(wall):.2f} s" if wall is not None else "?"
    when += f" ({attrs.get('started', '?')} to {attrs.get('finished', '?')})"
    if attrs.get("resumed"):
        when += ", resumed"
    lines = [
        f"{path}: {attrs.get('kernel', '?')} on {attrs.get('input', 'generated data')}",
        f"  command    {attrs.get('command', '?')}",
        f"  input      {input_line}",
        f"  ranks      {layout}",
        f"  wall time  {when}",
        f"  code       {code or 'hpcapp ' + str(attrs.get('hpcapp_version'))}",
        f"  MPI        {' '.join(str(attrs.get('mpi_library', '?')).split())}",
    ]
    if "grouping" in attrs:
        lines.append(f"  grouping   {attrs['grouping']}")
    params = attrs.get("params")
    if params not in (None, "{}"):
        lines.append(f"  params     {params}")
    return lines


def _digests(record: dict[str, Any]) -> list[str]:
    results = record["results"]
    if not results:
        return ["results: none"]
    lines = ["results (over cells: min / mean / max; cells all missing):"]
    width = max(len(found["variable"]) for found in results.values())
    for found in results.values():
        dims = ", ".join(f"{d} {n}" for d, n in zip(found["dims"], found["shape"], strict=True))
        head = f"  {found['variable']:<{width}}  ({dims}) {found['dtype']}"
        if "mean" in found:
            values = " / ".join(f"{found[k]:.6g}" for k in ("min", "mean", "max"))
            missing = f"; {found['missing']:,} of {found['cells']:,} missing"
            lines.append(f"{head}  {values}{missing if found['missing'] else ''}")
        elif "cells" in found:
            lines.append(f"{head}  all {found['cells']:,} missing")
        else:
            lines.append(head)
    return lines


def _timing(record: dict[str, Any]) -> list[str]:
    timing = record["timing"]
    if not timing:
        return []
    n_ranks = len(next(iter(timing.values())))
    lines = [f"timing ({plural(n_ranks, 'rank')}; min / mean / max):"]
    for column, values in timing.items():
        array = np.asarray(values)
        lines.append(f"  {column:<10} {array.min():.4g} / {array.mean():.4g} / {array.max():.4g}")
    return lines


def _plain(value: Any) -> Any:
    """Return an attribute as JSON-friendly data: text, a number, or a list."""
    if isinstance(value, (bytes, np.bytes_, str)):
        return text(value)
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.ndim else _plain(value.item())
    if isinstance(value, np.generic):
        return value.item()
    return value
