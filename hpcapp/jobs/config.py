"""Job configuration: the values of ``run``, from the command line and a TOML file.

Command-line options win over the file. Parsing is pure (no MPI, no h5py), so every rank parses
the same ``argv`` to the same configuration without talking to the others.
"""

from __future__ import annotations

import dataclasses
import decimal
import re
import sys
from pathlib import Path
from typing import Any

from hpcapp.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DISTRIBUTE_MODES = ("read", "scatter")
SCHEDULES = ("static", "dynamic")
DEFAULT_CHECKPOINT_SECONDS = 300.0
DEFAULT_PROGRESS_SECONDS = 60.0

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """Everything that defines one ``run``: what to compute, on what, and where to write it."""

    kernel: str
    output: str | None  # None: hpcapp.run returns the results and writes nothing
    input: str | None = None
    chunk_rows: int | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    overwrite: bool = False
    distribute: str = "read"
    checkpoint: str | None = None  # directory; None: beside the output
    checkpoint_every: float = DEFAULT_CHECKPOINT_SECONDS
    resume: bool = False
    schedule: str = "static"
    compression: str | None = None  # for per-row outputs: gzip or lzf
    quiet: bool = False
    progress_every: float = DEFAULT_PROGRESS_SECONDS
    # N-D inputs (hpcapp/io): dimensions to reduce over, names for unnamed dimensions, CF off.
    over: str | None = None  # "time" or "lat,lon" or "0,2"; None: the first dimension
    dims: str | None = None  # "time,lat,lon" for inputs without dimension scales
    raw: bool = False  # skip CF masking and unpacking
    mask_valid_range: bool = False  # also mask values outside valid_min/valid_max/valid_range
    memory_per_rank: str | None = None  # "4GiB": refuse a job whose partials need more
    # Grouped reductions along the records (hpcapp/io/labels.py): one or the other.
    group_every: int | None = None  # K: records r // K form a group
    group_by: str | None = None  # NAME (integer labels) or NAME.month, .year, .season, ...
    # Many files (hpcapp/io/files.py): order them by their first time instead of by name.
    sort_files: bool = False


# Keys a [run] config file may hold, with the Python types they accept.
CONFIG_KEYS: dict[str, tuple[type, ...]] = {
    "kernel": (str,),
    "input": (str,),
    "output": (str,),
    "chunk_rows": (int,),
    "params": (dict,),
    "overwrite": (bool,),
    "distribute": (str,),
    "checkpoint": (str,),
    "checkpoint_every": (int, float),
    "resume": (bool,),
    "schedule": (str,),
    "compression": (str,),
    "quiet": (bool,),
    "progress_every": (int, float),
    "over": (str,),
    "dims": (str,),
    "raw": (bool,),
    "mask_valid_range": (bool,),
    "memory_per_rank": (str,),
    "group_every": (int,),
    "group_by": (str,),
    "sort_files": (bool,),
}


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


# 1e300 as an int is exact but useless: beyond this, an exponent literal stays a float.
_MAX_INT_EXPONENT = 18


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


def load_config_file(path: str) -> dict[str, Any]:
    """Read a TOML config file and check its keys and their types."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"config file {path!r} does not exist or is not a file")
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path!r} is not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read config file {path!r}: {exc}") from None
    for key, value in data.items():
        if key not in CONFIG_KEYS:
            known = ", ".join(CONFIG_KEYS)
            raise UsageError(f"config file {path!r}: unknown key {key!r} (known keys: {known})")
        types = CONFIG_KEYS[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise UsageError(
                f"config file {path!r}: key {key!r} must be a {types[0].__name__}, got {value!r}"
            )
    if "params" in data:
        # A string in [params] means what it means after -p: range = "0,40" is range=0,40.
        data["params"] = {
            key: parse_value(value) if isinstance(value, str) else value
            for key, value in data["params"].items()
        }
    return data


def make_job_config(
    cli: dict[str, Any], file_values: dict[str, Any], output_required: bool = True
) -> JobConfig:
    """Merge command-line values (``None`` when not given) over config-file values."""
    merged: dict[str, Any] = {}
    for key in CONFIG_KEYS:
        if key == "params":
            continue
        value = cli.get(key)
        merged[key] = value if value is not None else file_values.get(key)
    params = dict(file_values.get("params", {}))
    params.update(cli.get("params") or {})
    if not merged["kernel"]:
        raise UsageError("run needs a KERNEL (e.g. `hpcapp run stats data.h5:/x -o out.h5`)")
    if not merged["output"] and output_required:
        raise UsageError("run needs an output file: -o OUT.h5")
    chunk_rows = merged["chunk_rows"]
    if chunk_rows is not None and chunk_rows <= 0:
        raise UsageError(f"--chunk-rows must be a positive number of rows, got {chunk_rows}")
    every = merged["checkpoint_every"]
    every = DEFAULT_CHECKPOINT_SECONDS if every is None else float(every)
    if every < 0:
        raise UsageError(
            f"--checkpoint-every must be >= 0 seconds (0: only on a signal), got {every}"
        )
    distribute = merged["distribute"] or "read"
    if distribute not in DISTRIBUTE_MODES:
        raise UsageError(f"--distribute must be one of {', '.join(DISTRIBUTE_MODES)}")
    schedule = merged["schedule"] or "static"
    if schedule not in SCHEDULES:
        raise UsageError(f"--schedule must be one of {', '.join(SCHEDULES)}")
    compression = merged["compression"]
    if compression not in (None, "gzip", "lzf"):
        raise UsageError(f"--compression must be gzip or lzf, got {compression!r}")
    if schedule == "dynamic" and distribute == "scatter":
        raise UsageError(
            "--schedule dynamic needs every rank to read its own chunks: drop --distribute scatter"
        )
    group_every, group_by = merged["group_every"], merged["group_by"]
    if group_every is not None and group_by is not None:
        raise UsageError("--group-every and --group-by exclude each other: give one")
    if group_every is not None and (
        isinstance(group_every, bool) or not isinstance(group_every, int) or group_every < 1
    ):
        raise UsageError(f"--group-every must be a positive number of records, got {group_every}")
    if merged["raw"] and merged["mask_valid_range"]:
        raise UsageError("--raw and --mask-valid-range exclude each other: --raw decodes nothing")
    if group_by is not None and not str(group_by).strip():
        raise UsageError("--group-by needs a dataset name, e.g. --group-by time.month")
    return JobConfig(
        kernel=merged["kernel"],
        output=merged["output"],
        input=merged["input"],
        chunk_rows=chunk_rows,
        params=params,
        overwrite=bool(merged["overwrite"]),
        distribute=distribute,
        checkpoint=merged["checkpoint"],
        checkpoint_every=every,
        resume=bool(merged["resume"]),
        schedule=schedule,
        compression=compression,
        quiet=bool(merged["quiet"]),
        progress_every=DEFAULT_PROGRESS_SECONDS
        if merged["progress_every"] is None
        else float(merged["progress_every"]),
        over=merged["over"],
        dims=merged["dims"],
        raw=bool(merged["raw"]),
        mask_valid_range=bool(merged["mask_valid_range"]),
        memory_per_rank=merged["memory_per_rank"],
        group_every=group_every,
        group_by=group_by,
        sort_files=bool(merged["sort_files"]),
    )
