"""The kernel object: a function per chunk with how its partials combine and its hooks.

``hpcapp.kernel(...)`` returns a :class:`Kernel`, checked where it is defined; the object is
still callable like the function (``k(chunk, **params)``), so a kernel can be unit-tested as
one. Each hook's calling convention is specified in :mod:`hpcapp.kernels.hookspec`. A plain
function is a kernel whose keys all combine by sum. Nothing here imports MPI.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral
from typing import Any

from hpcapp.errors import KernelError, UsageError
from hpcapp.kernels.declare import declaration
from hpcapp.kernels.hookspec import (
    DEFAULT_OVER,
    ChunkCoords,
    CoordGrid,
    Extended,
    Halo,
    InputInfo,
    Partial,
)
from hpcapp.kernels.partials import as_partial, check_compatible, keep_attrs, with_attrs

# The public face of the contract (the partial helpers are defined in partials.py).
__all__ = [
    "ChunkCoords",
    "InputInfo",
    "Kernel",
    "Partial",
    "as_partial",
    "check_compatible",
    "from_function",
    "kernel",
    "with_attrs",
]

Combine = str | Mapping[str, str] | Callable[[Partial, Partial], Partial]
Hook = Callable[..., Any]


@dataclasses.dataclass(frozen=True, eq=False)
class Kernel:
    """A kernel function with its combine rule, hooks and declarations (see hookspec)."""

    func: Callable[..., Partial]
    name: str
    combine: Combine = "sum"
    finalize: Hook | None = None  # finalize(partial, params) -> results
    validate: Hook | None = None  # validate(params, data: InputInfo) -> None
    prepare: Hook | None = None  # prepare(params, data: InputInfo) -> None
    per_row: tuple[str, ...] = ()  # keys written row by row, never combined
    returns: tuple[str, ...] | None = None  # the keys it returns, if declared
    elementwise: bool = False  # the combine function works element by element
    over: bool = False  # called with over=(axes to reduce), from --over
    times: bool = False  # called with times=(the chunk's records' decoded dates)
    halo: Hook | None = None  # halo(params) -> (before, after): records read around a chunk
    coords: bool = False  # called with coords=ChunkCoords(times, dims, values, weights, rows)
    coord_grid: CoordGrid | None = None  # what coords shares, bound by the job (with_grid)
    climatology_param: str | None = None  # takes FILE:/VAR of group means (jobs/twopass.py)
    generates: bool = False  # called as f(rng, n_rows, **params): no input
    rows_param: str | None = None  # generating: the parameter giving the total rows
    seed_param: str | None = None  # generating: the parameter seeding the chunks' generators
    series: bool = False  # called with whole series, (records, cells): run by the transpose
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    required: tuple[str, ...] = ()
    accepts_any: bool = False  # takes **params
    # Takes CF-packed chunks as hpcapp.kernels.packed.Packed (stored integers and their linear
    # unpacking) and decodes them itself; set by the built-in stats and rolling, not by
    # @hpcapp.kernel.
    packed: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        # Look like the function to help(), inspect.signature, pytest ids and tracebacks.
        for attribute in functools.WRAPPER_ASSIGNMENTS:
            if hasattr(self.func, attribute):
                object.__setattr__(self, attribute, getattr(self.func, attribute))
        object.__setattr__(self, "__wrapped__", self.func)

    def __call__(self, *args: Any, **params: Any) -> Any:
        """Call the kernel's function: ``k(chunk, **params)``, as in a unit test."""
        return self.func(*args, **params)

    def check_params(
        self,
        given: Mapping[str, Any],
        data: InputInfo | None = None,
        *,
        over: tuple[int, ...] = DEFAULT_OVER,
    ) -> dict[str, Any]:
        """Return the full parameter set, refusing unknown, missing or invalid values.

        ``over`` (the sorted axes of ``--over``) joins the parameters of a kernel declared
        ``over=True``. ``data`` describes the input for the kernel's ``validate`` hook.
        """
        if "over" in given:
            raise UsageError("give the dimensions to reduce with --over, not -p over")
        known = list(self.defaults) + list(self.required)
        if not self.accepts_any:
            for name in given:
                if name not in known:
                    hint = difflib.get_close_matches(name, known, n=1)
                    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                    listed = ", ".join(known) if known else "none"
                    raise UsageError(
                        f"kernel {self.name!r} has no parameter {name!r}{suggestion} "
                        f"(its parameters: {listed})"
                    )
        missing = [name for name in self.required if name not in given]
        if missing:
            raise UsageError(
                f"kernel {self.name!r} needs parameter(s) {', '.join(missing)}: "
                f"pass -p {missing[0]}=VALUE"
            )
        params = {**self.defaults, **given, **({"over": tuple(over)} if self.over else {})}
        seed = self.seed(params)
        if not isinstance(seed, Integral) or isinstance(seed, bool) or seed < 0:
            # The chunks' generators are seeded from it: 1.5 or true would be taken as 1.
            raise UsageError(
                f"kernel {self.name!r}: -p {self.seed_param} must be a non-negative integer, "
                f"got {seed!r}"
            )
        if self.validate is not None:
            described = data or InputInfo()
            described = dataclasses.replace(described, given=frozenset(given))
            try:
                self.validate(params, described)
            except (ValueError, TypeError) as exc:
                raise UsageError(f"kernel {self.name!r}: {exc}") from None
        return params

    def seed(self, params: Mapping[str, Any]) -> Any:
        """Return the job's seed of a generating kernel's chunks (0 unless it names one)."""
        return params.get(self.seed_param, 0) if self.seed_param else 0

    def apply(self, first: Any, params: Mapping[str, Any], n_rows: int | None = None) -> Any:
        """Call the kernel on one chunk (or, for a generating kernel, on its rng and size)."""
        if self.generates:
            return self.func(first, n_rows, **params)
        if not (self.times or self.halo is not None or self.coords):
            return self.func(first, **params)
        # A plain array (a unit test, a memory estimate): no halo, no known dates.
        item = first if isinstance(first, Extended) else Extended(first)
        times = item.times
        if times is None and (self.times or self.coords):
            import numpy as np

            times = np.full(len(item.data), None, dtype=object)
        extra: dict[str, Any] = {}
        if self.times:
            extra["times"] = times
        if self.halo is not None:
            extra["halo"] = Halo(*item.halo, start=item.start)
        if self.coords:
            grid = self.coord_grid or CoordGrid()
            extra["coords"] = grid.chunk(item.data, times, item.start)
        return self.func(item.data, **params, **extra)

    def with_grid(self, grid: CoordGrid | None) -> Kernel:
        """Return this kernel with the coordinates its chunks share (a kernel declaring coords)."""
        return dataclasses.replace(self, coord_grid=grid) if self.coords else self

    def merge(self, left: Partial, right: Partial) -> Partial:
        """Combine the partials of two neighbouring runs of chunks (``left`` comes first)."""
        import numpy as np

        if callable(self.combine):
            if left.keys() != right.keys():
                raise KernelError(
                    f"partials have different keys: {sorted(left)} vs {sorted(right)}"
                )
            merged = self.combine(left, right)
            if not isinstance(merged, Mapping):
                raise KernelError(f"combine of kernel {self.name!r} returned {type(merged)}")
            return {key: np.asarray(value) for key, value in merged.items()}
        check_compatible(left, right)
        out: Partial = {}
        for key, value in left.items():
            op = self.combine if isinstance(self.combine, str) else self.combine.get(key, "sum")
            ufunc = {"sum": np.add, "min": np.minimum, "max": np.maximum}[op]
            out[key] = np.asarray(ufunc(value, right[key]))
        return out

    def finish(self, partial: Partial, params: Mapping[str, Any]) -> Partial:
        """Turn the combined partial into the results (once, on rank 0)."""
        if self.finalize is None:
            return partial
        results = self.finalize(partial, params)
        if not isinstance(results, Mapping):
            raise KernelError(f"finalize of kernel {self.name!r} returned {type(results)}")
        return {key: keep_attrs(value) for key, value in results.items()}


