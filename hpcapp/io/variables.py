"""Several variables in one job (``FILE:/tas,/pr``): their specs, and one output for them all.

A job over several variables runs one pass per variable (:mod:`hpcapp.jobs.multivar`); its
results are keyed ``VARIABLE/KEY`` (``tas/mean``) and written to one file, each variable's
results named and described by that variable's own layout (``tas_mean`` with the units,
``standard_name`` and ``cell_methods`` of ``tas``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hpcapp.errors import UsageError
from hpcapp.io.ncfile import Dimensions
from hpcapp.io.output import Layout, apply_layout, write_file_table
from hpcapp.io.sources.base import Source
from hpcapp.io.sources.many import FilesSource

SEPARATOR = "/"  # between a variable's name and its result's key: ``tas/mean``


def split_variables(spec: str | None) -> list[str]:
    """Return one spec per variable of ``FILE:/tas,/pr``; ``[spec]`` for a single variable.

    Several variables are named after the last colon, separated by commas, each with its
    leading slash (so a dataset whose name holds a comma stays one variable).
    """
    if not spec or ":" not in spec:
        return [spec] if spec else []
    path, _, datasets = spec.rpartition(":")
    parts = datasets.split(",")
    if len(parts) < 2 or not all(part.startswith("/") and len(part) > 1 for part in parts):
        return [spec]
    return [f"{path}:{part}" for part in parts]


def variable_name(spec: str) -> str:
    """Return the name results of ``spec``'s variable are keyed by (``/x/tas`` -> ``tas``)."""
    return spec.rpartition(":")[2].strip("/").rpartition("/")[2]


def refuse_unlike(sources: list[Source], specs: list[str]) -> None:
    """Refuse variables that do not share dims, shape and (many files) records per file."""
    first, name = sources[0], specs[0].rpartition(":")[2]
    for source, spec in zip(sources[1:], specs[1:], strict=True):
        other = spec.rpartition(":")[2]
        where = _file_of(source)
        shape, expected = (source.n_rows, *source.row_shape), (first.n_rows, *first.row_shape)
        if source.dims != first.dims or shape != expected:
            raise UsageError(
                f"{where}: variable {other} has dims {_dims(source, shape)}, but {name} has "
                f"{_dims(first, expected)}: the variables of one job must share their dims"
            )
        if isinstance(source, FilesSource) and isinstance(first, FilesSource):
            for mine, theirs in zip(source.members, first.members, strict=True):
                if mine.path != theirs.path or mine.n_rows != theirs.n_rows:
                    raise UsageError(
                        f"{mine.path}: variable {other} has {mine.n_rows} records, but {name} "
                        f"has {theirs.n_rows} in {theirs.path}: the variables of one job must "
                        "share their records file by file"
                    )


def _file_of(source: Source) -> str:
    paths = source.input_paths
    return paths[0] if len(paths) == 1 else source.spec.rpartition(":")[0]


def _dims(source: Source, shape: tuple[int, ...]) -> str:
    names = source.dims or tuple(f"dim_{i}" for i in range(len(shape)))
    return "(" + ", ".join(f"{n}={size}" for n, size in zip(names, shape, strict=False)) + ")"


@dataclasses.dataclass(frozen=True)
class JointLayout:
    """The layout of an output holding several variables' results (``tas/mean`` keys)."""

    layouts: tuple[tuple[str, Layout], ...]  # (variable name, its layout), in the input's order

    def names(self, keys: list[str] | Any) -> dict[str, str]:
        """Return key -> variable name: each variable's keys named by its own layout."""
        names: dict[str, str] = {}
        used: set[str] = set()
        for variable, layout in self.layouts:
            mine = [k.partition(SEPARATOR)[2] for k in keys if k.startswith(variable + SEPARATOR)]
            for key, name in layout.names(mine).items():
                while name in used:  # /a/tas and /b/tas
                    name = f"{name}_result"
                used.add(name)
                names[f"{variable}{SEPARATOR}{key}"] = name
        return names

    def __call__(self, h5: Any, names: dict[str, str], dims: Dimensions) -> None:
        """Lay out every variable's results; the many-file table once."""
        for variable, layout in self.layouts:
            prefix = variable + SEPARATOR
            mine = {k[len(prefix) :]: v for k, v in names.items() if k.startswith(prefix)}
            apply_layout(h5, layout, mine, dims)
        many = self.layouts[0][1].many
        if many is not None:
            write_file_table(h5, many, dims)
