"""The kernel contract in one place: the kernel function and each hook, one calling convention each.

A kernel is made by :func:`hpcapp.kernel`, which returns a :class:`hpcapp.kernels.api.Kernel`
holding the function and what it declares. The stubs below are the specification, in the way
of pytest's ``hookspec.py``: hpcapp calls every hook exactly as written here, and
:func:`check_hook` refuses, when the kernel is defined, a hook whose signature cannot be called
that way. Partials and results are ``dict[str, numpy.ndarray]``; ``params`` is the kernel's
parameters (its defaults, the ``-p KEY=VALUE`` values, and what the job gives to what the
kernel declares: ``over``, ``times``, ``halo``, ``coords``). Nothing here imports numpy or MPI.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

Partial = dict[str, Any]  # str -> numpy.ndarray; Any keeps numpy out of the import path
Params = Mapping[str, Any]

# The axes a kernel declared with ``over=True`` reduces when ``--over`` is not given.
DEFAULT_OVER = (0,)
# Parameter names the job fills for what a kernel declares (never ``-p`` values).
JOB_GIVEN = ("over", "times", "halo", "coords")


class Halo(tuple[int, int]):
    """``(before, after)``, given as ``halo`` to a kernel declared ``halo=``; ``start`` too.

    ``start``: the index in the (selected) input of the chunk's first record, its halo's
    included (0 for a plain array), for a kernel whose results depend on where records sit.
    """

    start: int

    def __new__(cls, before: int, after: int, start: int = 0) -> Halo:
        """Return the halo ``(before, after)`` of a chunk whose first record is ``start``."""
        made = super().__new__(cls, (before, after))
        made.start = start
        return made

    def __getnewargs__(self) -> tuple[int, int, int]:
        """Return what a copy is made from (pickle): ``start`` too."""
        return (self[0], self[1], self.start)


class Extended(NamedTuple):
    """A chunk with what its kernel declares it needs besides the values (issue 22).

    ``times``: the decoded dates of ``data``'s records (cftime objects, None where masked), for
    a kernel declared ``times=True``. ``halo``: how many leading and trailing records of
    ``data`` are its neighbours' (read around the chunk for a kernel declared ``halo=``;
    fewer at the input's ends), so the kernel's own records are ``data[before:len - after]``.
    ``start``: the index of ``data``'s first record in the (selected) input, for a kernel
    declared ``coords=True``.
    """

    data: Any
    times: Any = None
    halo: tuple[int, int] = (0, 0)
    start: int = 0


@dataclasses.dataclass(frozen=True)
class ChunkCoords:
    """The coordinates of one chunk, given as ``coords`` to a kernel declared ``coords=True``.

    ``times``: the decoded dates of the chunk's records (cftime objects, None where masked),
    or None when the record dimension has no CF time coordinate. ``dims``: the input's
    dimension names, the records' first. ``values``: each other dimension's name -> its 1-D
    coordinate values as stored (the part ``--sel``/``--isel`` keeps; None for a dimension
    without a coordinate variable). ``weights``: the ``--weights`` of one record, shaped
    ``(1, *row_shape)`` with 1 along dimensions they do not vary over (so ``chunk * weights``
    broadcasts), or None. ``rows``: ``(start, stop)``, the chunk's records in the (selected)
    input, a halo's included. The arrays are read-only: every chunk shares them.
    """

    times: Any
    dims: tuple[str, ...]
    values: Mapping[str, Any]
    weights: Any
    rows: tuple[int, int]


@dataclasses.dataclass(frozen=True)
class CoordGrid:
    """What every chunk's :class:`ChunkCoords` shares (read once on rank 0; picklable)."""

    dims: tuple[str, ...] = ()
    values: tuple[tuple[str, Any], ...] = ()  # (dim, 1-D values or None) of the other dims
    weights: Any = None  # --weights: (1, *row_shape)
    dated: bool = False  # the records have a CF time coordinate: ChunkCoords.times is dates

    def chunk(self, data: Any, times: Any, start: int) -> ChunkCoords:
        """Return the coordinates of ``data``: its records' ``times``, the first at ``start``."""
        values = {dim: _read_only(value) for dim, value in self.values}
        return ChunkCoords(
            _read_only(times) if self.dated else None,
            self.dims,
            types.MappingProxyType(values),
            _read_only(self.weights),
            (start, start + len(data)),
        )


def _read_only(array: Any) -> Any:
    """Return a read-only view of a numpy array (anything else as it is)."""
    if not hasattr(array, "flags"):
        return array
    view = array.view()
    view.flags.writeable = False
    return view


@dataclasses.dataclass(frozen=True)
class InputInfo:
    """What ``validate`` and ``prepare`` know of the input before the first chunk is read.

    ``dtype`` is the numpy dtype the kernel will see (after CF decoding) and ``row_shape`` the
    shape of one record; both are ``None`` when not known yet (parameters are checked once
    before the input is opened) or when the kernel generates its data. ``given`` holds the
    parameter names the user gave (the others are defaults: a default may be fine where the
    same value given on purpose is a mistake). ``chunk_rows`` (``prepare`` only) is the rows of
    the job's first chunk.
    """

    dtype: Any = None
    row_shape: tuple[int, ...] | None = None
    given: frozenset[str] = frozenset()
    chunk_rows: int | None = None
    # prepare only, for a kernel declared packed: the LinearUnpack its chunks come with (None:
    # they come decoded).
    unpack: Any = None

    @property
    def chunk_shape(self) -> tuple[int, ...]:
        """Return the shape of the job's first chunk: (rows, *row_shape)."""
        if self.chunk_rows is None or self.row_shape is None:
            raise ValueError("the chunk shape is known only to prepare, for an input")
        return (self.chunk_rows, *self.row_shape)


