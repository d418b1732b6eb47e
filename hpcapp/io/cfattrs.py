"""CF attributes of an output: what each result is, the input's global attributes, ``history``.

A ``stats`` result carries the CF ``cell_methods`` of its statistic (``time: mean``), the
input's ``standard_name`` and ``long_name`` where it is a value of the input's quantity (mean,
min, max, std, var, sum), its ``units`` (squared for ``var``; none for counts), and a
``long_name`` of its own otherwise. Floating results carry ``_FillValue = NaN`` (NaN marks
cells with no values), so CDO and NCO count them as missing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from hpcapp.io.ncfile import is_structure, nc_value, set_attrs, text

CONVENTIONS = "CF-1.8"
# Stats results that are values of the input's quantity, and the CF cell method of each.
CELL_METHODS = {
    "mean": "mean",
    "min": "minimum",
    "max": "maximum",
    "std": "standard_deviation",
    "var": "variance",
    "sum": "sum",
    "median": "median",
}
# Results of the input's quantity with no CF cell method of their own (quantiles, running
# windows, anomalies).
_QUANTITY_ONLY = ("quantile", "rolling", "anomaly")
_SQUARED = ("var",)
LONG_NAMES = {
    "count": "number of values used (not NaN, not missing)",
    "nan_count": "number of NaN or missing (_FillValue, missing_value; out of valid range with "
    "--mask-valid-range) values",
    "hist": "histogram counts",
    "hist_edges": "histogram bin edges",
    "hist_below": "number of values below the histogram range",
    "hist_above": "number of values above the histogram range",
    "group_first_record": "index of the group's first record",
}
# Results that are never missing: no _FillValue.
_NEVER_MISSING = ("hist_edges",)
# Attributes of the input variable a result of its quantity keeps.
_QUANTITY_ATTRS = ("standard_name", "long_name")


def squared(units: str) -> str:
    """Return ``units`` squared in UDUNITS syntax: ``K`` -> ``K^2``, ``m s-1`` -> ``(m s-1)^2``."""
    return f"{units}^2" if re.fullmatch(r"[A-Za-z_]+", units) else f"({units})^2"


def fill_value(key: str, dtype: np.dtype) -> Any:
    """Return the ``_FillValue`` of a result (NaN in its float type), or None."""
    if dtype.kind != "f" or key in _NEVER_MISSING:
        return None
    return dtype.type(np.nan)


def describe_result(
    key: str,
    variable: Any,
    is_stats: bool,
    reduced: list[str],
    group: str | None,
    quantity: Mapping[str, Any],
) -> None:
    """Give a result its CF attributes (``quantity``: the input variable's attributes)."""
    fill = fill_value(key, variable.dtype)
    if fill is not None:
        variable.attrs["_FillValue"] = fill
    if not is_stats:
        return
    attrs: dict[str, Any] = {}
    units = quantity.get("units")
    if key in CELL_METHODS or key in _QUANTITY_ONLY:
        attrs.update({name: quantity[name] for name in _QUANTITY_ATTRS if name in quantity})
        if units is not None:
            attrs["units"] = squared(text(units)) if key in _SQUARED else units
        if reduced and key in CELL_METHODS:
            method = " ".join(f"{n}:" for n in reduced) + f" {CELL_METHODS[key]}"
            if group is not None:
                method += f" (separately for each group: {group})"
            attrs["cell_methods"] = method
    elif key == "hist_edges" and units is not None:
        attrs["units"] = units
    if key in LONG_NAMES:
        attrs["long_name"] = LONG_NAMES[key]
    set_attrs(variable, attrs)


def global_attributes(h5: Any, inherited: Mapping[str, Any]) -> None:
    """Add the input's global attributes hpcapp does not set, and append to ``history``.

    ``history`` gets ``DATE: COMMAND`` first, as CDO and NCO add theirs (newest first).
    """
    for name, value in inherited.items():
        if name not in h5.attrs and name != "history" and not is_structure(name):
            try:
                h5.attrs[name] = nc_value(value)
            except (OSError, TypeError, ValueError):  # a type netCDF has no word for: left out
                continue
    stamp = time.strftime("%a %b %d %H:%M:%S %Y", time.localtime())
    line = f"{stamp}: {text(h5.attrs.get('command', 'hpcapp'))}"
    before = text(inherited["history"]) if "history" in inherited else ""
    h5.attrs["history"] = nc_value(f"{line}\n{before}" if before else line)
    h5.attrs["Conventions"] = nc_value(CONVENTIONS)
