"""The prebuilt stats loops (imported without numba) give numba's JIT loops' bits, and load only
where they were built for this source, numba, numpy and CPU."""

import shutil
import sys

import numpy as np
import pytest

from hpcapp.kernels import _fused_call, _loops
from hpcapp.kernels.packed import STORED_CODES, LinearUnpack, Packed
from hpcapp.kernels.weighted_rows import rows_partial

# run_tests builds the module beside the serial tests, then runs these (marker `prebuilt`).
pytestmark = pytest.mark.prebuilt
ROWS = 1037  # not a multiple of the lanes' groups: the short tail runs too
F8 = np.dtype(np.float64)


@pytest.fixture
def prebuilt(compiled_loops):
    """Return the prebuilt module (built by the compiled_loops fixture)."""
    module = _loops.prebuilt()
    assert module is not None, "no prebuilt loops: is there a C compiler for numba.pycc?"
    return module


def awkward(dtype: str, cols: int) -> np.ndarray:
    """Return values with NaN, infinities and signed zeros (floats) or the dtype's extremes."""
    rng = np.random.default_rng(cols)
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, (ROWS, cols), dtype=dtype, endpoint=True)
    data = (rng.standard_normal((ROWS, cols)) * 3).astype(dtype)
    pick = rng.random(data.shape)
    data[pick < 0.05] = np.nan
    data[pick > 0.98] = np.inf
    data[(pick > 0.5) & (pick < 0.52)] = -0.0
    return data


def every_result(chunk: np.ndarray) -> dict[str, bytes]:
    """Run every compiled loop on ``chunk``; return the bytes of every output."""
    acc = np.dtype(np.float64 if chunk.dtype.kind == "f" else np.int64)
    plan = _fused_call.histogram_plan(chunk.dtype.str, 16, -2.0, 2.5)
    assert plan is not None
    runs = {
        "lanes": _fused_call.chunk_partial(chunk, acc, 1, None),
        "histogram": _fused_call.chunk_partial(chunk, acc, 16, plan),
        "three-pass": _fused_call.three_pass_partial(chunk),
    }
    out = {
        f"{run} {key}": value.tobytes() for run, got in runs.items() for key, value in got.items()
    }
    if chunk.dtype.kind in "iu":
        s1, s2 = _fused_call.chunk_moments(chunk)
        out["s1"], out["s2"] = s1.tobytes(), s2.tobytes()
    code = chunk.dtype.str[1:]
    if code in STORED_CODES:  # CF-packed: decoded value by value, a fill and a kept range
        info = np.iinfo(chunk.dtype)
        for values in ("f4", "f8") if chunk.dtype.itemsize < 4 else ("f8",):
            fill = int(chunk[0, 0])
            unpack = LinearUnpack(code, values, (fill,), info.min + 3, info.max - 5, 0.5, -1.0)
            plan = _fused_call.histogram_plan(np.dtype(values).str, 16, -2.0, 2.5)
            for bins, hist_plan in ((1, None), (16, plan)):
                got = _fused_call.chunk_partial(chunk, F8, bins, hist_plan, unpack)
                out.update({f"packed {values} {bins} {k}": v.tobytes() for k, v in got.items()})
            weights = np.linspace(0.0, 2.0, chunk.shape[1])[None]  # weighted, one per row
            got = rows_partial(Packed(chunk, unpack), weights, 1)
            out.update({f"weighted {values} {k}": v.tobytes() for k, v in got.items()})
    if code in ("f4", "f8"):
        got = rows_partial(chunk, np.linspace(0.0, 2.0, chunk.shape[1])[None], 1)
        out.update({f"weighted {k}": v.tobytes() for k, v in got.items()})
    return out


@pytest.mark.parametrize("cols", [1, 7, 300])
@pytest.mark.parametrize("code", _loops.CODES)
def test_prebuilt_loops_give_the_jit_loops_bits(prebuilt, monkeypatch, code, cols):
    chunk = awkward(code, cols)
    assert type(_loops.loop("lanes", chunk.dtype)).__name__ == "builtin_function_or_method"
    got = every_result(chunk)
    with monkeypatch.context() as patch:
        patch.setattr(_loops, "prebuilt", lambda: None)
        assert type(_loops.loop("lanes", chunk.dtype)).__name__ == "CPUDispatcher"
        want = every_result(chunk)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == want[key], key


