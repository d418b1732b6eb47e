"""Where the compiled loops of ``stats`` and ``rolling`` come from: a prebuilt module, else JIT.

Importing numba and loading its cached loops costs ~0.3 s per process (the import ~0.15 s,
numba's first-use set-up ~0.15 s), more than the rest of a rank's start-up. So
``python -m hpcapp.kernels.precompile`` also compiles the same loops ahead of time
(:mod:`numba.pycc`) into one extension module per dtype family, which a job imports in ~1 ms
without numba. It is the same source, types and compiler flags (no fastmath), so the same bits.

The module's name carries a digest of everything its code depends on: the loops' source files,
numba's and numpy's versions, and this machine's CPU (model and flags from /proc/cpuinfo: the
code is built for the build machine's vector units). A module built elsewhere or before an edit
is never loaded; without a matching one (not built, no C compiler at build time, no /proc) the
loops come from numba's JIT and its cache, as before.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import sys
import sysconfig
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
# Every file the compiled code depends on: an edit to any of them retires the built module.
SOURCES = (
    "_fused.py", "_fused_lanes.py", "_fused_exact.py", "_exact.py", "_loops.py", "_select.py",
    "_weighted_loops.py", "_rolling_sums.py",
)  # fmt: skip
PREFIX = "_hpcapp_stats_loops_"
# The dtypes the compiled loops take; the exact integer moments treat uint64 as int64 words.
CODES = ("i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f4", "f8")
MOMENT_CODES = ("i1", "i2", "i4", "i8", "u1", "u2", "u4")


def _cpu_identity() -> bytes | None:
    """Return this CPU's model and feature flags (the first processor of /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", "rb") as info:
            first = info.read(1 << 16).split(b"\n\n", 1)[0]
    except OSError:
        return None
    keep = (b"vendor_id", b"cpu family", b"model", b"model name", b"flags", b"Features")
    lines = [line for line in first.splitlines() if line.split(b":", 1)[0].strip() in keep]
    return b"\n".join(lines) if lines else None


def _numba_version() -> bytes | None:
    """Return numba's version file, found without importing numba (None if not installed)."""
    spec = importlib.util.find_spec("numba")
    if spec is None or spec.origin is None:
        return None
    try:
        return (Path(spec.origin).parent / "_version.py").read_bytes()
    except OSError:
        return None


@functools.cache
def module_name() -> str | None:
    """Return the name of the extension module for this source, numba, numpy and CPU."""
    cpu, numba = _cpu_identity(), _numba_version()
    if cpu is None or numba is None:
        return None
    digest = hashlib.sha256(cpu + numba + np.__version__.encode())
    for source in SOURCES:
        digest.update((HERE / source).read_bytes())
    return PREFIX + digest.hexdigest()[:20]


def cache_dirs() -> list[Path]:
    """Return where the built module may be, in order: NUMBA_CACHE_DIR, in-tree, user cache."""
    dirs = []
    if os.environ.get("NUMBA_CACHE_DIR"):
        dirs.append(Path(os.environ["NUMBA_CACHE_DIR"]) / "hpcapp")
    dirs.append(HERE / "__pycache__")
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    dirs.append(Path(base) / "hpcapp")
    return dirs


def module_file(directory: Path, name: str) -> Path:
    """Return the path of extension module ``name`` in ``directory``."""
    return directory / (name + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))


@functools.cache
def prebuilt() -> ModuleType | None:
    """Return the prebuilt loops of this source and machine, or None (then numba's JIT)."""
    if os.environ.get("HPCAPP_JIT_ONLY"):
        return None  # tests and benchmarks compare both paths
    name = module_name()
    if name is None:
        return None
    for directory in cache_dirs():
        path = module_file(directory, name)
        if path.is_file():
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                return None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[name] = module
            return module
    return None


def loop(family: str, dtype: np.dtype) -> Any:
    """Return the compiled ``family`` loop for ``dtype``: ``lanes``, ``stats`` or ``moments``."""
    module = prebuilt()
    if module is not None:
        return getattr(module, f"{family}_{dtype.kind}{dtype.itemsize}")
    # numba's JIT: its import and cache load are paid here, on the first large chunk.
    if family == "lanes":
        from hpcapp.kernels._fused_lanes import fused_lanes

        return fused_lanes
    if family == "stats":
        from hpcapp.kernels._fused import fused_stats

        return fused_stats
    from hpcapp.kernels._fused_exact import moments

    return moments


def packed_loop(stored: np.dtype, values: np.dtype) -> Any:
    """Return the compiled one-pass loop decoding ``stored`` integers into ``values`` floats."""
    module = prebuilt()
    if module is not None:
        return getattr(module, f"packed_{stored.kind}{stored.itemsize}_f{values.itemsize}")
    from hpcapp.kernels._fused_lanes import fused_packed

    return fused_packed


def weighted_loop(stored: np.dtype, values: np.dtype | None = None) -> Any:
    """Return the weighted per-record loop of ``stored`` floats, or ints decoded to ``values``."""
    module = prebuilt()
    key = f"{stored.kind}{stored.itemsize}"
    if module is not None:
        return getattr(module, f"weighted_{key}" + (f"_f{values.itemsize}" if values else ""))
    from hpcapp.kernels import _weighted_loops

    return _weighted_loops.weighted_packed if values else _weighted_loops.weighted_rows


def formula_edges(step: float, lo: float, nbins: int, edges32: bool) -> np.ndarray:
    """Return the lower edges of all bins as the compiled histogram loop computes them."""
    module = prebuilt()
    if module is not None:
        return module.formula_edges(step, lo, nbins, edges32)
    from hpcapp.kernels._fused_lanes import formula_edges as compiled

    return compiled(step, lo, nbins, edges32)


def select_loop(stored: np.dtype, decoded: np.dtype) -> Any:
    """Return quantile's compiled selection of ``stored`` integers decoded into ``decoded``."""
    module = prebuilt()
    if module is not None:
        return getattr(module, f"select_{stored.kind}{stored.itemsize}_f{decoded.itemsize}")
    from hpcapp.kernels._select import cell_select

    return cell_select


def rolling_loop(values: np.dtype) -> Any:
    """Return ``rolling``'s compiled running sums of float32 or float64 ``values``."""
    module = prebuilt()
    if module is not None:
        return getattr(module, f"rolling_f{values.itemsize}")
    from hpcapp.kernels._rolling_sums import running_sums

    return running_sums


def rolling_packed_loop(stored: np.dtype, values: np.dtype) -> Any:
    """Return ``rolling``'s compiled running sums decoding ``stored`` integers into ``values``."""
    module = prebuilt()
    if module is not None:
        return getattr(module, f"rolling_{stored.kind}{stored.itemsize}_f{values.itemsize}")
    from hpcapp.kernels._rolling_sums import running_sums_packed

    return running_sums_packed
