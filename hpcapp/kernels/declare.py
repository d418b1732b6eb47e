"""Check what a kernel declares: its combine, hooks, keys and parameters, against its function.

A typo in a declaration must not run as a different job: ``combine={"peek": "max"}`` on a kernel
returning ``peak`` would sum ``peak``, ``per_row="norm"`` would name four keys, a parameter named
``over`` or ``seed`` would silently not get what its name suggests. Declarations of the wrong
type or value are refused where they are written (TypeError, ValueError); keys are checked
there too when the kernel declares ``returns``, else at its first chunk (:func:`key_problem`),
since only then are its keys known. Nothing here imports numpy or MPI.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from hpcapp.errors import KernelError
from hpcapp.kernels.hookspec import JOB_GIVEN, check_function, check_hook

if TYPE_CHECKING:
    from hpcapp.kernels.api import Kernel

COMBINE_OPS = ("sum", "min", "max")


class DeclarationError(KernelError):
    """A kernel does not return a key it declares (in its combine mapping or per_row)."""


def declaration(
    func: Any,
    combine: Any = "sum",
    finalize: Any = None,
    validate: Any = None,
    prepare: Any = None,
    per_row: Any = (),
    returns: Any = None,
    elementwise: Any = False,
    over: Any = False,
    generates: Any = False,
    rows_param: Any = None,
    seed_param: Any = None,
    times: Any = False,
    halo: Any = None,
    climatology_param: Any = None,
    series: Any = False,
    coords: Any = False,
) -> dict[str, Any]:
    """Check a kernel's declaration against its function; return the fields of its Kernel.

    Raises TypeError for a value of the wrong type, ValueError for a wrong value, so that a
    typo fails where it is written, not as a silently different job. The returned fields add
    the function's parameters (``defaults``, ``required``, ``accepts_any``) to the declaration,
    with ``per_row`` and ``returns`` as tuples of key names.
    """
    _check_combine(combine)
    hooks = (("finalize", finalize), ("validate", validate), ("prepare", prepare), ("halo", halo))
    for hook, value in hooks:
        if value is not None:
            check_hook(hook, value)
    if callable(combine):
        check_hook("combine", combine)
    flags = (("elementwise", elementwise), ("over", over), ("generates", generates))
    for flag, value in (*flags, ("times", times), ("series", series), ("coords", coords)):
        if not isinstance(value, bool):
            raise TypeError(f"{flag} must be True or False, got {value!r}")
    if elementwise and not callable(combine):
        raise ValueError("elementwise=True describes a combine function: sum/min/max already are")
    keys = per_row_keys(per_row)
    declared_keys = None if returns is None else per_row_keys(returns, "returns")
    if isinstance(combine, Mapping):
        both = [key for key in combine if key in keys]
        if both:
            raise ValueError(
                f"combine names per-row key(s) {_listed(both)}: per-row keys are written row "
                "by row, never combined"
            )
    if declared_keys is not None:
        named = {"combine": list(combine) if isinstance(combine, Mapping) else [], "per_row": keys}
        for where, names in named.items():
            unknown = [name for name in names if name not in declared_keys]
            if unknown:
                raise ValueError(
                    f"{where} names {_suggested(unknown, declared_keys)}, which the kernel does "
                    f"not return (returns={declared_keys})"
                )
    positional = 2 if generates else 1
    check_function(func, positional)
    defaults, required, accepts_any = _parameters(func, positional)
    params = [*defaults, *required]
    if over and not accepts_any and "over" not in params:
        raise TypeError(
            "over=True: the kernel gets the axes to reduce as over=(...), but takes no "
            "parameter `over`"
        )
    job_given = ((times, "times"), (halo is not None, "halo"), (coords, "coords"))
    for given, name in job_given:
        if given and not accepts_any and name not in params:
            raise TypeError(f"{name}=: the kernel gets {name}=..., but takes no parameter `{name}`")
        if given and generates:
            raise ValueError(f"{name}= describes the input's records: a generating kernel has none")
        if not given and name in params:
            raise ValueError(
                f"a parameter named `{name}` is given by the job only when the kernel declares "
                f"{name}=...: add it to @hpcapp.kernel(...)"
            )
    if not over and "over" in params:
        raise ValueError(
            "a parameter named `over` is given the axes to reduce (--over) only when the kernel "
            "declares over=True: add it to @hpcapp.kernel(...)"
        )
    if climatology_param is not None and (
        not isinstance(climatology_param, str)
        or (not accepts_any and climatology_param not in params)
    ):
        raise ValueError(f"climatology_param {climatology_param!r} is not one of its parameters")
    for option, value in (("rows_param", rows_param), ("seed_param", seed_param)):
        if value is None:
            continue
        if not isinstance(value, str):
            raise TypeError(f"{option} must name a parameter, got {value!r}")
        if not generates:
            raise ValueError(
                f"{option} names a parameter of a kernel that generates its data: add "
                "generates=True"
            )
        if not accepts_any and value not in params:
            raise ValueError(
                f"{option} {value!r} is not one of its parameters"
                + _hint(value, params, "; did you mean {!r}?")
            )
    if series and (generates or keys or coords):
        raise ValueError(
            "series=True takes stored series: it neither generates, nor has per_row or coords"
        )
    if generates and rows_param is None:
        raise ValueError("generates=True needs rows_param, the parameter giving the total rows")
    if generates and seed_param is None and "seed" in params:
        raise ValueError(
            "it has a parameter `seed`, but seeds the chunks' generators from it only if it "
            "declares seed_param='seed'"
        )
    return {
        "combine": combine,
        "finalize": finalize,
        "validate": validate,
        "prepare": prepare,
        "per_row": keys,
        "returns": declared_keys,
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
        "defaults": {k: v for k, v in defaults.items() if k not in JOB_GIVEN},
        "required": tuple(k for k in required if k not in JOB_GIVEN),
        "accepts_any": accepts_any,
    }


def _check_combine(combine: Any) -> None:
    """Refuse a combine that is not sum/min/max, a mapping to those, or a function."""
    if isinstance(combine, str):
        if combine not in COMBINE_OPS:
            raise ValueError(f"combine {combine!r} is not one of {_listed(COMBINE_OPS)}")
    elif isinstance(combine, Mapping):
        for key, op in combine.items():
            if not isinstance(key, str):
                raise TypeError(f"combine maps result keys (strings) to ops, got key {key!r}")
            if op not in COMBINE_OPS:
                raise ValueError(
                    f"combine {{{key!r}: {op!r}}}: the op must be one of {_listed(COMBINE_OPS)}"
                )
    elif not callable(combine):
        raise TypeError(
            f"combine must be one of {_listed(COMBINE_OPS)}, a mapping from result key to one "
            f"of those, or a function (left, right) -> partial; got {type(combine).__name__}"
        )


def _parameters(func: Any, positional: int) -> tuple[dict[str, Any], list[str], bool]:
    """Return the kernel's parameters after the positional ones: defaults, required, **kw."""
    defaults: dict[str, Any] = {}
    required: list[str] = []
    accepts_any = False
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # a compiled function: takes whatever it is given
        return defaults, required, True
    for index, param in enumerate(signature.parameters.values()):
        if param.kind is param.VAR_KEYWORD:
            accepts_any = True
        elif param.kind is param.VAR_POSITIONAL or index < positional:
            continue
        elif param.default is param.empty:
            required.append(param.name)
        else:
            defaults[param.name] = param.default
    return defaults, required, accepts_any