# --- the kernel function (not a hook: the function given to hpcapp.kernel) --------------------


def kernel_function(chunk: Any, **params: Any) -> Partial:
    """Return the partial of one chunk (``chunk``: the chunk's records, a numpy array).

    Called once per chunk, on the rank that reads it, with the kernel's parameters as keywords;
    a kernel declared ``over=True`` also gets ``over``, the sorted tuple of axes to reduce
    (``--over``; default ``(0,)``, the record axis); one declared ``times=True`` gets
    ``times``, the records' decoded dates; one declared ``halo=h`` gets the chunk with
    ``h(params) = (before, after)`` records around it and ``halo``, how many it got; one
    declared ``coords=True`` gets ``coords``, the chunk's :class:`ChunkCoords`. It must
    not modify ``chunk`` (the read buffer is reused) nor keep state between calls.
    """
    raise NotImplementedError


def generating_function(rng: Any, n_rows: int, **params: Any) -> Partial:
    """Return the partial of one chunk of a kernel declared ``generates=True`` (no input).

    ``rng`` is the chunk's ``numpy.random.Generator``, seeded from the job's seed (the parameter
    the kernel names with ``seed_param``, else 0) and the chunk index, so results do not depend
    on the number of ranks; ``n_rows`` is the chunk's share of the rows (``rows_param``).
    """
    raise NotImplementedError


# --- the hooks ----------------------------------------------------------------------------------


def combine(left: Partial, right: Partial) -> Partial:
    """Combine the partials of two neighbouring runs of chunks; ``left`` covers earlier rows.

    Must be associative: partials combine in a fixed tree over chunk indices whatever the rank
    count. Declared ``elementwise=True`` it promises to treat every element along the leading
    axis of each key on its own, so grouped runs combine many groups' partials in one call.
    (A string or mapping ``combine`` uses sum/min/max, element-wise by nature.)
    """
    raise NotImplementedError


def finalize(partial: Partial, params: Params) -> Partial:
    """Turn the combined partial into the results; once, on rank 0."""
    raise NotImplementedError


def validate(params: Params, data: InputInfo) -> None:
    """Raise ValueError (or TypeError) to refuse parameters before any work starts.

    Called on rank 0 once with ``data`` knowing only ``given``, then again with the input's
    ``dtype`` and ``row_shape``, to refuse what the data cannot take. The message becomes one
    line ``kernel NAME: MESSAGE`` and exit code 2.
    """
    raise NotImplementedError


def prepare(params: Params, data: InputInfo) -> None:
    """Pay one-off costs (imports, loading compiled code) once per rank before the first chunk.

    The job's timing reports them as start-up rather than compute; ``data.chunk_shape`` is the
    first chunk's shape. Not called for a kernel that generates its data.
    """
    raise NotImplementedError


def halo(params: Params) -> tuple[int, int]:
    """Return how many records before and after each chunk its kernel needs (windows)."""
    raise NotImplementedError


HOOKS: dict[str, Callable[..., Any]] = {
    "combine": combine,
    "finalize": finalize,
    "validate": validate,
    "prepare": prepare,
    "halo": halo,
}


def _convention(spec: Callable[..., Any]) -> str:
    return f"{spec.__name__}({', '.join(inspect.signature(spec).parameters)})"


def check_hook(name: str, hook: Any) -> None:
    """Raise TypeError unless ``hook`` can be called as the spec of hook ``name`` says.

    The hook must take exactly the spec's positional arguments (any names, or ``*args``):
    a parameter more (``finalize(partial, bins=64)``) would silently receive ``params``.
    """
    spec = HOOKS[name]
    convention = _convention(spec)
    if not callable(hook):
        raise TypeError(f"{name} must be a function {convention}, got {type(hook).__name__}")
    try:
        signature = inspect.signature(hook)
    except (TypeError, ValueError):  # a builtin or compiled function: nothing to read
        return
    spec_args = inspect.signature(spec).parameters
    n_args = len(spec_args)
    try:
        bound = signature.bind(*range(n_args))
    except TypeError:
        bound = None
    # A parameter left over, or one with a default (finalize(partial, bins=64), the old
    # convention), would silently receive nothing or the wrong argument.
    unbound = [
        p.name
        for p in signature.parameters.values()
        if p.kind is not p.VAR_POSITIONAL
        and (bound is None or p.name not in bound.arguments or p.default is not p.empty)
    ]
    if bound is None or unbound:
        takes_params = unbound and "params" in spec_args
        hint = f" (read {', '.join(unbound)} from params)" if takes_params else ""
        raise TypeError(
            f"{name} is called as {convention}, which {getattr(hook, '__name__', 'it')}"
            f"{signature} does not take{hint}"
        )


def check_function(func: Any, positional: int) -> None:
    """Raise TypeError unless the kernel function takes ``positional`` positional arguments."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return
    taken = [
        p
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    if len(taken) < positional and not any(p.kind is p.VAR_POSITIONAL for p in taken):
        call = "f(rng, n_rows, **params)" if positional == 2 else "f(chunk, **params)"
        raise TypeError(f"a kernel is called as {call}, which {signature} does not take")
