"""``-p stats=mean,std``: ask the ``stats`` kernel for some of its results, not all eight.

A partial then carries only the parts those results need (``count`` always: it shapes every
partial and marks the empty cells), so merges, messages between ranks, checkpoints, the finish
and the output shrink with it: ``stats=mean`` keeps ``count`` and ``sum`` of the seven float64
parts. Every kept part is computed and merged by the same operations as with all results, so
each result asked for is bitwise the one the full job gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpcapp.kernels.hookspec import Partial

RESULTS = ("count", "nan_count", "sum", "mean", "var", "std", "min", "max")
HISTOGRAM = ("hist", "hist_below", "hist_above", "hist_edges")
# The partial's parts each result needs: float data (sum, mean, m2), integer data (s1, s2).
_NEEDS = {
    "count": (),
    "nan_count": ("nan_count",),
    "sum": ("sum", "s1", "s2"),
    "mean": ("sum", "s1", "s2"),
    "var": ("mean", "m2", "s1", "s2"),
    "std": ("mean", "m2", "s1", "s2"),
    "min": ("min",),
    "max": ("max",),
}


def parse_stats(value: Any) -> tuple[str, ...] | None:
    """Return the results asked for (in the kernel's order), or None for all of them."""
    if value is None:
        return None
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names:
        raise ValueError(f"-p stats must be names such as mean,std, got {value!r}")
    words = [name.strip() if isinstance(name, str) else name for name in names]
    unknown = [word for word in words if word not in RESULTS]
    if unknown:
        raise ValueError(f"-p stats: no result {unknown[0]!r} (the results: {', '.join(RESULTS)})")
    return tuple(name for name in RESULTS if name in words)


def needed_parts(params: Mapping[str, Any], histogram: bool = False) -> set[str] | None:
    """Return the parts of a partial the asked-for results need, or None (all of them)."""
    asked = parse_stats(params.get("stats"))
    if asked is None:
        return None
    needed = {"count", *HISTOGRAM} | {part for name in asked for part in _NEEDS[name]}
    if histogram:
        needed.add("min")  # its dtype is the edges' (stats.finalize_stats)
    return needed


def trim_partial(partial: Partial, params: Mapping[str, Any]) -> Partial:
    """Return ``partial`` without the parts no asked-for result needs (histograms stay)."""
    needed = needed_parts(params, "hist" in partial)
    if needed is None:
        return partial
    return {key: value for key, value in partial.items() if key in needed}


def trim_results(results: Partial, params: Mapping[str, Any]) -> Partial:
    """Return only the asked-for results (and the histogram's, which ``range`` asks for)."""
    asked = parse_stats(params.get("stats"))
    if asked is None:
        return results
    return {key: value for key, value in results.items() if key in asked or key in HISTOGRAM}