def per_row_keys(value: Any, option: str = "per_row") -> tuple[str, ...]:
    """Return ``per_row`` as a tuple of key names: one string is one key, not its letters."""
    if isinstance(value, str):
        value = (value,)
    elif isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise TypeError(
            f"{option} must be a key name or a sequence of key names, got {type(value).__name__}"
        )
    keys = tuple(value)
    for key in keys:
        if not isinstance(key, str) or not key.isidentifier():
            raise TypeError(f"{option} key names must be identifiers (strings), got {key!r}")
    if len(set(keys)) != len(keys):
        raise ValueError(f"{option} names a key twice: {keys}")
    return keys


def key_problem(kernel: Kernel, returned: Iterable[str]) -> str | None:
    """Return why the keys a kernel returned do not match what it declares, or ``None``.

    With ``returns`` declared, the keys must be exactly those; else every key its combine
    mapping or ``per_row`` names must be among them: a typo in a declared key must not leave
    the real key summed (or combined instead of written row by row) without a word.
    """
    keys = sorted(returned)
    if kernel.returns is not None:
        if set(keys) == set(kernel.returns):
            return None
        return (
            f"the kernel returns {', '.join(keys) or 'nothing'}, not the keys it declares "
            f"(returns={kernel.returns})"
        )
    declared = {"per_row": list(kernel.per_row)}
    if isinstance(kernel.combine, Mapping):
        declared["combine"] = list(kernel.combine)
    for where, names in declared.items():
        unknown = [name for name in names if name not in keys]
        if unknown:
            return (
                f"{where} names {_suggested(unknown, keys)}, which the kernel does not return "
                f"(it returns {', '.join(keys) or 'nothing'})"
            )
    return None


def _suggested(unknown: Iterable[str], known: Iterable[str]) -> str:
    """Return the unknown names quoted, each with the closest known name if one is close."""
    choices = list(known)
    return ", ".join(
        f"{name!r}" + _hint(name, choices, " (did you mean {!r}?)") for name in unknown
    )


def _hint(name: str, known: list[str], form: str) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return form.format(close[0]) if close else ""


def _listed(names: Iterable[str]) -> str:
    return ", ".join(repr(name) for name in names)
