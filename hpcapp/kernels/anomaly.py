"""The ``anomaly`` kernel: each record minus the climatology of its month (or day of year).

``-p climatology=FILE:/VAR`` names a climatology an earlier job wrote, such as ``tas_mean`` of
``hpcapp run stats IN:/tas --group-by time.month -o clim.nc``: ``VAR`` leads with the group
dimension (``month`` or ``dayofyear``, whose coordinate holds the labels) and then has the
input's record shape. Each record's group comes from its decoded time (the kernel is declared
``times=True``); the output ``<var>_anomaly`` has the input's shape, as xarray's
``ds.groupby("time.month") - clim`` (NaN where the value or the time is missing, or where the
climatology has no such group). ``-p standardize=true`` also divides by the group's standard
deviation, read from the variable beside ``VAR`` named with ``_std`` for ``_mean``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from hpcapp.kernels.api import kernel
from hpcapp.kernels.hookspec import InputInfo, Partial

GROUPS = {"month": "month", "dayofyear": "dayofyr"}  # dimension -> cftime attribute


def _split(spec: str) -> tuple[str, str]:
    path, sep, name = str(spec).rpartition(":")
    if not sep or not path or not name:
        raise ValueError(f"-p climatology must be FILE:/VARIABLE, got {spec!r}")
    return path, name if name.startswith("/") else "/" + name


def std_name(name: str) -> str:
    """Return the standard deviation's variable beside a mean (``/tas_mean`` -> ``/tas_std``)."""
    if not name.endswith("_mean"):
        raise ValueError(
            f"-p standardize=true needs a climatology named *_mean (its *_std beside it), "
            f"got {name}"
        )
    return name[: -len("_mean")] + "_std"


@functools.lru_cache(maxsize=4)
def _load(path: str, name: str, standardize: bool, stamp: tuple[int, int]) -> tuple:
    """Return (group dimension, labels, means, stds or None); ``stamp`` renews a changed file."""
    import h5py

    where = f"{path}:{name}"
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"cannot open climatology {path}: {exc}") from None
    with h5:
        variable = h5.get(name)
        if not isinstance(variable, h5py.Dataset) or variable.ndim < 1:
            raise ValueError(f"climatology {where}: no such variable")
        scales = variable.dims[0]
        group = scales[0].name.rsplit("/", 1)[-1] if len(scales) else None
        if group not in GROUPS:
            raise ValueError(
                f"climatology {where} does not lead with a month or dayofyear dimension "
                f"(got {group!r}): write it with --group-by time.month or time.dayofyear"
            )
        labels = np.asarray(scales[0][()], np.int64)
        means = np.asarray(variable[()], np.float64)
        stds = None
        if standardize:
            other = h5.get(std_name(name))
            if not isinstance(other, h5py.Dataset) or other.shape != variable.shape:
                raise ValueError(f"climatology {path} has no {std_name(name)} shaped like {name}")
            stds = np.asarray(other[()], np.float64)
    return group, labels, means, stds


def load_climatology(spec: str, standardize: bool) -> tuple:
    """Return the climatology of ``spec`` (cached per process while the file is unchanged)."""
    path, name = _split(spec)
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ValueError(f"climatology {path}: {exc.strerror or exc}") from None
    return _load(os.path.abspath(path), name, bool(standardize), (info.st_mtime_ns, info.st_size))


def check_anomaly(params: Mapping[str, Any], data: InputInfo) -> None:
    """Refuse a climatology that cannot be read or does not fit the input's records."""
    if not isinstance(params["standardize"], bool):
        raise ValueError(f"-p standardize must be true or false, got {params['standardize']!r}")
    _, _, means, _ = load_climatology(params["climatology"], params["standardize"])
    if data.row_shape is not None and tuple(means.shape[1:]) != tuple(data.row_shape):
        raise ValueError(
            f"climatology {params['climatology']} has records of shape {means.shape[1:]}, the "
            f"input {tuple(data.row_shape)}"
        )
    if data.dtype is not None and np.dtype(data.dtype).kind not in "iuf":
        raise ValueError(f"an anomaly needs numbers, got dtype {np.dtype(data.dtype)}")


@kernel(
    per_row="anomaly",
    returns=("anomaly",),
    validate=check_anomaly,
    times=True,
    climatology_param="climatology",
)
def anomaly(
    chunk: np.ndarray, climatology: str, standardize: bool = False, times: Any = None
) -> Partial:
    """Each value minus its month's (or day of year's) mean from -p climatology=FILE:/VAR."""
    group, labels, means, stds = load_climatology(climatology, standardize)
    attribute = GROUPS[group]
    codes = np.array([-1 if t is None else getattr(t, attribute) for t in times], np.int64)
    at = np.searchsorted(labels, codes).clip(0, max(len(labels) - 1, 0))
    known = (labels[at] == codes) if len(labels) else np.zeros(len(codes), bool)
    values = np.asarray(chunk, dtype=np.float64)
    out = np.full(values.shape, np.nan)
    out[known] = values[known] - means[at[known]]
    if stds is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            out[known] /= stds[at[known]]
    return {"anomaly": out}