def kernel(
    func_or_combine: Any = None,
    /,
    *,
    combine: Combine | None = None,
    finalize: Hook | None = None,
    validate: Hook | None = None,
    prepare: Hook | None = None,
    per_row: str | Sequence[str] = (),
    returns: str | Sequence[str] | None = None,
    elementwise: bool = False,
    over: bool = False,
    generates: bool = False,
    rows_param: str | None = None,
    seed_param: str | None = None,
    times: bool = False,
    halo: Hook | None = None,
    climatology_param: str | None = None,
    series: bool = False,
    coords: bool = False,
) -> Any:
    """Make a :class:`Kernel` of a function; used as a decorator, with or without options.

    ``combine`` is ``"sum"`` (the default), ``"min"`` or ``"max"`` for every key, a mapping
    from key to one of those (keys left out are summed), or a function ``combine(left, right)``
    (associative; ``elementwise=True`` if it treats every element of the leading axis on its
    own). A string or mapping may come first (``@hpcapp.kernel("max")``); a function given
    first is the kernel itself, so a bare ``@hpcapp.kernel`` declares the defaults.
    ``finalize(partial, params)``, ``validate(params, data)`` and ``prepare(params, data)`` are
    the hooks of :mod:`hpcapp.kernels.hookspec`. ``per_row`` names keys (one name or several)
    holding one row per input row, written in input order instead of combined; ``returns``
    (optional) names every key the kernel returns, so that the combine mapping and ``per_row``
    are checked here, and the returned keys at each chunk. ``over=True``: the kernel is called
    with ``over``, the sorted tuple of axes to reduce (``--over``). ``generates=True``: called
    as ``f(rng, n_rows, **params)`` with no input; ``rows_param`` names the parameter giving the
    total rows, ``seed_param`` (optional) the one seeding the chunks' generators.
    ``times=True``: called with ``times``, the decoded dates of the chunk's records (the input's
    CF time coordinate along its first dimension). ``halo=h``: each chunk comes with ``h(params)
    = (before, after)`` records around it (for windows) and the kernel is called with ``halo``,
    the records of each side it got. ``coords=True``: called with ``coords``, the chunk's
    :class:`~hpcapp.kernels.hookspec.ChunkCoords` (its records' dates and rows, the other
    dimensions' coordinate values, the ``--weights``). ``climatology_param`` names the
    parameter taking ``FILE:/VAR`` of per-group means: with ``--group-by`` and without it, the
    job computes them first (:mod:`hpcapp.jobs.twopass`).
    ``series=True``: called with every record of a tile of cells, ``(records, cells)``, and
    returns results whose last axis runs over those cells (``hpcapp check`` tiles them).
    Declarations of the wrong type or value raise TypeError or ValueError naming the kernel.
    """
    options: dict[str, Any] = {  # declaration() checks them all
        "finalize": finalize,
        "validate": validate,
        "prepare": prepare,
        "per_row": per_row,
        "returns": returns,
        "elementwise": elementwise,
        "over": over,
        "generates": generates,
        "rows_param": rows_param,
        "seed_param": seed_param,
        "times": times,
        "halo": halo,
        "climatology_param": climatology_param,
        "series": series,
        "coords": coords,
    }
    if callable(func_or_combine):  # bare @hpcapp.kernel, or hpcapp.kernel(f, finalize=...)
        return kernel(combine=combine, **options)(func_or_combine)
    if func_or_combine is not None and combine is not None:
        raise TypeError("hpcapp.kernel got the combine twice: positionally and as combine=")
    chosen = combine if combine is not None else func_or_combine

    def decorate(func: Callable[..., Partial]) -> Kernel:
        if isinstance(func, Kernel) or not callable(func):
            got = "a Kernel already" if isinstance(func, Kernel) else type(func).__name__
            raise TypeError(f"hpcapp.kernel decorates a function, got {got}")
        name = getattr(func, "__name__", repr(func))
        try:
            return _build(func, name, chosen if chosen is not None else "sum", options)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"@hpcapp.kernel on {name!r}: {exc}") from None

    return decorate


