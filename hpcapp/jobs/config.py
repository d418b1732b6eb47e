"""Job configuration: the options of ``run``, each declared once, and their merge.

:class:`JobConfig` is the declaration: each field is one option, with its type, default, flags,
help and check (:mod:`hpcapp.jobs.options` derives argparse, the TOML keys and the merge from it).
Command-line options win over the file. Parsing is pure (no MPI, no h5py), so every rank parses
the same ``argv`` to the same configuration without talking to the others.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from hpcapp.errors import UsageError
from hpcapp.io import frequency, selection
from hpcapp.jobs.options import (
    Conflict,
    check_file_values,
    declared,
    merge,
    option,
    validate,
)

DISTRIBUTE_MODES = ("read", "scatter")
SCHEDULES = ("static", "dynamic")
COMPRESSIONS = ("gzip", "lzf")


def _chunk_rows(value: int | None) -> str | None:
    if value is not None and value <= 0:
        return f"--chunk-rows must be a positive number of rows, got {value}"
    return None


def _checkpoint_every(value: float) -> str | None:
    if value < 0:
        return f"--checkpoint-every must be >= 0 seconds (0: only on a signal), got {value}"
    return None


def _distribute(value: str) -> str | None:
    if value not in DISTRIBUTE_MODES:
        return f"--distribute must be one of {', '.join(DISTRIBUTE_MODES)}"
    return None


def _schedule(value: str) -> str | None:
    if value not in SCHEDULES:
        return f"--schedule must be one of {', '.join(SCHEDULES)}"
    return None


def _compression(value: str | None) -> str | None:
    if value is not None and value not in COMPRESSIONS:
        return f"--compression must be gzip or lzf, got {value!r}"
    return None


def _group_every(value: int | None) -> str | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        return f"--group-every must be a positive number of records, got {value}"
    return None


def _group_by(value: str | None) -> str | None:
    if value is not None and not str(value).strip():
        return "--group-by needs a dataset name, e.g. --group-by time.month"
    return None


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """Everything that defines one ``run``: what to compute, on what, and where to write it.

    Each field is one option of ``hpcapp run``, of a ``[run]`` config file (same name) and of
    ``hpcapp.run`` (same name), in this order in ``--help`` and in the README's table. Made by
    any means, a JobConfig is checked: a bad value or a conflict raises UsageError. Fields
    declared ``data=True`` (what the kernel is given) are options of ``hpcapp check`` too.
    """

    kernel: str = option(
        "stats, montecarlo, pkg.module:func or file.py:func", default=dataclasses.MISSING
    )
    input: str | None = option(
        "FILE.h5:/path/to/dataset; many files as one: 'runs/*.h5:/t' (quoted glob, sorted "
        "by name) or @files.txt:/t (one path per line); none for montecarlo"
    )
    # None: hpcapp.run returns the results and writes nothing.
    output: str | None = option("result file to write (HDF5)", "-o", "--output")
    chunk_rows: int | None = option(
        "rows per chunk (default: ~4 MiB chunks)", "--chunk-rows", check=_chunk_rows
    )
    params: dict[str, Any] = option(  # noqa: RUF009 - a field with default_factory=dict
        "kernel parameter, repeatable (e.g. -p bins=64 -p range=0,1)",
        "-p",
        "--param",
        metavar="KEY=VALUE",
        default_factory=dict,
        data=True,
    )
    overwrite: bool = option("replace an existing output file", "--overwrite", default=False)
    distribute: str = option(
        "read: every rank reads its own chunks (default); scatter: rank 0 reads and sends them",
        "--distribute",
        choices=DISTRIBUTE_MODES,
        check=_distribute,
        default="read",
    )
    # None: beside the output.
    checkpoint: str | None = option(
        "checkpoint directory (default: OUT.h5.checkpoint)", "--checkpoint", metavar="DIR"
    )
    checkpoint_every: float = option(
        "save progress this often (default 300; 0: only when stopped by SIGTERM, SIGUSR1 "
        "or SIGINT)",
        "--checkpoint-every",
        metavar="SECONDS",
        check=_checkpoint_every,
        default=300.0,
    )
    resume: bool = option(
        "continue from the checkpoint if there is one (else start)", "--resume", default=False
    )
    schedule: str = option(
        "static: fixed contiguous shares (default); dynamic: blocks of chunks on demand, "
        "for uneven work",
        "--schedule",
        choices=SCHEDULES,
        check=_schedule,
        default="static",
    )
    compression: str | None = option(
        "compress per-row outputs (kernels declared with per_row=...)",
        "--compression",
        choices=COMPRESSIONS,
        check=_compression,
    )
    quiet: bool = option(
        "no progress display",
        "-q",
        "--quiet",
        default=False,
        # A program of the user's shows no progress unless it asks to.
        library_default=True,
    )
    progress_every: float = option(
        "when stderr is not a terminal, print progress every 10%% and every SECONDS (default 60)",
        "--progress-every",
        metavar="SECONDS",
        default=60.0,
    )
    # N-D inputs (hpcapp/io): dimensions to reduce over, names for unnamed dimensions, CF off.
    over: str | None = option(
        "dimensions to reduce over, by name or axis number (e.g. time or lat,lon; "
        "default: the first dimension)",
        "--over",
        metavar="DIMS",
        data=True,
        comma_list=True,
    )
    dims: str | None = option(
        "names of the input's dimensions when the file does not name them (e.g. time,lat,lon)",
        "--dims",
        metavar="NAMES",
        data=True,
        comma_list=True,
    )
    raw: bool = option(
        "no CF decoding: keep _FillValue/missing_value cells and packed integers as stored",
        "--raw",
        default=False,
        data=True,
    )
    mask_valid_range: bool = option(
        "also mask values outside valid_min/valid_max/valid_range (netCDF-C's rule; "
        "xarray, and hpcapp by default, do not)",
        "--mask-valid-range",
        default=False,
        data=True,
    )
    memory_per_rank: str | None = option(
        "refuse a job whose per-rank memory estimate exceeds SIZE (e.g. 4GiB)",
        "--memory-per-rank",
        metavar="SIZE",
    )
    # Grouped reductions along the records (hpcapp/io/labels.py): one or the other.
    group_every: int | None = option(
        "reduce each block of K consecutive records on its own (e.g. 24 hourly -> daily)",
        "--group-every",
        metavar="K",
        check=_group_every,
        data=True,
    )
    group_by: str | None = option(
        "reduce per label: NAME is a 1-D integer dataset with one label per record, or "
        "NAME.year, NAME.month, NAME.season, NAME.dayofyear of a CF time coordinate",
        "--group-by",
        metavar="NAME",
        check=_group_by,
        data=True,
    )
    # --resample (hpcapp/io/resample.py): one result per calendar period, a grouping too.
    resample: str | None = option(
        "one result per calendar period of the record dimension's CF time: DIM=FREQ with FREQ "
        "ND (days), NM (months, also NMS), NY (years, also NYS, NA), e.g. time=1M or time=5D",
        "--resample",
        metavar="DIM=FREQ",
        check=frequency.check,
        data=True,
    )
    # Many files (hpcapp/io/files.py): order them by their first time instead of by name.
    sort_files: bool = option(
        "many files: take them in the order of their first time value, not by name",
        "--sort-files",
        default=False,
        data=True,
    )
    # Selections (hpcapp/io/selection.py): {dimension: (start, end)}, read as a hyperslab.
    sel: dict[str, Any] = option(  # noqa: RUF009 - a field with default_factory=dict
        "select by coordinate value, ends included as xarray's .sel (repeatable): e.g. "
        "time=1992-01-01:1992-12-31 or lat=-30:30,lon=0:90 (descending lat: lat=30:-30; "
        "an end may be empty)",
        "--sel",
        metavar="DIM=START:END",
        default_factory=dict,
        parse=lambda items: selection.parse_items(items, "sel"),
        check=lambda value: selection.check(value, "sel"),
        data=True,
    )
    isel: dict[str, Any] = option(  # noqa: RUF009 - a field with default_factory=dict
        "select by index, a half-open Python slice as xarray's .isel (repeatable): e.g. "
        "time=0:365 or lat=-10:",
        "--isel",
        metavar="DIM=START:END",
        default_factory=dict,
        parse=lambda items: selection.parse_items(items, "isel"),
        check=lambda value: selection.check(value, "isel"),
        data=True,
    )

    # Weighted statistics (hpcapp/io/weights.py, hpcapp/kernels/weighted.py): built-in stats.
    weights: str | None = option(
        "weighted stats over --over: area (cell_measures, else lat/lon bounds, else cos(lat)) "
        "or FILE:/VAR (weights over some of the input's dimensions); a kernel declaring "
        "coords=True gets them as coords.weights",
        "--weights",
        metavar="area|FILE:/VAR",
        data=True,
    )
    # Masks and region statistics (hpcapp/io/regions.py, hpcapp/kernels/zonal.py): built-in stats.
    mask: str | None = option(
        "stats: cells where VAR (over some non-record dims) is zero or missing are missing",
        "--mask",
        metavar="FILE:/VAR",
        data=True,
    )
    regions: str | None = option(
        "stats per region: VAR is an integer raster over reduced dims, one result per id",
        "--regions",
        metavar="FILE:/VAR",
        data=True,
    )

    def __post_init__(self) -> None:
        validate(self, CONFLICTS)


# Pairs of options that exclude each other, checked after each option's own check.
CONFLICTS = (
    Conflict(
        "schedule",
        "distribute",
        "--schedule dynamic needs every rank to read its own chunks: drop --distribute scatter",
        when=lambda c: c.schedule == "dynamic" and c.distribute == "scatter",
    ),
    Conflict(
        "group_every",
        "group_by",
        "--group-every and --group-by exclude each other: give one",
        in_parser=True,
    ),
    Conflict("regions", "group_by", "--regions and --group-by exclude each other: give one"),
    Conflict("regions", "group_every", "--regions and --group-every exclude each other: give one"),
    Conflict("resample", "group_by", "--resample and --group-by exclude each other: give one"),
    Conflict(
        "resample", "group_every", "--resample and --group-every exclude each other: give one"
    ),
    Conflict("regions", "resample", "--regions and --resample exclude each other: give one"),
    Conflict(
        "raw",
        "mask_valid_range",
        "--raw and --mask-valid-range exclude each other: --raw decodes nothing",
    ),
)

# Keys a [run] config file may hold, with the Python types they accept.
CONFIG_KEYS: dict[str, tuple[type, ...]] = {
    item.name: item.toml_types for item in declared(JobConfig)
}


def load_config_file(path: str) -> dict[str, Any]:
    """Read a TOML config file and check its keys and their types."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"config file {path!r} does not exist or is not a file")
    # Imported here: a job without a config file (most) saves its ~7 ms on every rank.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path!r} is not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read config file {path!r}: {exc}") from None
    return check_file_values(path, data, JobConfig)


def make_job_config(
    cli: dict[str, Any], file_values: dict[str, Any], output_required: bool = True
) -> JobConfig:
    """Merge command-line values (``None`` when not given) over config-file values."""
    merged = merge(JobConfig, cli, file_values)
    if not merged["kernel"]:
        raise UsageError("run needs a KERNEL (e.g. `hpcapp run stats data.h5:/x -o out.h5`)")
    if not merged["output"] and output_required:
        raise UsageError("run needs an output file: -o OUT.h5")
    return JobConfig(**merged)
