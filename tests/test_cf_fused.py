"""CF packing decoded inside stats' compiled pass: the same bits as decoding first, then reducing.

The reference is hpcapp's own numpy decoder (:class:`Decoder`, itself checked against xarray in
test_cf_policy.py) followed by the same ``stats`` on the decoded array; any differing bit fails.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import as_bytes, run_here, write_dataset
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hpcapp.errors import UsageError
from hpcapp.io.coding.variables import CFDecoding, Decoder, decoding_of
from hpcapp.kernels import _loops, nd
from hpcapp.kernels import stats as stats_module
from hpcapp.kernels._fused_call import histogram_plan
from hpcapp.kernels.hookspec import InputInfo
from hpcapp.kernels.packed import Packed

STORED = ["i1", "u1", "i2", "u2", "i4"]
# Rows x columns: several groups of four segments of lanes, a short segment, one or more lanes
# per column; 1-D chunks are one column.
SHAPES = [(1100, 3), (700, 1), (2600,), (90, 40)]


@st.composite
def packed_cases(draw):
    """Stored integers with a fill, missing_value, valid range and float32/64 packing."""
    kind = np.dtype(draw(st.sampled_from(STORED)))
    info = np.iinfo(kind)
    pool = sorted({0, 1, -1 % (info.max + 1) if kind.kind == "u" else -1, 100, info.min,
                   info.max, info.max - 1, info.min + 1})  # fmt: skip
    attrs: dict = {}
    if draw(st.booleans()):
        attrs["_FillValue"] = kind.type(draw(st.sampled_from(pool)))
    if draw(st.booleans()):
        attr_type = np.dtype(draw(st.sampled_from(["i2", "i4", "f4", "f8"])))
        value = draw(st.sampled_from([*pool, -999, 1e20, -999.5]))
        with np.errstate(over="ignore", invalid="ignore"):
            cast = np.array(value).astype(attr_type)
        if attr_type.kind == "f" or cast == value:
            attrs["missing_value"] = cast
    packing = draw(st.sampled_from(["both", "both", "scale", "offset", "none"]))
    types = [np.dtype(draw(st.sampled_from(["f4", "f8"]))) for _ in range(2)]
    if draw(st.integers(0, 3)):  # CF's usual case, both of one type (float32: float32 values)
        types[1] = types[0]
    if packing in ("scale", "both"):
        attrs["scale_factor"] = types[0].type(draw(st.sampled_from([0.01, 0.5, -2.0, 1 / 3])))
    if packing in ("offset", "both"):
        attrs["add_offset"] = types[1].type(draw(st.sampled_from([0.0, 273.15, -1e3])))
    mask_valid_range = draw(st.booleans())
    if mask_valid_range:
        low, high = sorted(draw(st.lists(st.sampled_from(pool), min_size=2, max_size=2)))
        which = draw(st.sampled_from(["valid_range", "valid_min", "valid_max", "both"]))
        if which == "valid_range":
            attrs["valid_range"] = np.array([low, high], kind)
        if which in ("valid_min", "both"):
            attrs["valid_min"] = kind.type(low)
        if which in ("valid_max", "both"):
            attrs["valid_max"] = kind.type(high)
    if not attrs:  # something to decode: the values become floats
        attrs["_FillValue"] = kind.type(draw(st.sampled_from(pool)))
    if kind.itemsize < 4 and draw(st.booleans()):
        attrs["_Unsigned"] = "true" if kind.kind == "i" else "false"
    shape = draw(st.sampled_from(SHAPES))
    seed = draw(st.integers(0, 2**16))
    histogram = draw(st.booleans())
    return kind, attrs, mask_valid_range, shape, seed, histogram


def stored_values(kind: np.dtype, attrs: dict, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Random stored values, a tenth of them each attribute's value (so masks have work)."""
    rng = np.random.default_rng(seed)
    info = np.iinfo(kind)
    data = rng.integers(info.min, info.max, shape, dtype=kind, endpoint=True)
    special = [v for key in ("_FillValue", "missing_value", "valid_range", "valid_min", "valid_max")
               for v in np.ravel(attrs.get(key, []))]  # fmt: skip
    for value in special:
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(value) and info.min <= value <= info.max:
                data[rng.random(shape) < 0.1] = kind.type(value)
    return data


def decoded(decoding: CFDecoding, stored: np.ndarray) -> np.ndarray:
    """Return the values as the reader decodes them (a copy)."""
    return Decoder(decoding, len(stored), stored.shape[1:])(stored).copy()


