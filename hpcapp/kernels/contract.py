"""Prove a kernel's contract on one process, in a second, before a big run (``hpcapp check``).

hpcapp combines partials in a tree whose shape depends on the chunk size, never on the rank
count; a kernel gives the same answer on 1 and 1,000 ranks only if its partials combine the same
way however the rows are cut and however the tree pairs them. A wrong ``combine`` (a mean
combined by sum, means of unequal chunks averaged) runs without error and gives a wrong number,
so it is checked here instead: serially, with numpy, no MPI. Each check cuts the same rows in
many random ways and compares the finalized results with those of one chunk: bitwise for
integers, booleans and keys combined by min/max, within a relative tolerance (reported) for
other floats.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from hpcapp.errors import HpcappError
from hpcapp.kernels.api import Kernel
from hpcapp.kernels.declare import key_problem
from hpcapp.kernels.grouped import Labelled
from hpcapp.kernels.hookspec import Extended, Partial
from hpcapp.kernels.partials import as_partial, check_compatible

DEFAULT_RTOL = 1e-8
MIN_TRIALS = 2  # cuts tried whatever the time budget: one in two pieces, one random


@dataclasses.dataclass
class CheckReport:
    """What :func:`check_contract` found: one line per broken rule, and the checks that ran."""

    kernel: str
    n_rows: int
    notes: list[str] = dataclasses.field(default_factory=list)  # what was checked, and how
    checks: list[str] = dataclasses.field(default_factory=list)
    failures: list[str] = dataclasses.field(default_factory=list)
    largest_difference: float = 0.0  # largest relative difference of float results that passed

    @property
    def ok(self) -> bool:
        """Return True when every rule held."""
        return not self.failures

    def text(self) -> str:
        """Return the report as ``hpcapp check`` prints it."""
        lines = [f"hpcapp check: kernel {self.kernel!r} on {self.n_rows:,} rows"]
        lines += [f"  note  {note}" for note in self.notes]
        lines += [f"  ok    {check}" for check in self.checks]
        lines += [f"  FAIL  {failure}" for failure in self.failures]
        if self.ok:
            lines.append(
                "  all rules hold; float results agreed within "
                f"{self.largest_difference:.1e} relative across cuts and tree shapes"
            )
        return "\n".join(lines)


def _exact_keys(kernel: Kernel, partial: Partial) -> set[str]:
    """Return the keys whose combine is min or max: equal bits whatever the cut."""
    if isinstance(kernel.combine, str):
        return set(partial) if kernel.combine in ("min", "max") else set()
    if isinstance(kernel.combine, Mapping):
        return {key for key, op in kernel.combine.items() if op in ("min", "max")}
    return set()


def _show(value: np.ndarray | None) -> str:
    if value is None:  # a key the result lacks
        return "nothing"
    with np.printoptions(precision=6, threshold=6, edgeitems=2):
        return str(value if value.ndim else value[()])


class _Checker:
    """The state of one check: the kernel, its parameters, and the report being filled."""

    def __init__(self, kernel: Kernel, params: Mapping[str, Any], report: CheckReport, rtol: float):
        self.kernel = kernel
        self.params = dict(params)
        self.report = report
        self.rtol = rtol
        self.exact: set[str] = set()

    def fail(self, message: str) -> None:
        if message not in self.report.failures:
            self.report.failures.append(message)

    def differs(self, key: str, a: np.ndarray, b: np.ndarray) -> str | None:
        """Return why two results of ``key`` differ, or None if they agree."""
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"shape {a.shape} dtype {a.dtype} vs shape {b.shape} dtype {b.dtype}"
        if a.dtype.kind != "f" or key in self.exact:
            same = np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
            return None if same else "not bitwise equal"
        finite = np.isfinite(a) & np.isfinite(b)
        if not np.array_equal(np.isnan(a), np.isnan(b)) or not np.array_equal(
            a[~finite], b[~finite], equal_nan=True
        ):
            return "NaN/inf in different places"
        scale = max(float(np.max(np.abs(a[finite]), initial=0.0)), np.finfo(np.float64).tiny)
        gap = float(np.max(np.abs(a[finite].astype(np.float64) - b[finite]), initial=0.0)) / scale
        if gap > self.rtol:
            return f"relative difference {gap:.2e} > {self.rtol:.0e}"
        self.report.largest_difference = max(self.report.largest_difference, gap)
        return None

    def partial(self, chunk: Any, n_rows: int, where: str) -> tuple[Partial, Partial] | None:
        """Apply the kernel to one chunk; return (reduced keys, per-row keys) or record why not."""
        try:
            partial = as_partial(self.kernel.apply(chunk, self.params, n_rows=n_rows), "kernel")
        except Exception as exc:
            self.fail(f"the kernel raised on {where}: {type(exc).__name__}: {exc}")
            return None
        problem = key_problem(self.kernel, partial)
        if problem:
            self.fail(problem)  # a declaration: the same on every chunk
            return None
        rows = {}
        for key in self.kernel.per_row:
            value = partial.pop(key)
            if value.ndim == 0 or len(value) != n_rows:
                self.fail(
                    f"per-row key {key!r} must have {n_rows} rows on {where}, got {value.shape}"
                )
                return None
            rows[key] = value
        # Only per-row keys: nothing to combine, which run accepts (it combines empty partials).
        return partial, rows

    def combine(self, partials: list[Partial], shape: str) -> Partial | None:
        """Combine partials left to right, as a balanced tree, or right to left."""
        try:
            if shape == "left":
                result = partials[0]
                for right in partials[1:]:
                    result = self.kernel.merge(result, right)
                return result
            if shape == "right":
                result = partials[-1]
                for left in reversed(partials[:-1]):
                    result = self.kernel.merge(left, result)
                return result
            level = list(partials)
            while len(level) > 1:
                pairs = [
                    self.kernel.merge(a, b) for a, b in zip(level[::2], level[1::2], strict=False)
                ]
                level = pairs + ([level[-1]] if len(level) % 2 else [])
            return level[0]
        except HpcappError as exc:
            self.fail(f"partials do not combine: {exc}")
        except Exception as exc:
            self.fail(f"combine raised {type(exc).__name__}: {exc}")
        return None

    def finish(self, partial: Partial) -> Partial | None:
        try:
            return self.kernel.finish(copy.deepcopy(partial), self.params)
        except Exception as exc:
            self.fail(f"finalize raised {type(exc).__name__}: {exc}")
            return None


def _hint(kernel: Kernel, key: str, whole: Any, pieces: list[Any], sizes: list[int]) -> str:
    """Guess what is wrong with a key whose result depends on the cut, and how to fix it."""
    op = kernel.combine if isinstance(kernel.combine, str) else None
    if isinstance(kernel.combine, Mapping):
        op = kernel.combine.get(key, "sum")
    try:
        whole = np.asarray(whole, dtype=np.float64)
        stack = np.stack([np.asarray(p, dtype=np.float64) for p in pieces])
    except (TypeError, ValueError):
        return "the value depends on how the rows are cut"

    def near(x: np.ndarray) -> bool:
        return bool(np.allclose(x, whole, rtol=1e-9, atol=1e-12, equal_nan=True))

    if near(np.average(stack, axis=0, weights=np.asarray(sizes, dtype=np.float64))):
        if op == "sum":
            return (
                "a mean does not combine by sum; return the sum and the count and divide in "
                "finalize"
            )
        return (
            "this looks like a mean: averaging the means of unequal chunks is wrong; carry the "
            "sum and the count, combine both by sum and divide in finalize"
        )
    # Only a key combined by sum can be a mistaken min or max (a custom combine is the user's).
    if op == "sum" and near(stack.max(axis=0)):
        return f"this looks like a maximum: declare combine={{{key!r}: 'max'}}"
    if op == "sum" and near(stack.min(axis=0)):
        return f"this looks like a minimum: declare combine={{{key!r}: 'min'}}"
    return (
        "the value depends on how the rows are cut: return quantities that add up across "
        "chunks (sums, counts) or declare min/max, and compute ratios in finalize"
    )


def _per_group(partial: Partial, grouped: bool) -> Partial:
    """Return what must match between chunks: a grouped partial's keys, dtypes, group shapes.

    Chunks of a grouped job hold different groups; their merge takes the union.
    """
    return {key: value[:0] for key, value in partial.items()} if grouped else partial


def random_cuts(n_rows: int, rng: np.random.Generator, max_pieces: int = 8) -> list[int]:
    """Return cut points ``[0, ..., n_rows]`` into 2 to ``max_pieces`` non-empty runs."""
    n_pieces = int(rng.integers(2, min(max_pieces, n_rows) + 1))
    inner = np.sort(rng.choice(np.arange(1, n_rows), size=n_pieces - 1, replace=False))
    return [0, *(int(c) for c in inner), n_rows]


def check_contract(
    kernel: Kernel,
    data: np.ndarray | None,
    params: Mapping[str, Any],
    *,
    n_rows: int | None = None,
    labels: np.ndarray | None = None,
    trials: int = 20,
    seed: int = 0,
    rtol: float = DEFAULT_RTOL,
    seconds: float | None = None,
    times: np.ndarray | None = None,
    first_row: int = 0,
) -> CheckReport:
    """Run every check of a kernel on ``data`` (or, for a generating kernel, ``n_rows``).

    ``labels`` (one per row) makes each chunk ``Labelled(rows, labels)``, as a grouped run
    hands it to its (grouped) kernel. A kernel declaring ``times``/``coords`` gets each chunk
    as ``Extended``, with its records' ``times`` (one per row, or None) and its index from
    ``first_row`` (the input's index of ``data[0]``). ``seconds``: stop trying cuts once that
    much time is spent (after :data:`MIN_TRIALS` cuts at least); the report says how many were
    tried.
    """
    started = time.perf_counter()
    if data is not None:
        total = len(data)
    elif n_rows is not None:
        total = int(n_rows)
    else:
        raise TypeError("check_contract needs data, or n_rows for a generating kernel")
    report = CheckReport(kernel.name, total)
    checker = _Checker(kernel, params, report, rtol)
    rng = np.random.default_rng(seed)
    if total < 2:
        checker.fail(f"need at least 2 rows to cut, got {total}")
        return report

    def chunk_of(index: int, start: int, stop: int) -> Any:
        """Return chunk ``index`` (rows start..stop): a copy of the rows, or its generator."""
        if data is not None and labels is not None:
            return Labelled(np.array(data[start:stop], copy=True), labels[start:stop])
        if data is not None and (kernel.times or kernel.coords):
            dates = times[start:stop] if times is not None else None
            return Extended(np.array(data[start:stop], copy=True), dates, (0, 0), first_row + start)
        if data is not None:
            return np.array(data[start:stop], copy=True)
        # Seeded as the engine seeds a generating kernel's chunks (hpcapp.io.reader).
        seed_sequence = np.random.SeedSequence(int(kernel.seed(params)), spawn_key=(index,))
        return np.random.default_rng(seed_sequence)

    first = chunk_of(0, 0, total)
    whole = checker.partial(first, total, f"all {total} rows")
    if whole is None:
        return report
    checker.exact = _exact_keys(kernel, whole[0])
    _check_pure(checker, chunk_of, data, total, whole, first)
    if report.failures:
        return report
    whole_result = checker.finish(whole[0])
    if whole_result is None:
        return report
    again = checker.finish(whole[0])
    for key, value in whole_result.items():
        if again is not None and not np.array_equal(value, again[key], equal_nan=True):
            checker.fail(f"finalize is not deterministic: key {key!r} differs between two calls")
    report.checks.append("finalize gives the same bits twice")

    done = 0
    for trial in range(trials):
        spent = time.perf_counter() - started
        if seconds is not None and trial >= MIN_TRIALS and spent > seconds:
            report.notes.append(
                f"{done} of {trials} cuts tried: the time budget of {seconds:g} s was spent"
            )
            break
        done += 1
        # The first cut is in two, the simplest case to read in a message.
        cuts = random_cuts(total, rng, max_pieces=2 if trial == 0 else 8)
        tried = [
            checker.partial(chunk_of(i, a, b), b - a, f"rows {a}-{b - 1}")
            for i, (a, b) in enumerate(itertools.pairwise(cuts))
        ]
        pieces = [p for p in tried if p is not None]
        if len(pieces) < len(tried):
            return report
        partials = [p[0] for p in pieces]
        try:
            first = _per_group(partials[0], labels is not None)
            for other in partials[1:]:
                check_compatible(first, _per_group(other, labels is not None))
        except HpcappError as exc:
            checker.fail(f"partials of different chunks do not match: {exc}")
            return report
        sizes = [b - a for a, b in itertools.pairwise(cuts)]
        folded = {shape: checker.combine(partials, shape) for shape in ("left", "tree", "right")}
        combined = {shape: value for shape, value in folded.items() if value is not None}
        if len(combined) < len(folded):
            return report
        finished = {shape: checker.finish(value) for shape, value in combined.items()}
        results = {shape: value for shape, value in finished.items() if value is not None}
        if len(results) < len(finished):
            return report
        spans = ", ".join(f"{a}-{b - 1}" for a, b in itertools.pairwise(cuts))
        if not kernel.generates:
            for key, value in whole_result.items():
                got = results["left"].get(key)
                why = "missing" if got is None else checker.differs(key, value, got)
                if why:
                    hint = _hint(kernel, key, whole[0].get(key), [p[key] for p in partials], sizes)
                    checker.fail(
                        f"key {key!r}: {_show(value)} on one chunk vs {_show(got)} on "
                        f"{len(partials)} chunks (rows {spans}; {why}): {hint}"
                    )
            for key, value in whole[1].items():
                joined = np.concatenate([p[1][key] for p in pieces])
                why = checker.differs(key, value, joined)
                if why:
                    checker.fail(
                        f"per-row key {key!r} depends on how the rows are cut ({why}, rows "
                        f"{spans}): each row's value must depend on that row only"
                    )
        for shape, how in (("tree", "as a balanced tree"), ("right", "right to left")):
            for key, value in results["left"].items():
                why = checker.differs(key, value, results[shape][key])
                if why:
                    checker.fail(
                        f"key {key!r}: {_show(value)} folded left to right vs "
                        f"{_show(results[shape][key])} combined {how} over the same "
                        f"{len(partials)} chunks ({why}): combine must be associative, "
                        "combine(combine(a, b), c) == combine(a, combine(b, c))"
                    )
        if report.failures:
            return report
    if not kernel.generates:
        report.checks.append(f"results do not depend on how the rows are cut ({done} cuts)")
    report.checks.append(f"results do not depend on the shape of the tree ({done} cuts)")
    return report


def _check_pure(
    checker: _Checker,
    chunk_of: Callable[[int, int, int], Any],
    data: np.ndarray | None,
    total: int,
    whole: tuple[Partial, Partial],
    chunk: Any,
) -> None:
    """Check the kernel left ``chunk`` (its first) alone and gives the same bits again."""
    if data is not None:
        rows = chunk.data if isinstance(chunk, Labelled | Extended) else chunk
        if not np.array_equal(rows, data, equal_nan=rows.dtype.kind in "fc"):
            checker.fail(
                "the kernel modifies its input chunk: hpcapp reuses the read buffer, so work on "
                "a copy (e.g. values = chunk * 2, not chunk *= 2)"
            )
            return
        checker.report.checks.append("the kernel leaves its input chunk unchanged")
    again = checker.partial(chunk_of(0, 0, total), total, f"all {total} rows")
    if again is None:
        return
    for key, value in {**whole[0], **whole[1]}.items():
        other = {**again[0], **again[1]}.get(key)
        if other is None or not np.array_equal(value, other, equal_nan=value.dtype.kind in "fc"):
            checker.fail(
                f"key {key!r} differs between two calls on the same chunk: the kernel must not "
                "use global random state or other hidden state (a generating kernel gets its rng)"
            )
            return
    checker.report.checks.append("the same chunk gives the same bits twice")
    keys = sorted(whole[0]) + [f"{k} (per row)" for k in sorted(whole[1])]
    checker.report.checks.append(f"partial keys: {', '.join(keys)}")
