"""Options declared once, as fields of a config dataclass; argparse, TOML and merging derive.

A field made with :func:`option` carries everything about one option: its Python type (the
annotation), its default, its flags, metavar, help, choices and its own check. From those this
module derives the argparse arguments, the TOML types a config file may hold, the dict of values
a parsed command line gives, and the merge of command-line values over file values. Pure: no
MPI, no h5py, nothing read but the TOML file itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import decimal
import functools
import re
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

from hpcapp.errors import UsageError

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", re.IGNORECASE)
# 1e300 as an int is exact but useless: beyond this, an exponent literal stays a float.
_MAX_INT_EXPONENT = 18

# The TOML values each Python type accepts (the first names it in a refusal), and its README name.
TOML_TYPES: dict[type, tuple[type, ...]] = {
    str: (str,),
    int: (int,),
    float: (int, float),
    bool: (bool,),
    dict: (dict,),
}
TOML_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "table"}


class _Same:
    """The marker of an ``hpcapp.run`` default that is the command line's."""

    def __repr__(self) -> str:
        return "SAME"


SAME: Any = _Same()


@dataclasses.dataclass(frozen=True)
class Option:
    """How one field appears on the command line; its type and default are the field's own."""

    help: str
    flags: tuple[str, ...] = ()  # (): a positional argument that may be omitted
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    # The refusal of a bad value (None: fine); it sees merged, normalised values only.
    check: Callable[[Any], str | None] | None = None
    # hpcapp.run's default, where a program's differs from the command line's.
    library_default: Any = SAME
    # A table's parser of its repeated command-line values (default: -p's KEY=VALUE); it also
    # reads a table given as one string (hpcapp.run), and a TOML table's strings stay text.
    parse: Callable[[list[str]], dict[str, Any]] | None = None
    # What the kernel is given (its params, the input's values, axes and groups): ``check``
    # takes these options too, so it judges the kernel ``run`` would run, on the data it sees.
    data: bool = False
    # A comma list (``--over lat,lon``): hpcapp.run and a TOML file may give a sequence too.
    comma_list: bool = False


@dataclasses.dataclass(frozen=True)
class Conflict:
    """Two options that exclude each other: when both are set, or when ``when`` says so."""

    first: str
    second: str
    message: str
    when: Callable[[Any], bool] | None = None
    # Also a mutually exclusive group of the parser (argparse then words the refusal).
    in_parser: bool = False

    def holds(self, config: Any) -> bool:
        """Return True when ``config`` breaks this rule."""
        if self.when is not None:
            return self.when(config)
        return _is_set(getattr(config, self.first)) and _is_set(getattr(config, self.second))


def _is_set(value: Any) -> bool:
    return value is not None and value is not False


def option(
    help: str,
    *flags: str,
    default: Any = None,
    default_factory: Any = dataclasses.MISSING,
    **details: Any,
) -> Any:
    """Declare a field that is an option: ``x: int | None = option("help", "--x")``."""
    metadata = {"option": Option(help, tuple(flags), **details)}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Declared:
    """One declared option: its field name, Python type, default and :class:`Option`."""

    name: str
    kind: type  # str, int, float, bool or dict: the annotation without None
    default: Any  # dataclasses.MISSING when the field is required
    option: Option

    @property
    def toml_types(self) -> tuple[type, ...]:
        return TOML_TYPES[self.kind] + ((list,) if self.option.comma_list else ())


@functools.cache
def declared(cls: type) -> tuple[Declared, ...]:
    """Return the options declared on dataclass ``cls``, in declaration order."""
    hints = typing.get_type_hints(cls)
    found = []
    for field in dataclasses.fields(cls):
        if "option" not in field.metadata:
            continue
        default = field.default
        if field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        found.append(
            Declared(field.name, _kind(hints[field.name]), default, field.metadata["option"])
        )
    return tuple(found)