@pytest.fixture
def every_chunk_compiled(monkeypatch):
    """Send every chunk, however small, through the compiled pass; count the packed loops."""
    monkeypatch.setattr(stats_module, "FUSED_MIN_VALUES", 0)
    calls = []
    real = _loops.packed_loop

    def counted(stored, values):
        calls.append((stored, values))
        return real(stored, values)

    monkeypatch.setattr(_loops, "packed_loop", counted)
    return calls


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=packed_cases())
def test_stats_of_packed_chunks_are_decode_then_reduce_bit_for_bit(every_chunk_compiled, case):
    kind, attrs, mask_valid_range, shape, seed, histogram = case
    try:
        decoding = decoding_of(attrs, kind, mask_valid_range=mask_valid_range)
    except UsageError:
        assume(False)  # a valid range that _Unsigned makes empty: refused before any work
    unpack = decoding.linear_unpack
    if unpack is None:  # int32 into float32 (a float32 scale alone): fills mask many integers
        assert (kind.itemsize, decoding.dtype) == (4, "<f4"), (attrs, decoding)
        return
    stored = stored_values(kind, attrs, shape, seed)
    want_values = decoded(decoding, stored)
    meant = stored.view(np.dtype(decoding.stored_dtype))
    assert unpack.decode(meant).tobytes() == want_values.tobytes()  # numpy's fallback too
    params: dict = {}
    if histogram:
        finite = want_values[np.isfinite(want_values)]
        if finite.size and finite.min() < finite.max():
            params = {"bins": 16, "range": [float(finite.min()), float(finite.max())]}
    # A histogram range too narrow for the compiled bins (beside its values' magnitude) is
    # binned by numpy.histogram: the chunk is decoded first, and the packed loop does not run.
    planned = not params or histogram_plan(decoding.dtype, 16, *params["range"]) is not None
    with np.errstate(invalid="ignore", over="ignore"):
        before = len(every_chunk_compiled)
        got = nd.stats(Packed(meant, unpack), **params)
        assert len(every_chunk_compiled) == before + planned  # the packed loop ran
        want = nd.stats(want_values, **params)
    assert got.keys() == want.keys()
    for key in want:
        assert np.asarray(got[key]).tobytes() == np.asarray(want[key]).tobytes(), (key, attrs)


def test_a_coder_with_many_masked_values_keeps_numpy_decoding():
    attrs = {"missing_value": np.array([1, 2, 3, 4, 5], np.int16), "scale_factor": 0.5}
    assert decoding_of(attrs, np.dtype("i2")).linear_unpack is None
    assert decoding_of({"scale_factor": 0.5}, np.dtype("i8")).linear_unpack is None
    assert decoding_of({"_FillValue": np.int16(-1)}, np.dtype("i2"), raw=True).linear_unpack is None


@pytest.mark.parametrize("over", [None, "0,2", "1,2", "groups"])
def test_a_packed_job_takes_the_fused_path_with_the_same_bits(
    tmp_path, monkeypatch, every_chunk_compiled, over
):
    """End to end: a packed int16 netCDF-like file, stats with a histogram, fused and not."""
    rng = np.random.default_rng(3)
    stored = rng.integers(-3000, 3000, (500, 4, 3), dtype=np.int16)
    stored[rng.random(stored.shape) < 0.05] = -32767
    spec = write_dataset(tmp_path / "in.h5", stored, "t")
    import h5py

    with h5py.File(tmp_path / "in.h5", "a") as h5:
        attrs = h5["t"].attrs
        attrs["_FillValue"] = np.int16(-32767)
        attrs["scale_factor"] = np.float32(0.01)
        attrs["add_offset"] = np.float32(273.15)
    options = {"chunk_rows": 120, "params": {"bins": 8, "range": [240.0, 310.0]}}
    if over == "groups":  # the grouped kernel takes its chunks stored, each group's rows too
        options["group_every"] = 100
    elif over:
        options["over"] = over
    got = run_here("stats", spec, **options)
    # Every chunk went in stored (per-record results, over 1,2, decode each chunk first).
    assert len(every_chunk_compiled) >= (0 if over == "1,2" else 5)
    monkeypatch.setattr(CFDecoding, "linear_unpack", property(lambda self: None))
    calls = len(every_chunk_compiled)
    want = run_here("stats", spec, **options)
    assert len(every_chunk_compiled) == calls  # decoded first this time
    assert got is not None and want is not None
    assert as_bytes(got) == as_bytes(want)


def test_the_warm_up_loads_the_loop_that_decodes(every_chunk_compiled):
    """The kernel's prepare runs the packed loop, so loading it counts as start-up."""
    unpack = decoding_of({"scale_factor": np.float32(0.5)}, np.dtype("i2")).linear_unpack
    data = InputInfo(np.dtype("f4"), (3,), chunk_rows=10, unpack=unpack)
    nd.prepare_stats({"bins": 64, "range": None, "over": (0,)}, data)
    assert every_chunk_compiled == [(np.dtype("i2"), np.dtype("f4"))]