@pytest.mark.parametrize("code", ["i1", "u1", "i2", "u2"])
def test_prebuilt_quantile_selection_gives_the_jit_bits(prebuilt, monkeypatch, code):
    from hpcapp.kernels.quantile import cell_quantiles

    stored = awkward(code, 9)
    info = np.iinfo(stored.dtype)
    for values, scale in (("f4", 0.25), ("f8", -0.01)):
        unpack = LinearUnpack(code, values, (int(stored[0, 0]),), info.min + 3, info.max - 5,
                              scale, 7.0)  # fmt: skip
        packed = Packed(stored, unpack)
        assert "builtin" in type(_loops.select_loop(stored.dtype, np.dtype(values))).__name__
        got = cell_quantiles(packed, [0.0, 0.1, 0.5, 0.9, 1.0], "hazen")
        with monkeypatch.context() as patch:
            patch.setattr(_loops, "prebuilt", lambda: None)
            assert type(_loops.select_loop(stored.dtype, np.dtype(values))).__name__ == (
                "CPUDispatcher"
            )
            want = cell_quantiles(packed, [0.0, 0.1, 0.5, 0.9, 1.0], "hazen")
        assert got.tobytes() == want.tobytes()


def test_prebuilt_edges_are_the_jit_edges(prebuilt):
    from hpcapp.kernels._fused_lanes import formula_edges

    for edges32 in (False, True):
        got = prebuilt.formula_edges(0.1, -3.0, 64, edges32)
        assert got.tobytes() == formula_edges(0.1, -3.0, 64, edges32).tobytes()


def test_a_module_built_for_another_cpu_or_source_is_not_loaded(prebuilt, monkeypatch, tmp_path):
    built = _loops.module_name()
    try:
        monkeypatch.setattr(_loops, "_cpu_identity", lambda: b"model name: another CPU")
        _loops.module_name.cache_clear()
        _loops.prebuilt.cache_clear()
        assert _loops.module_name() not in (None, built)
        assert _loops.prebuilt() is None
        monkeypatch.undo()
        for name in _loops.SOURCES:
            shutil.copy(_loops.HERE / name, tmp_path / name)
        with open(tmp_path / "_fused_lanes.py", "a") as edited:
            edited.write("# an edit\n")
        monkeypatch.setattr(_loops, "HERE", tmp_path)
        _loops.module_name.cache_clear()
        assert _loops.module_name() not in (None, built)
    finally:
        monkeypatch.undo()
        _loops.module_name.cache_clear()
        _loops.prebuilt.cache_clear()
    assert _loops.module_name() == built
    assert _loops.prebuilt() is sys.modules[built]


@pytest.mark.parametrize("code", ["f4", "f8", *STORED_CODES])
def test_prebuilt_rolling_sums_give_the_jit_bits(prebuilt, monkeypatch, code):
    """rolling's mean and sum, of floats with NaN and infinities or decoding packed integers."""
    from hpcapp.kernels.hookspec import Halo
    from hpcapp.kernels.packed import Packed
    from hpcapp.kernels.rolling import rolling

    chunk = awkward(code, 7)
    chunks: list = [chunk]
    if code in STORED_CODES:
        info = np.iinfo(chunk.dtype)
        fill = int(chunk[0, 0])
        values = ("f4", "f8") if chunk.dtype.itemsize < 4 else ("f8",)
        chunks = [
            Packed(chunk, LinearUnpack(code, v, (fill,), info.min + 3, info.max - 5, 0.5, -1.0))
            for v in values
        ]
    halo = Halo(70, 15, 640)  # a chunk inside the input: its own records start at 710

    def every_run() -> list[bytes]:
        return [
            rolling.func(one, window=31, stat=stat, center=True, min_periods=3, halo=halo)[
                "rolling"
            ].tobytes()
            for one in chunks
            for stat in ("mean", "sum")
        ]

    assert type(_loops.rolling_loop(F8)).__name__ == "builtin_function_or_method"
    got = every_run()
    with monkeypatch.context() as patch:
        patch.setattr(_loops, "prebuilt", lambda: None)
        assert type(_loops.rolling_loop(F8)).__name__ == "CPUDispatcher"
        want = every_run()
    assert got == want