def _kind(hint: Any) -> type:
    """Return ``int`` for ``int | None``, ``dict`` for ``dict[str, Any]``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    kind = typing.get_origin(hint) or hint
    if kind not in TOML_TYPES:
        raise TypeError(f"an option's type must be one of {list(TOML_TYPES)}, not {hint!r}")
    return kind


def data_options(cls: type) -> tuple[str, ...]:
    """Return the names of the options of ``cls`` declared ``data=True``, in order."""
    return tuple(item.name for item in declared(cls) if item.option.data)


def add_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    conflicts: Iterable[Conflict],
    data_only: bool = False,
) -> None:
    """Add an argument for every option of ``cls`` (``data_only``: its data options).

    Not given, each parses to None (or []).
    """
    chosen = [item for item in declared(cls) if item.option.data or not data_only]
    names = {item.name for item in chosen}
    groups = {}
    for rule in conflicts:
        if rule.in_parser and {rule.first, rule.second} <= names:
            group = parser.add_mutually_exclusive_group()
            groups[rule.first] = groups[rule.second] = group
    for item in chosen:
        opt = item.option
        if not opt.flags:
            parser.add_argument(item.name, nargs="?", help=opt.help)
            continue
        kwargs: dict[str, Any] = {"dest": item.name, "help": opt.help}
        if item.kind is bool:
            # store_const, not store_true: "not given" stays None, so a file's value stands.
            kwargs.update(action="store_const", const=True)
        elif item.kind is dict:
            kwargs.update(action="append", default=[])
        elif item.kind is not str:
            kwargs["type"] = item.kind
        if opt.metavar is not None:
            kwargs["metavar"] = opt.metavar
        if opt.choices is not None:
            kwargs["choices"] = opt.choices
        groups.get(item.name, parser).add_argument(*opt.flags, **kwargs)


def command_line_values(
    args: argparse.Namespace, cls: type, data_only: bool = False
) -> dict[str, Any]:
    """Return {option: value} from parsed ``args``: None where not given, KEY=VALUE parsed."""
    chosen = [item for item in declared(cls) if item.option.data or not data_only]
    values = {item.name: getattr(args, item.name) for item in chosen}
    for item in chosen:
        if item.kind is dict:
            values[item.name] = (item.option.parse or parse_params)(values[item.name])
    return values


def check_file_values(path: str, data: dict[str, Any], cls: type) -> dict[str, Any]:
    """Refuse unknown keys and values of the wrong TOML type; parse strings in tables."""
    accepted = {item.name: item for item in declared(cls)}
    checked = {}
    for key, value in data.items():
        if key not in accepted:
            known = ", ".join(accepted)
            raise UsageError(f"config file {path!r}: unknown key {key!r} (known keys: {known})")
        types_ = accepted[key].toml_types
        if not isinstance(value, types_) or (isinstance(value, bool) and bool not in types_):
            raise UsageError(
                f"config file {path!r}: key {key!r} must be a {types_[0].__name__}, got {value!r}"
            )
        if accepted[key].kind is dict and accepted[key].option.parse is None:
            # A string in a table means what it means after -p: range = "0,40" is range=0,40.
            table: dict[str, Any] = data[key]
            value = {k: parse_value(v) if isinstance(v, str) else v for k, v in table.items()}
        checked[key] = value
    return checked


def merge(cls: type, given: dict[str, Any], file_values: dict[str, Any]) -> dict[str, Any]:
    """Return the field values of ``cls``: ``given`` (None: not given) over the file's values.

    Missing both, an option takes its declared default. Tables merge key by key, ``given``
    winning; numbers become floats and flags bools, as their type says.
    """
    unknown = set(given) - {item.name for item in declared(cls)}
    if unknown:
        raise TypeError(f"not options of {cls.__name__}: {', '.join(sorted(unknown))}")
    merged: dict[str, Any] = {}
    for item in declared(cls):
        value: Any = given.get(item.name)
        if item.kind is dict:
            if isinstance(value, str) and item.option.parse is not None:
                value = item.option.parse([value])  # hpcapp.run(sel="time=1992:1993")
            value = {**file_values.get(item.name, {}), **(value or {})}
        elif value is None:
            value = file_values.get(item.name)
        if item.option.comma_list and value is not None:
            value = comma_list(item.name, value)
        if value is None:
            value = None if item.default is dataclasses.MISSING else item.default
        elif item.kind in (float, bool):
            value = item.kind(value)
        merged[item.name] = value
    return merged


def comma_list(name: str, value: Any) -> str:
    """Return a comma list option as its command-line text: ``("lat", "lon")`` -> ``lat,lon``.

    A string stays as it is; a list or tuple of names or axis numbers (or one axis number) is
    joined, so every way of giving it means one thing (and one job identity).
    """
    if isinstance(value, str):
        return value
    items = list(value) if isinstance(value, list | tuple) else [value]
    if items and all(isinstance(v, str | int) and not isinstance(v, bool) for v in items):
        return ",".join(str(v).strip() for v in items)
    raise UsageError(
        f"{name} must be a comma-separated string or a list of names or axis numbers "
        f'(e.g. {name}="lat,lon" or {name}=("lat", "lon")), got {value!r}'
    )


def validate(config: Any, conflicts: Iterable[Conflict]) -> None:
    """Raise UsageError for the first bad value (declaration order), then the first conflict."""
    cls: type = type(config)
    for item in declared(cls):
        if item.option.check is not None:
            message = item.option.check(getattr(config, item.name))
            if message:
                raise UsageError(message)
    for rule in conflicts:
        if rule.holds(config):
            raise UsageError(rule.message)


def parse_value(text: str) -> Any:
    """Turn a ``-p`` value into a number, a bool, a list of those, or leave it a string."""
    text = text.strip()
    if "," in text:
        return [parse_value(part) for part in text.split(",")]
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return _exponent_int(text) if "e" in text.lower() else float(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _exponent_int(text: str) -> int | float:
    """Return ``1e6`` or ``2.5e3`` as the int it denotes exactly; ``1.5e-3`` stays a float."""
    value = decimal.Decimal(text)
    if value == value.to_integral_value() and value.adjusted() <= _MAX_INT_EXPONENT:
        return int(value)
    return float(text)


def parse_params(items: list[str]) -> dict[str, Any]:
    """Parse ``KEY=VALUE`` strings from repeated ``-p`` options."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UsageError(f"-p expects KEY=VALUE (e.g. -p bins=64), got {item!r}")
        params[key] = parse_value(value)
    return params