def _build(func: Callable[..., Partial], name: str, combine: Any, options: dict) -> Kernel:
    """Check the declaration of ``func`` and return its Kernel (TypeError, ValueError)."""
    fields = declaration(func, combine, **options)
    doc = (inspect.getdoc(func) or "").split("\n", 1)[0]
    return Kernel(func=func, name=name, description=doc, **fields)


# What @hpcapp.kernel declares: a function carrying one of these by hand is not a kernel.
DECLARATIONS = tuple(inspect.signature(kernel).parameters)[1:]


def from_function(func: Any, name: str, description: str = "") -> Kernel:
    """Return the Kernel of ``func`` named ``name``: a Kernel as it is, a plain function as sum.

    A plain function carrying declaration attributes (``f.combine = "max"``) is refused: they
    are not read, and running it as a sum kernel would be a different job.
    """
    if isinstance(func, Kernel):
        return dataclasses.replace(func, name=name, description=description or func.description)
    hand_set = [key for key in DECLARATIONS if key in getattr(func, "__dict__", {})]
    if hand_set:
        raise UsageError(
            f"kernel {name!r}: {getattr(func, '__name__', 'the function')} carries a "
            f"{hand_set[0]!r} attribute, which hpcapp does not read: declare it with "
            f"@hpcapp.kernel({hand_set[0]}=...)"
        )
    try:
        made = _build(func, name, "sum", {})
    except (TypeError, ValueError) as exc:
        raise UsageError(f"kernel {name!r}: {exc}") from None
    return dataclasses.replace(made, description=description or made.description)
