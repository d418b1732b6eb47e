"""Prove that a series kernel's results do not depend on how the cells are tiled (``check``).

A series kernel (declared ``series=True``) is called by the transpose with every record of a
tile of cells, ``(records, cells)``; which cells share a tile depends on the rank count and on
the batches ``--memory-per-rank`` allows. Its results have the same bits on any number of ranks
only if each cell's results come from that cell's series alone. :func:`check_tiling` runs the
kernel on a sample in one tile, then tiled as ranks and batches tile it (one cell per tile,
each rank count's tiles with an empty one, whole rows of the kept dimensions, random uneven
tiles crossing those rows), joins each tiling's results as ``run`` gathers them (float64, one
value per cell last) and compares them with the one tile's, bit for bit, NaN where NaN.
Serial, numpy only, no MPI.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hpcapp.kernels.api import Kernel
from hpcapp.kernels.contract import CheckReport
from hpcapp.partition import tiles

Tiling = list[tuple[int, int]]  # (first cell, end cell) of each tile, in order
MIN_TRIALS = 2  # random tilings tried whatever the time budget


@dataclasses.dataclass
class SeriesReport(CheckReport):
    """What :func:`check_tiling` found; ``tilings`` counts the ways the cells were tiled."""

    tilings: int = 0

    def text(self) -> str:
        """Return the report as ``hpcapp check`` prints it."""
        lines = CheckReport.text(self).splitlines()
        if self.ok:  # a series kernel's results are compared bitwise, not within a tolerance
            lines[-1] = (
                f"  all rules hold; results were bitwise identical over {self.tilings} "
                "tilings of the cells"
            )
        return "\n".join(lines)


def fixed_tilings(kept: Sequence[int]) -> list[tuple[str, Tiling]]:
    """Return the tilings every check tries on cells of the kept shape ``kept``.

    One cell per tile; the tiles of 2 and 3 ranks, and of more ranks than cells (an empty
    tile, which a rank then holds); whole slabs of the first kept dimension (a batch's cells).
    """
    n = math.prod(kept)
    found = [("1 cell per tile", [(i, i + 1) for i in range(n)])]
    for size in (2, 3, n + 1):
        found.append((f"the tiles of {size} ranks", [(a, a + c) for c, a in tiles(n, size)]))
    if len(kept) > 1 and kept[0] > 1:
        inner = math.prod(kept[1:])
        slabs = [(s * inner, (s + 1) * inner) for s in range(kept[0])]
        found.append((f"tiles of whole slabs of {inner} cells", slabs))
    return found


def random_tiling(n: int, row: int, rng: np.random.Generator) -> Tiling:
    """Return uneven tiles of ``n`` cells; one cut, at least, inside a row of ``row`` cells."""
    if n < 2:
        return [(0, n)]
    cuts = set(rng.choice(np.arange(1, n), size=rng.integers(1, min(n - 1, 6) + 1), replace=False))
    if row > 1 and all(cut % row == 0 for cut in cuts):
        inside = [c for c in range(1, n) if c % row]
        if inside:
            cuts.add(int(rng.choice(inside)))
    bounds = [0, *sorted(int(c) for c in cuts), n]
    return list(itertools.pairwise(bounds))


def tiling_text(tiling: Tiling) -> str:
    """Return tiles as ``cells 0-4, 5-11`` (at most eight shown)."""
    shown = [f"{a}-{b - 1}" if b - a > 1 else (str(a) if b > a else "none") for a, b in tiling]
    more = f", ... ({len(tiling)} tiles)" if len(shown) > 8 else ""
    return "cells " + ", ".join(shown[:8]) + more


def _bits_differ(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return where two float64 arrays of one shape differ in bits (NaN equals NaN)."""
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    same = (a.view(np.uint64) == b.view(np.uint64)) | (nan_a & nan_b)
    return ~same


class _Tiler:
    """One check's state: the kernel, its parameters, the sample, and the report."""

    def __init__(self, kernel: Kernel, values: np.ndarray, params: Mapping[str, Any], kept: Any):
        self.kernel = kernel
        self.values = values  # (records, cells), float64, as the transpose hands them over
        self.params = dict(params)
        self.kept = tuple(kept)
        self.report = SeriesReport(kernel.name, values.shape[0])

        self.failed: dict[str, list[Any]] = {}  # a rule's first message, then tilings failing it

    def fail(self, message: str, rule: str | None = None) -> None:
        """Report a broken rule once: its first message, and how many tilings broke it."""
        rule = rule or message
        if rule in self.failed:
            self.failed[rule][1] += 1
            return
        self.failed[rule] = [len(self.report.failures), 1]
        self.report.failures.append(message)

    def finish(self) -> None:
        """Add to each failure how many more tilings broke the same rule."""
        for index, count in self.failed.values():
            if count > 1:
                self.report.failures[index] += f" (and with {count - 1} more tilings)"

    def tile(self, first: int, end: int, how: str) -> dict[str, np.ndarray] | None:
        """Run the kernel on cells ``[first, end)`` (a fresh contiguous copy); None on failure."""
        series = np.array(self.values[:, first:end], dtype=np.float64, order="C")
        where = f"cells {first}-{end - 1}" if end > first + 1 else f"cell {first}"
        where = where if end > first else "an empty tile"
        try:
            found = self.kernel.apply(series, self.params)
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
            self.fail(f"the kernel raised on {where} ({how}): {why}", f"raised {why}")
            return None
        if not isinstance(found, Mapping) or not found:
            self.fail(f"the kernel returned {type(found).__name__}, not a dict of results")
            return None
        out = {}
        for key, value in found.items():
            array = np.asarray(value)
            if array.ndim == 0 or array.shape[-1] != end - first:
                self.fail(
                    f"result {key!r} must end with one value per cell: {where} ({how}, "
                    f"{end - first} cells) gave shape {array.shape}",
                    f"cells {key}",
                )
                return None
            out[str(key)] = np.ascontiguousarray(array, np.float64)  # as run gathers it
        return out

    def tiled(self, tiling: Tiling, how: str) -> dict[str, np.ndarray] | None:
        """Return the results of every tile, joined along the cells (None on a failure)."""
        parts = []
        for first, end in tiling:
            found = self.tile(first, end, how)
            if found is None:
                return None
            parts.append(found)
        keys = set(parts[0])
        for part, (first, end) in zip(parts, tiling, strict=True):
            if set(part) != keys:
                self.fail(
                    f"the kernel returns {', '.join(sorted(part))} on cells {first}-{end - 1} "
                    f"but {', '.join(sorted(keys))} on cells {tiling[0][0]}-{tiling[0][1] - 1} "
                    f"({how})",
                    "keys",
                )
                return None
        joined = {}
        for key in keys:
            leads = {part[key].shape[:-1] for part in parts}
            if len(leads) > 1:
                self.fail(
                    f"result {key!r} depends on how the cells are tiled: its tiles' results "
                    f"lead with shapes {', '.join(str(s) for s in sorted(leads))} ({how}); "
                    "run needs the same leading shape on every tile",
                    f"lead {key}",
                )
                return None
            joined[key] = np.concatenate([part[key] for part in parts], axis=-1)
        return joined

    def compare(self, reference: dict[str, np.ndarray], tiling: Tiling, how: str) -> None:
        """Compare one tiling's joined results with the one tile's; report what differs."""
        got = self.tiled(tiling, how)
        self.report.tilings += 1
        if got is None:
            return
        if set(got) != set(reference):
            self.fail(
                f"{how}: the results are {', '.join(sorted(got))}, in one tile "
                f"{', '.join(sorted(reference))}",
                "keys",
            )
            return
        for key, want in reference.items():
            value = got[key]
            if value.shape != want.shape:
                self.fail(
                    f"result {key!r} depends on how the cells are tiled: shape {value.shape} "
                    f"with {how} ({tiling_text(tiling)}), {want.shape} in one tile",
                    f"shape {key}",
                )
                continue
            wrong = _bits_differ(value, want)
            if wrong.any():
                self.fail(self._differs(key, wrong, value, want, tiling, how), f"bits {key}")

    def _differs(
        self, key: str, wrong: np.ndarray, got: np.ndarray, want: np.ndarray, tiling: Tiling,
        how: str,
    ) -> str:  # fmt: skip
        """Say where a result differs: how many values, the first cell, its two values."""
        at = np.unravel_index(int(np.flatnonzero(wrong)[0]), wrong.shape)
        lead, cell = at[:-1], int(at[-1])
        place = np.unravel_index(cell, self.kept) if self.kept else ()
        index = ", ".join(str(int(i)) for i in (*lead, *place))
        return (
            f"result {key!r} depends on how the cells are tiled: {int(wrong.sum()):,} of "
            f"{wrong.size:,} values differ with {how} ({tiling_text(tiling)}); first at "
            f"[{index}]: {float(got[at])!r} there, {float(want[at])!r} in one tile. Each "
            "cell's results must come from its own series alone (a tile's mean, count or "
            "order must not enter them)"
        )


def check_tiling(
    kernel: Kernel,
    series: np.ndarray,
    params: Mapping[str, Any],
    *,
    trials: int = 20,
    seed: int = 0,
    seconds: float | None = None,
    written: Sequence[int] | None = None,
) -> SeriesReport:
    """Check that ``kernel``'s results on ``series`` (records, *kept) do not depend on tiles.

    Every fixed tiling is tried, then random ones until ``trials`` or ``seconds`` (at least
    :data:`MIN_TRIALS`). The report names the kernel and each rule that failed. ``written``
    is the shape of the input ``run`` reads (records, *kept), for the notes on the outputs.
    """
    values = np.asarray(series, np.float64).reshape(len(series), -1)
    kept = tuple(np.shape(series)[1:])
    tiler = _Tiler(kernel, values, params, kept)
    report = tiler.report
    n = values.shape[1]
    reference = tiler.tile(0, n, "every cell in one tile")
    if reference is None:
        return report
    whole = tuple(written) if written is not None else (len(values), *kept)
    for key in sorted(reference):
        lead = reference[key].shape[:-1]
        if lead[:1] == (len(values),):
            shape, kind = (*whole[:1], *lead[1:], *whole[1:]), "a per-row series"
        else:
            shape, kind = (*lead, *whole[1:]), "per cell"
        report.notes.append(f"result {key!r}: {kind}, written with shape {shape}")
    if n < 2:
        report.notes.append("one cell only: its tiles cannot differ (give more cells to check)")
    started = time.perf_counter()
    for how, tiling in fixed_tilings(kept or (n,)):
        tiler.compare(reference, tiling, how)
    rng = np.random.default_rng(seed)
    row = kept[-1] if len(kept) > 1 else n
    for trial in range(max(trials, MIN_TRIALS)):
        late = seconds is not None and time.perf_counter() - started > seconds
        if n < 3 or (trial >= MIN_TRIALS and late):
            break
        tiler.compare(reference, random_tiling(n, row, rng), "random uneven tiles")
    tiler.finish()
    report.checks.append(
        f"results on {n:,} cells in one tile equal those of {report.tilings} other tilings "
        "bit for bit (one cell per tile, the tiles of 2, 3 and more ranks than cells, "
        "whole slabs, random tiles crossing rows of the kept dimensions)"
    )
    if report.failures:
        report.checks.pop()
    return report
