"""Check what a kernel declares: its combine, hooks and per-row keys, and the keys it returns.

A typo in a declaration must not run as a different job: ``combine={"peek": "max"}`` on a kernel
returning ``peak`` would sum ``peak``, and ``per_row="norm"`` would name four keys. Declarations
of the wrong type or value are refused where they are written (TypeError, ValueError); declared
keys the kernel does not return are refused at its first chunk (:func:`key_problem`), since only
then are its keys known. Nothing here imports numpy or MPI.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from hpcapp.errors import KernelError

if TYPE_CHECKING:
    from hpcapp.kernels.api import Kernel

COMBINE_OPS = ("sum", "min", "max")


class DeclarationError(KernelError):
    """A kernel does not return a key it declares (in its combine mapping or per_row)."""


def declaration(
    combine: Any,
    finalize: Any = None,
    generates: Any = False,
    rows_param: Any = None,
    validate: Any = None,
    per_row: Any = (),
    prepare: Any = None,
) -> dict[str, Any]:
    """Check a kernel's declaration; return it with ``per_row`` as a tuple of key names.

    Raises TypeError for a value of the wrong type, ValueError for a wrong value, so that a
    typo fails where it is written, not as a silently different job.
    """
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
    for hook, value in (("finalize", finalize), ("validate", validate), ("prepare", prepare)):
        if value is not None and not callable(value):
            raise TypeError(f"{hook} must be a function or None, got {type(value).__name__}")
    if not isinstance(generates, bool):
        raise TypeError(f"generates must be True or False, got {generates!r}")
    if rows_param is not None:
        if not isinstance(rows_param, str):
            raise TypeError(f"rows_param must name a parameter, got {rows_param!r}")
        if not generates:
            raise ValueError(
                "rows_param names the rows of a kernel that generates its data: add generates=True"
            )
    keys = per_row_keys(per_row)
    if isinstance(combine, Mapping):
        both = [key for key in combine if key in keys]
        if both:
            raise ValueError(
                f"combine names per-row key(s) {_listed(both)}: per-row keys are written row "
                "by row, never combined"
            )
    return {
        "combine": combine,
        "finalize": finalize,
        "generates": generates,
        "rows_param": rows_param,
        "validate": validate,
        "per_row": keys,
        "prepare": prepare,
    }


def per_row_keys(value: Any) -> tuple[str, ...]:
    """Return ``per_row`` as a tuple of key names: one string is one key, not its letters."""
    if isinstance(value, str):
        value = (value,)
    elif isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise TypeError(
            f"per_row must be a key name or a sequence of key names, got {type(value).__name__}"
        )
    keys = tuple(value)
    for key in keys:
        if not isinstance(key, str) or not key.isidentifier():
            raise TypeError(f"per_row key names must be identifiers (strings), got {key!r}")
    if len(set(keys)) != len(keys):
        raise ValueError(f"per_row names a key twice: {keys}")
    return keys


def key_problem(kernel: Kernel, returned: Iterable[str]) -> str | None:
    """Return why the keys a kernel declares (combine mapping, per_row) are not all returned.

    ``None`` when every declared key is among ``returned``: a typo in a declared key must not
    leave the real key summed (or combined instead of written row by row) without a word.
    """
    keys = sorted(returned)
    declared = {"per_row": list(kernel.per_row)}
    if isinstance(kernel.combine, Mapping):
        declared["combine"] = list(kernel.combine)
    for where, names in declared.items():
        unknown = [name for name in names if name not in keys]
        if not unknown:
            continue
        described = []
        for name in unknown:
            hint = difflib.get_close_matches(name, keys, n=1)
            described.append(f"{name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        return (
            f"{where} names {', '.join(described)}, which the kernel does not return "
            f"(it returns {', '.join(keys) or 'nothing'})"
        )
    return None


def _listed(names: Iterable[str]) -> str:
    return ", ".join(repr(name) for name in names)
