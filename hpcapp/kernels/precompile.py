"""Build ``stats``' compiled loops ahead of a job: numba's cache, the prebuilt module, bytecode.

    python -m hpcapp.kernels.precompile [histogram|lanes|prebuilt ...]

Compiles (or loads from numba's cache) the loops for every dtype (parts ``histogram`` and
``lanes``), then builds them again ahead of time into one extension module that jobs import
without numba (part ``prebuilt``: :mod:`numba.pycc`, needs a C compiler; skipped under
``HPCAPP_JIT_ONLY=1``; see :mod:`hpcapp.kernels._loops`), and writes hpcapp's bytecode. Every
part when none is named.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from hpcapp.kernels import (
    _fused,
    _fused_call,
    _fused_exact,
    _fused_lanes,
    _loops,
    _rolling_sums,
    _select,
    quantile,
    rolling,
)
from hpcapp.kernels import _weighted_loops as _weighted
from hpcapp.kernels.packed import STORED_CODES, LinearUnpack, Packed
from hpcapp.kernels.weighted_rows import rows_partial

# numba's JIT cache: two families that share no cached function, so two processes can compile
# one each at once without racing on numba's cache index; then the prebuilt module (all loops).
JIT_PARTS = ("histogram", "lanes")
_WEIGHTED_FLOATS = ("f4", "f8")  # the float chunks the per-record weighted loop takes
PARTS = (*JIT_PARTS, "prebuilt")


def precompile(parts: tuple[str, ...] = JIT_PARTS) -> str:
    """Compile (or load from numba's cache) the loops for every dtype; return the cache directory.

    ``parts`` picks the loop families: ``histogram`` (``fused_stats``, and ``rolling``'s running
    sums) and ``lanes`` (the one-pass lanes, the exact integer moments and quantile's selection).
    """
    for code in _loops.CODES:
        dtype = np.dtype(code)
        acc = np.dtype(np.float64 if dtype.kind == "f" else np.int64)
        zeros = np.zeros((8, 1), dtype)
        if "histogram" in parts:
            _fused_call.three_pass_partial(zeros, 4, plan_of(dtype))
            _warm_rolling(dtype)
        if "lanes" in parts:
            _fused_call.chunk_partial(zeros, acc, 1, None)  # no histogram: the lane pass
            _fused_call.chunk_partial(zeros, acc, 4, plan_of(dtype))
            if code in STORED_CODES:
                for values in ("f4", "f8") if dtype.itemsize < 4 else ("f8",):
                    unpack = LinearUnpack(code, values, (0,), 0, 0)
                    f8 = np.dtype(np.float64)
                    _fused_call.chunk_partial(zeros, f8, 1, None, unpack)
                    _fused_call.chunk_partial(zeros, f8, 4, plan_of(values), unpack)
                    rows_partial(Packed(zeros, unpack), np.ones((1, 1)), 1)  # weighted per record
            if code in _WEIGHTED_FLOATS:
                rows_partial(zeros, np.ones((1, 1)), 1)
            if dtype.kind in "iu":
                _fused_call.chunk_moments(zeros)
            if code in ("i1", "u1", "i2", "u2"):  # quantile's loops
                info = np.iinfo(dtype)
                for values in ("f4", "f8"):
                    unpack = LinearUnpack(code, values, (), int(info.min), int(info.max), 1.0, 0.0)
                    quantile.cell_quantiles(Packed(zeros, unpack), [0.5])
    cache = getattr(_fused.fused_stats, "_cache", None)
    return str(getattr(cache, "_cache_path", "numba's default cache directory"))


def _warm_rolling(dtype: np.dtype) -> None:
    """Run ``rolling``'s running sums on zeros of ``dtype`` (and packed in it, if it packs)."""
    params = {"window": 2, "stat": "mean"}
    if dtype.kind == "f":
        rolling.rolling.func(np.zeros((2, 1), dtype), **params)
    if dtype.str[1:] in STORED_CODES:
        for values in ("f4", "f8") if dtype.itemsize < 4 else ("f8",):
            unpack = LinearUnpack(dtype.str, values, (0,), 0, 0)
            rolling.rolling.func(Packed(np.zeros((2, 1), dtype), unpack), **params)


def plan_of(dtype: Any) -> Any:
    """Return a histogram plan (4 bins over [0, 1]) for values of ``dtype``."""
    return _fused_call.histogram_plan(np.dtype(dtype).str, 4, 0.0, 1.0)


def _signatures() -> dict[str, tuple[Any, str]]:
    """Return every exported loop: ``name -> (compiled function, numba signature)``."""
    exports: dict[str, tuple[Any, str]] = {}
    for code in _loops.CODES:
        dtype = np.dtype(code)
        c = f"{'float' if dtype.kind == 'f' else 'int' if dtype.kind == 'i' else 'uint'}"
        c += str(8 * dtype.itemsize)
        acc = "float64" if dtype.kind == "f" else "int64"
        work = "float32" if code == "f4" else "float64"
        key = f"{dtype.kind}{dtype.itemsize}"
        bins = "float64, float64, float64, int64, boolean, int32[::1], int64[::1]"
        histogram = f"boolean, UniTuple({work}, 8), {bins}"
        outputs = (
            f"int64[::1], {acc}[::1], float64[::1], float64[::1], {c}[::1], {c}[::1], "
            "int64[:, ::1], int64[:, ::1]"
        )
        exports[f"lanes_{key}"] = (
            _lanes,
            f"void({c}[:, ::1], int64, {acc}, {c}, {c}, {histogram}, {outputs})",
        )
        exports[f"stats_{key}"] = (
            _stats,
            f"void({c}[::1], int64, int64, {acc}, {c}, {c}, {histogram}, {outputs})",
        )
        if code in STORED_CODES:
            for f in ("float32", "float64") if dtype.itemsize < 4 else ("float64",):
                guide = f"boolean, UniTuple({f}, 8), {bins}"
                exports[f"packed_{key}_f{int(f[5:]) // 8}"] = (
                    _packed,
                    f"void({c}[:, ::1], int64, float64, {f}, {f}, UniTuple({c}, 4), int64, {c}, "
                    f"{c}, {f}, {f}, {f}[::1], {guide}, int64[::1], float64[::1], float64[::1], "
                    f"float64[::1], {f}[::1], {f}[::1], int64[:, ::1], int64[:, ::1])",
                )
                exports[f"weighted_{key}_f{int(f[5:]) // 8}"] = (
                    _wpacked,
                    f"void({c}[:, ::1], float64[:, ::1], UniTuple({c}, 4), int64, {c}, {c}, {f}, "
                    f"{f}, {f}[::1], int64[::1], float64[::1], float64[::1], float64[::1])",
                )
        if code in _WEIGHTED_FLOATS:
            sums = "int64[::1], float64[::1], float64[::1], float64[::1]"
            exports[f"weighted_{key}"] = (_wrows, f"void({c}[:, ::1], float64[:, ::1], {sums})")
        if code in _loops.MOMENT_CODES:
            exports[f"moments_{key}"] = (
                _moments,
                f"void({c}[::1], int64, int64, boolean, int64[:, ::1], int64[:, ::1])",
            )
    exports["formula_edges"] = (_edges, "float64[::1](float64, float64, int64, boolean)")
    exports.update(_select_signatures())
    exports.update(_rolling_signatures())
    return exports


def _select_signatures() -> dict[str, tuple[Any, str]]:
    """Return quantile's loops (:mod:`hpcapp.kernels._select`) for 8- and 16-bit integers."""
    exports: dict[str, tuple[Any, str]] = {}
    for code in ("i1", "u1", "i2", "u2"):
        dtype = np.dtype(code)
        c = f"{'int' if dtype.kind == 'i' else 'uint'}{8 * dtype.itemsize}"
        for f in ("float32", "float64"):
            exports[f"select_{code}_f{int(f[5:]) // 8}"] = (
                _cell_select,
                f"void({c}[:, ::1], {c}, {c}, UniTuple({c}, 4), int64, int64, {f}, {f}, boolean, "
                "int64[:, ::1], int64[:, ::1], float64[:, ::1], boolean, float64[:, ::1])",
            )
    return exports


def _rolling_signatures() -> dict[str, tuple[Any, str]]:
    """Return ``rolling``'s running sums: of floats, and decoding each packed integer type."""
    exports: dict[str, tuple[Any, str]] = {}
    for f in ("float32", "float64"):
        sums = f"int64, int64, int64, int64, int64, boolean, int64, {f}[:, ::1], {f}[::1]"
        exports[f"rolling_f{int(f[5:]) // 8}"] = (_rolling, f"void({f}[:, ::1], {sums})")
        for code in STORED_CODES:
            dtype = np.dtype(code)
            if dtype.itemsize == 4 and f == "float32":
                continue  # 32-bit integers unpack to float64 only
            c = f"{'int' if dtype.kind == 'i' else 'uint'}{8 * dtype.itemsize}"
            unpack = f"UniTuple({c}, 4), int64, {c}, {c}, {f}, {f}, {f}"
            exports[f"rolling_{dtype.kind}{dtype.itemsize}_f{int(f[5:]) // 8}"] = (
                _rolling_packed,
                f"void({c}[:, ::1], {sums}, {unpack})",
            )
    return exports


# Plain functions calling the compiled loops, exported as they are: each loop keeps its own
# options (numpy's error model) instead of taking pycc's.
def _lanes(c, lanes, zero, big, small, on, guide, lo, scale, step, nbins, e32, offsets,
           counters, count, total, mean, m2, low, high, hist, outside):  # fmt: skip
    _fused_lanes.fused_lanes(
        c, lanes, zero, big, small, on, guide, lo, scale, step, nbins, e32, offsets, counters,
        count, total, mean, m2, low, high, hist, outside,
    )  # fmt: skip


def _packed(raw, lanes, zero, big, small, fills, n_fills, keep_lo, keep_hi, unscale, unoffset,
            buf, on, guide, lo, scale, step, nbins, e32, offsets, counters, count, total, mean,
            m2, low, high, hist, outside):  # fmt: skip
    _fused_lanes.fused_packed(
        raw, lanes, zero, big, small, fills, n_fills, keep_lo, keep_hi, unscale, unoffset, buf,
        on, guide, lo, scale, step, nbins, e32, offsets, counters, count, total, mean, m2, low,
        high, hist, outside,
    )  # fmt: skip


def _stats(f, n, lanes, zero, big, small, on, guide, lo, scale, step, nbins, e32, offsets,
           counters, count, total, mean, m2, low, high, hist, outside):  # fmt: skip
    _fused.fused_stats(
        f, n, lanes, zero, big, small, on, guide, lo, scale, step, nbins, e32, offsets,
        counters, count, total, mean, m2, low, high, hist, outside,
    )  # fmt: skip


def _wrows(values, weights, count, sw, swx, m2):
    _weighted.weighted_rows(values, weights, count, sw, swx, m2)


def _wpacked(raw, weights, fills, n_fills, keep_lo, keep_hi, scale, offset, buf, count, sw, swx,
             m2):  # fmt: skip
    _weighted.weighted_packed(
        raw, weights, fills, n_fills, keep_lo, keep_hi, scale, offset, buf, count, sw, swx, m2
    )


def _moments(flat, n_cols, pieces, unsigned, s1, s2):
    _fused_exact.moments(flat, n_cols, pieces, unsigned, s1, s2)


def _rolling(data, first, skip, reach0, reach1, block, mean, least, out, buf):
    _rolling_sums.running_sums(data, first, skip, reach0, reach1, block, mean, least, out, buf)


def _rolling_packed(raw, first, skip, reach0, reach1, block, mean, least, out, buf, fills,
                    n_fills, keep_lo, keep_hi, scale, offset, nan):  # fmt: skip
    _rolling_sums.running_sums_packed(
        raw, first, skip, reach0, reach1, block, mean, least, out, buf, fills, n_fills, keep_lo,
        keep_hi, scale, offset, nan,
    )  # fmt: skip


def _edges(step, lo, nbins, edges32):
    return _fused_lanes.formula_edges(step, lo, nbins, edges32)


def _cell_select(x, lo, hi, fills, n_fills, base, scale, offset, reverse, prev, nxt, gamma,
                 interpolate, out):  # fmt: skip
    _select.cell_select(
        x, lo, hi, fills, n_fills, base, scale, offset, reverse, prev, nxt, gamma, interpolate,
        out,
    )  # fmt: skip


def build_prebuilt() -> Path | None:
    """Build the prebuilt module (unless built) in the first writable cache directory; return it."""
    name = _loops.module_name()
    if name is None:
        return None
    for directory in _loops.cache_dirs():
        if _loops.module_file(directory, name).is_file():
            return _loops.module_file(directory, name)  # built for this source and CPU already
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pycc's deprecation notice
        from numba.core import codegen
        from numba.pycc import CC

    # pycc builds for a generic CPU of the model by default; build for this one's features, as
    # numba's JIT does (the module's name carries the CPU, so no other machine loads it).
    codegen.AOTCPUCodegen._customize_tm_features = (  # type: ignore[method-assign]
        codegen.CPUCodegen._get_host_cpu_features
    )
    for directory in _loops.cache_dirs():
        try:
            directory.mkdir(parents=True, exist_ok=True)
            build = Path(tempfile.mkdtemp(prefix=".build-", dir=directory))
        except OSError:
            continue
        try:
            cc = CC(name, source_module=_fused)
            cc.output_dir = str(build)
            from llvmlite import binding  # type: ignore[import-untyped]

            cc.target_cpu = binding.get_host_cpu_name()
            for export, (compiled, signature) in _signatures().items():
                cc.export(export, signature)(compiled)
            cc.compile()
            built = _loops.module_file(build, name)
            target = _loops.module_file(directory, name)
            os.replace(built, target)  # ranks loading now see the old file or the new one
            return target
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return None


def compile_bytecode() -> bool:
    """Write the bytecode of every hpcapp module; return False if some could not be written.

    Python writes it on first import anyway, but not under ``PYTHONDONTWRITEBYTECODE=1`` or in
    a read-only tree: then every rank compiles hpcapp's modules from source (~0.1 s a rank).
    """
    import compileall

    return bool(compileall.compile_dir(Path(__file__).resolve().parent.parent, quiet=1))


def main(argv: list[str]) -> int:
    """Build the chosen parts (every part when none is named) and hpcapp's bytecode."""
    chosen = tuple(argv) or PARTS
    unknown = [part for part in chosen if part not in PARTS]
    if unknown:
        print(f"unknown part(s) {', '.join(unknown)}: choose from {', '.join(PARTS)}")
        return 2
    loops = tuple(part for part in chosen if part in JIT_PARTS)
    if loops:
        print(f"stats loops ({', '.join(loops)}) compiled and cached in {precompile(loops)}")
    if "prebuilt" in chosen and not os.environ.get("HPCAPP_JIT_ONLY"):
        try:
            built = build_prebuilt()
        except Exception as exc:  # no C compiler, pycc gone from numba: the JIT still works
            print(f"no prebuilt loops ({type(exc).__name__}: {exc}); jobs use numba's cache")
        else:
            where = built or "nowhere writable (or no /proc/cpuinfo): jobs use numba's cache"
            print(f"prebuilt loops (imported without numba): {where}")
    if not compile_bytecode():
        print("some hpcapp bytecode could not be written (read-only install?)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
