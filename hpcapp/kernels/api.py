"""The kernel contract: a function per chunk, a combine for partials, an optional finalize.

A kernel is a plain function ``f(chunk, **params) -> dict[str, numpy.ndarray]`` (or, for a kernel
that generates its own data, ``f(rng, n_rows, **params)``). How partials of two neighbouring
runs of chunks combine is given by :func:`kernel` or by attributes on the function
(``f.combine``, ``f.finalize``). Nothing here imports MPI.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral
from typing import Any

from hpcapp.errors import KernelError, UsageError
from hpcapp.kernels.declare import declaration

Partial = dict[str, Any]  # str -> numpy.ndarray; Any keeps numpy out of the import path


def kernel(
    func_or_combine: Any = None,
    /,
    *,
    combine: str | Mapping[str, str] | Callable[[Partial, Partial], Partial] | None = None,
    finalize: Callable[..., Partial] | None = None,
    generates: bool = False,
    rows_param: str | None = None,
    validate: Callable[..., Any] | None = None,
    per_row: str | Sequence[str] = (),
    prepare: Callable[..., Any] | None = None,
) -> Any:
    """Declare how a kernel's partial results combine.

    ``combine`` is ``"sum"``, ``"min"`` or ``"max"`` for every key, a mapping from key to one of
    those (keys left out are summed; a key the kernel does not return is an error at its first
    chunk), or a function ``combine(left, right) -> partial`` that must be associative (it is
    applied in a fixed tree over chunk indices; ``left`` always covers the earlier rows).
    A string or mapping may come first (``@hpcapp.kernel("max")``); a combine *function* must be
    named (``combine=f``): a function given first is the kernel itself, so a bare
    ``@hpcapp.kernel`` declares the defaults (combine every key by sum).
    ``finalize(partial, **params) -> dict`` turns the combined partial into the results, once,
    on rank 0. ``generates=True`` marks a kernel with no input that is called as
    ``f(rng, n_rows, **params)``; ``rows_param`` names the parameter giving its total rows.
    ``validate(**params)`` may raise ValueError to refuse parameters before any work starts;
    if its signature names ``dtype`` or ``row_shape`` it also gets the input's (numpy dtype
    string, shape of one row), to refuse what the data cannot take, and if it names
    ``given_params`` the set of parameter names the user gave (the others are defaults).
    ``per_row`` names keys (one name or a sequence of names) holding one row per input row (a
    "map" output): they are written in input order to ``/result/<key>`` instead of being
    combined.
    ``prepare(dtype, chunk_shape, params)`` (optional) runs once per rank before the first
    chunk, to pay one-off costs (imports, loading compiled code) that the job's timing then
    reports as start-up rather than as compute.
    Declarations of the wrong type or value raise TypeError or ValueError when decorating.
    """
    options: dict[str, Any] = {  # declaration() checks their types
        "finalize": finalize,
        "generates": generates,
        "rows_param": rows_param,
        "validate": validate,
        "per_row": per_row,
        "prepare": prepare,
    }
    if callable(func_or_combine):  # bare @hpcapp.kernel, or hpcapp.kernel(f, finalize=...)
        return kernel(combine=combine, **options)(func_or_combine)
    if func_or_combine is not None and combine is not None:
        raise TypeError("hpcapp.kernel got the combine twice: positionally and as combine=")
    chosen = combine if combine is not None else func_or_combine

    def decorate(func: Callable[..., Partial]) -> Callable[..., Partial]:
        if not callable(func):
            raise TypeError(f"hpcapp.kernel decorates a function, got {type(func).__name__}")
        name = getattr(func, "__name__", repr(func))
        try:
            declared = declaration(chosen if chosen is not None else "sum", **options)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"@hpcapp.kernel on {name!r}: {exc}") from None
        for key, value in declared.items():
            setattr(func, key, value)
        return func

    return decorate


@dataclasses.dataclass(frozen=True)
class Kernel:
    """A kernel function with its combine rule, finalize and declared parameters."""

    name: str
    func: Callable[..., Partial]
    combine: str | Mapping[str, str] | Callable[[Partial, Partial], Partial]
    finalize: Callable[..., Partial] | None
    defaults: dict[str, Any]
    required: tuple[str, ...]
    accepts_any: bool
    generates: bool
    rows_param: str | None
    validate: Callable[..., Any] | None
    description: str
    per_row: tuple[str, ...] = ()
    prepare: Callable[..., Any] | None = None

    def check_params(
        self,
        given: Mapping[str, Any],
        *,
        dtype: Any = None,
        row_shape: tuple[int, ...] | None = None,
    ) -> dict[str, Any]:
        """Return the full parameter set, refusing unknown or missing names.

        ``dtype`` and ``row_shape`` describe the input; they go to the kernel's validate
        function when its signature names them, so it can refuse what the data cannot take;
        so does ``given_params``, the names in ``given`` (a default may be fine where the same
        value given on purpose means a mistake).
        """
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
        params = {**self.defaults, **given}
        seed = params.get("seed", 0)
        if self.generates and (
            not isinstance(seed, Integral) or isinstance(seed, bool) or seed < 0
        ):
            # The chunks' generators are seeded from it: 1.5 or true would be taken as 1.
            raise UsageError(
                f"kernel {self.name!r}: -p seed must be a non-negative integer, got {seed!r}"
            )
        if self.validate is not None:
            try:
                names = inspect.signature(self.validate).parameters
                data = {"dtype": dtype, "row_shape": row_shape, "given_params": frozenset(given)}
                extra = {k: v for k, v in data.items() if v is not None and k in names}
                call_with_params(self.validate, (), {**params, **extra})
            except (ValueError, TypeError) as exc:
                raise UsageError(f"kernel {self.name!r}: {exc}") from None
        return params

    def apply(self, first: Any, params: Mapping[str, Any], n_rows: int | None = None) -> Any:
        """Call the kernel on one chunk (or, for a generating kernel, on its rng and size)."""
        if self.generates:
            return self.func(first, n_rows, **params)
        return self.func(first, **params)

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
        results = call_with_params(self.finalize, (partial,), params)
        if not isinstance(results, Mapping):
            raise KernelError(f"finalize of kernel {self.name!r} returned {type(results)}")
        return {key: _keep_attrs(value) for key, value in results.items()}


class ResultArray:
    """Marker base: see :func:`with_attrs`."""

    attrs: dict[str, Any]  # the HDF5 attributes of the result dataset


def with_attrs(array: Any, **attrs: Any) -> Any:
    """Return ``array`` as an ndarray carrying HDF5 attributes for its result dataset.

    A finalize function may return such arrays; the writer stores ``attrs`` on the dataset
    (e.g. ``rounded``: why the value is not exact). Plain arrays have none.
    """
    import numpy as np

    marked: ResultArray = np.asarray(array).view(_attrs_array_type())
    marked.attrs = dict(attrs)
    return marked


def _attrs_array_type() -> type[Any]:
    """Return the ndarray subclass that carries ``attrs`` (built late: numpy imports late)."""
    global _ATTRS_ARRAY
    if _ATTRS_ARRAY is None:
        import numpy as np

        class AttrsArray(np.ndarray, ResultArray):
            """An ndarray with HDF5 attributes for its result dataset."""

            attrs: dict[str, Any] = {}  # noqa: RUF012 - replaced per instance

        _ATTRS_ARRAY = AttrsArray
    return _ATTRS_ARRAY


_ATTRS_ARRAY: type[Any] | None = None


def _keep_attrs(value: Any) -> Any:
    """Return ``value`` as an array, keeping a :func:`with_attrs` array as it is."""
    import numpy as np

    return value if isinstance(value, ResultArray) else np.asarray(value)


def call_with_params(func: Callable[..., Any], args: tuple, params: Mapping[str, Any]) -> Any:
    """Call ``func(*args, **params)``, passing only the parameters its signature accepts."""
    signature = inspect.signature(func)
    takes_all = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    accepted = {k: v for k, v in params.items() if takes_all or k in signature.parameters}
    return func(*args, **accepted)


def as_partial(result: Any, kernel_name: str) -> Partial:
    """Check that a kernel returned a dict of numeric arrays, and make them arrays."""
    import numpy as np

    if not isinstance(result, Mapping) or not result:
        raise KernelError(
            f"kernel {kernel_name!r} must return a non-empty dict of numpy arrays, "
            f"got {type(result).__name__}"
        )
    partial: Partial = {}
    for key, value in result.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise KernelError(f"kernel {kernel_name!r} returned a non-identifier key {key!r}")
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise KernelError(
                f"kernel {kernel_name!r} returned {key!r} with dtype {array.dtype}: "
                "only bool, integer and float arrays can be combined and stored"
            )
        partial[key] = array
    return partial


def check_compatible(left: Partial, right: Partial) -> None:
    """Raise KernelError unless two partials have the same keys, shapes and dtypes."""
    if left.keys() != right.keys():
        raise KernelError(f"partials have different keys: {sorted(left)} vs {sorted(right)}")
    for key, value in left.items():
        other = right[key]
        if value.shape != other.shape or value.dtype != other.dtype:
            raise KernelError(
                f"key {key!r} differs between chunks: shape {value.shape} dtype {value.dtype} "
                f"vs shape {other.shape} dtype {other.dtype}"
            )


def from_function(func: Callable[..., Any], name: str, description: str = "") -> Kernel:
    """Build a :class:`Kernel` from a function and its ``combine``/``finalize`` attributes."""
    try:
        declared = declaration(
            getattr(func, "combine", "sum"),
            **{key: getattr(func, key) for key in _ATTRIBUTES if hasattr(func, key)},
        )
    except (TypeError, ValueError) as exc:  # declared with attributes (f.combine = ...)
        raise UsageError(f"kernel {name!r}: {exc}") from None
    generates = declared["generates"]
    signature = inspect.signature(func)
    positional = 2 if generates else 1
    defaults: dict[str, Any] = {}
    required: list[str] = []
    accepts_any = False
    for index, param in enumerate(signature.parameters.values()):
        if param.kind is param.VAR_KEYWORD:
            accepts_any = True
        elif param.kind is param.VAR_POSITIONAL or index < positional:
            continue
        elif param.default is param.empty:
            required.append(param.name)
        else:
            defaults[param.name] = param.default
    rows_param = declared["rows_param"]
    if rows_param is not None and not accepts_any and rows_param not in (*defaults, *required):
        hint = difflib.get_close_matches(rows_param, [*defaults, *required], n=1)
        raise UsageError(
            f"kernel {name!r}: rows_param {rows_param!r} is not one of its parameters"
            + (f"; did you mean {hint[0]!r}?" if hint else "")
        )
    doc = description or (inspect.getdoc(func) or "").split("\n", 1)[0]
    return Kernel(
        name=name,
        func=func,
        defaults=defaults,
        required=tuple(required),
        accepts_any=accepts_any,
        description=doc,
        **declared,
    )


# The declaration attributes a function may carry (set by @hpcapp.kernel or by hand).
_ATTRIBUTES = ("finalize", "generates", "rows_param", "validate", "per_row", "prepare")
