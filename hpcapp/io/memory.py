"""How much memory a rank needs, and ``--memory-per-rank``: refuse a job that cannot fit.

Per-cell results make partials large (a 1440 x 721 grid is 1 M cells; five moments and a
64-bin histogram per cell are ~570 MB per partial). A rank holds, at its peak:

- the read buffer, the CF-decoded buffer and its masks, and the kernel's temporaries for one
  chunk (counted as three float64 copies of the chunk's values);
- its tree nodes: at most one per level of the chunk tree, ``ceil(log2(n_chunks)) + 1``;
- while combining: the two partials and their result, and (rank 0, receiving) one packed copy.

The estimate is a formula over those counts, with the partial's size measured by running the
kernel on one row of zeros; ``scripts/bench_nd.py --memory`` compares it with measured peaks.
"""

from __future__ import annotations

import math
import re
from typing import Any

from hpcapp.errors import UsageError
from hpcapp.io.memory_groups import rank_peak
from hpcapp.kernels.grouped_stats import narrow_counts, reused_bytes

# Interpreter, numpy, h5py, mpi4py and numba loaded: measured ~150 MB on x86_64 Linux.
BASE_BYTES = 200 << 20
# Partials alive besides the tree's nodes: left, right and result of a combine, one packed copy.
EXTRA_PARTIALS = 4
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """Turn ``4GiB``, ``512M``, ``2.5G`` or a number of bytes into bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if not match:
        raise UsageError(f"--memory-per-rank must be a size like 4GiB or 512MiB, got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def partial_bytes(kernel: Any, source: Any, params: dict[str, Any], chunk_rows: int) -> int:
    """Return the bytes of one chunk's partial (kernel run on one row of zeros)."""
    import numpy as np

    sample = np.zeros((1, *source.row_shape), dtype=np.dtype(source.values_dtype))
    out = kernel.apply(sample, params, n_rows=1)
    total = 0
    for key, value in out.items():
        size = np.asarray(value).nbytes
        total += size * chunk_rows if key in kernel.per_row else size
    return total


def _group_sizes(kernel: Any, source: Any, params: dict[str, Any]) -> tuple[list[int], int]:
    """Return the bytes of each key of one group's partial, and of its finished results."""
    import numpy as np

    sample = np.zeros((1, *source.row_shape), dtype=np.dtype(source.values_dtype))
    out = dict(kernel.apply(sample, params, n_rows=1))
    kept = narrow_counts(kernel, out, source.n_rows)  # as a grouped partial keeps them
    sizes = [np.asarray(value).nbytes for value in kept.values()]
    try:
        results = kernel.finish(dict(out), params)
        finished = sum(np.asarray(v).nbytes for v in results.values())
        finished -= reused_bytes(kernel, kept, results)  # written over the partial's parts
    except Exception:  # a finish that needs real data: count the results as the partial
        finished = sum(sizes)
    return sizes, finished


def estimate(
    kernel: Any,
    source: Any,
    params: dict[str, Any],
    chunk_rows: int,
    n_chunks: int,
    grouping: Any = None,
    ranks: int = 1,
) -> dict[str, int]:
    """Return the parts of a rank's peak memory estimate, in bytes (and their ``total``).

    Grouped (``grouping``), a partial holds one partial per group present in it: a tree node
    at level ``l`` covers at most ``2**l * chunk_rows`` records, and no node more groups than
    ``grouping.max_groups`` (12 months, 4 seasons, 366 days of year; for integer labels and
    years only the record count and the label dtype's range bound it). The groups alive at
    the peak on any of ``ranks`` are counted by :func:`hpcapp.io.memory_groups.rank_peak`, or
    at the finish.
    """
    import numpy as np

    rows = min(chunk_rows, source.n_rows)
    # Read in group order: records a group (else 0: a chunk's records may each be a group).
    order = getattr(grouping, "order", None)
    in_order = order.group_records() if order is not None else 0
    # A kernel declaring a halo reads (and decodes) its windows' records around each chunk.
    read = min(rows + sum(kernel.halo(params)), source.n_rows) if kernel.halo else rows
    values = read * math.prod(source.row_shape)
    chunk = read * source.row_bytes
    cf = getattr(source, "decoding", None)
    # Decoded values and two masks, per value decoded at once.
    decoding = np.dtype(cf.dtype).itemsize + 2 if cf is not None and cf.changes_values else 0
    if grouping is None:
        chunk += values * (decoding + 3 * 8)  # the chunk decoded, the kernel's temporaries
    else:
        # One group's records at a time (copied, decoded, the kernel's temporaries), or, for
        # groups of one record (by_record), the whole chunk decoded and a sorted copy.
        per_group = -(-rows // max(1, min(grouping.max_groups(source.n_rows), rows)))
        if in_order:
            per_group = min(rows, in_order)
        at_once = values if per_group == 1 else per_group * math.prod(source.row_shape)
        chunk += at_once * (decoding + (1 if per_group == 1 else 4) * 8)
    partial = partial_bytes(kernel, source, params, rows)
    levels = math.ceil(math.log2(max(n_chunks, 1))) + 1
    held = levels + EXTRA_PARTIALS
    partials = held * partial
    if grouping is not None:  # partial: one group's; counted in groups (memory_groups)
        most = grouping.max_groups(source.n_rows)
        sizes, finished = _group_sizes(kernel, source, params)
        partial = sum(sizes)  # one group's, its counts kept narrow
        share = max(sizes) / max(partial, 1)
        peak = rank_peak(n_chunks, ranks, rows, source.n_rows, most, share, max(in_order, 1))
        top = min(most, source.n_rows)
        partials = int(partial * max(peak, top * (1 + finished / max(partial, 1))))
        partial *= top
    parts = {"base": BASE_BYTES, "chunk": chunk, "partial": partial, "partials": partials}
    parts["total"] = parts["base"] + parts["chunk"] + parts["partials"]
    return parts


def check_memory(
    limit_text: str | None,
    kernel: Any,
    source: Any,
    params: dict[str, Any],
    chunk_rows: int,
    n_chunks: int,
    grouping: Any = None,
    ranks: int = 1,
) -> None:
    """Raise UsageError if ``--memory-per-rank`` is given and the estimate exceeds it."""
    if not limit_text or kernel.generates:  # generated data: the kernel takes no rows
        return
    limit = parse_size(limit_text)
    parts = estimate(kernel, source, params, chunk_rows, n_chunks, grouping, ranks)
    if parts["total"] <= limit:
        return
    mib = {key: value / (1 << 20) for key, value in parts.items()}
    held = -(-parts["partials"] // max(parts["partial"], 1))
    largest = max(("partials", "chunk", "base"), key=lambda key: mib[key])
    hint = {
        "partials": "use fewer result cells (reduce over more dimensions), fewer histogram "
        "bins, " + ("fewer groups, " if grouping is not None else "") + "or more memory per rank",
        "chunk": "use a smaller --chunk-rows",
        "base": "give each rank more memory",
    }[largest]
    raise UsageError(
        f"this job needs about {mib['total']:,.0f} MiB per rank, more than --memory-per-rank "
        f"{limit_text} ({limit / (1 << 20):,.0f} MiB): {held} partials of {mib['partial']:,.1f} "
        f"MiB each ({n_chunks} chunks), chunk buffers {mib['chunk']:,.0f} MiB, base "
        f"{mib['base']:,.0f} MiB; {hint}"
    )
