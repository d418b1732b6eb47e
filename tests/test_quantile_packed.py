"""quantile of CF-packed integers selected as stored: numpy.nanquantile's bits on the decoded."""

import dataclasses
import warnings

import numpy as np
import pytest
from helpers import root_attrs, run_here, spy_on_exchange
from hypothesis import given
from hypothesis import strategies as st
from ncdata import write_netcdf

from hpcapp.kernels import quantile as quantile_module
from hpcapp.kernels.packed import LinearUnpack, Packed
from hpcapp.kernels.quantile import METHODS, cell_quantiles, monotone, quantile

LEVELS = [0.0, 0.1, 0.25, 0.5, 0.9, 0.999, 1.0]


def nanquantile(values, q, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-missing cells
        return np.nanquantile(values, q, **options)


def same_bits(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    assert got.tobytes() == want.tobytes()


def stored_field(code, shape, seed, missing=0.2):
    """Return random stored integers of ``code`` with a fill value, one cell all missing."""
    info = np.iinfo(code)
    rng = np.random.default_rng(seed)
    low, high = max(info.min, -3000), min(info.max, 3000)
    raw = rng.integers(low, high + 1, size=shape).astype(code)
    fill = info.max if info.min == 0 else info.min + 1
    raw[rng.random(shape) < missing] = fill
    raw[:, 1] = fill
    raw[:1, 2] = low  # a cell with a single valid value
    raw[1:, 2] = fill
    return raw, fill


@pytest.mark.parametrize("code", ["i1", "u1", "i2", "u2"])
@pytest.mark.parametrize("values", ["f4", "f8"])
@pytest.mark.parametrize(("scale", "offset"), [(0.01, 273.15), (-0.25, 12.0), (3.0, -0.0)])
def test_every_method_on_stored_integers(code, values, scale, offset):
    raw, fill = stored_field(code, (53, 9), seed=len(code) + abs(int(scale * 100)))
    info = np.iinfo(code)
    unpack = LinearUnpack(code, values, (fill,), int(info.min), int(info.max), scale, offset)
    decoded = unpack.decode(raw).astype(np.float64)
    for method in METHODS:
        for q in (LEVELS, 0.37):
            got = cell_quantiles(Packed(raw, unpack), q, method)
            same_bits(got, nanquantile(decoded, q, axis=0, method=method))


def test_the_kept_range_masks_like_the_decoder():
    raw, fill = stored_field("i2", (40, 6), seed=4)
    unpack = LinearUnpack("i2", "f8", (fill, 7), -2000, 2500, 0.5, 1.0)  # valid_min/max and two
    decoded = unpack.decode(raw).astype(np.float64)
    assert np.isnan(decoded).sum() > (raw == fill).sum()  # the range did mask some
    same_bits(cell_quantiles(Packed(raw, unpack), LEVELS), nanquantile(decoded, LEVELS, axis=0))


@pytest.mark.parametrize(("scale", "offset"), [(0.0, 5.0), (np.inf, 1.0), (2.0, np.nan)])
def test_a_decoding_that_is_not_monotone_is_decoded_first(monkeypatch, scale, offset):
    raw, fill = stored_field("i2", (30, 5), seed=5)
    raw[raw == 0] = 1  # no 0 * inf: its NaN's sign is the hardware's
    unpack = LinearUnpack("i2", "f8", (fill,), -32768, 32767, scale, offset)
    assert monotone(unpack) is None
    monkeypatch.setattr(quantile_module, "_packed_cells", None)  # not selected as stored
    decoded = unpack.decode(raw).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # inf - inf in numpy's lerp
        got = cell_quantiles(Packed(raw, unpack), LEVELS)
    same_bits(got, nanquantile(decoded, LEVELS, axis=0))


@st.composite
def packed_series(draw):
    code = draw(st.sampled_from(["i1", "u1", "i2", "u2"]))
    info = np.iinfo(code)
    n_rec = draw(st.integers(1, 40))
    n_cells = draw(st.integers(1, 5))
    span = draw(st.sampled_from([3, 40, int(info.max) - int(info.min)]))  # ties, or none
    low = draw(st.integers(int(info.min), int(info.max) - span))
    raw = np.asarray(
        draw(st.lists(st.integers(low, low + span), min_size=n_rec * n_cells,
                      max_size=n_rec * n_cells)),
        dtype=code,
    ).reshape(n_rec, n_cells)  # fmt: skip
    fills = tuple(draw(st.lists(st.integers(low, low + span), max_size=4, unique=True)))
    keep_lo = draw(st.integers(int(info.min), low + span // 2))
    keep_hi = draw(st.integers(keep_lo, int(info.max)))
    scale = draw(
        st.sampled_from([0.01, -0.01, 1.0, -1.0, 1e-3, 0.1, 1e30, -7.5, 1e-40])
        | st.floats(-1e6, 1e6, allow_nan=False).filter(bool)
    )
    offset = draw(st.sampled_from([-0.0, 0.0, 273.15, -1e5]) | st.floats(-1e6, 1e6))
    values = draw(st.sampled_from(["f4", "f8"]))
    unpack = LinearUnpack(code, values, fills, keep_lo, keep_hi, scale, offset)
    q = draw(st.lists(st.floats(0, 1), min_size=1, max_size=5) | st.floats(0, 1))
    return raw, unpack, q, draw(st.sampled_from(METHODS))


@given(packed_series())
def test_stored_integers_give_numpys_bits(case):
    raw, unpack, q, method = case
    with np.errstate(over="ignore", invalid="ignore"):
        decoded = unpack.decode(raw).astype(np.float64)
        want = nanquantile(decoded, q, axis=0, method=method)
        got = cell_quantiles(Packed(raw, unpack), q, method)
    same_bits(got, want)


def test_the_transpose_moves_the_stored_integers(tmp_path, monkeypatch):
    rng = np.random.default_rng(9)
    stored = rng.integers(-3000, 3000, size=(45, 4, 6)).astype(np.int16)
    stored[rng.random(stored.shape) < 0.2] = -32767
    attrs = {"scale_factor": np.float32(-0.02), "add_offset": np.float32(250.0), "units": "K"}
    spec = write_netcdf(tmp_path / "in.nc", stored, attrs=attrs, fill_value=np.int16(-32767))
    moved = []
    spy_on_exchange(monkeypatch, lambda send: moved.append(send.dtype))
    params = {"q": [0.05, 0.5, 0.95], "method": "hazen"}
    # 18 KiB beyond the base: two slabs of lat of float64 series, every slab of int16 ones.
    options = {"params": params, "chunk_rows": 7, "memory_per_rank": "200.0176MiB"}
    packed = run_here("quantile", spec, output=str(tmp_path / "packed.nc"), **options)
    assert moved == [np.dtype(np.int16)]
    assert root_attrs(tmp_path / "packed.nc")["series_batches"] == 1
    decoded_first = dataclasses.replace(quantile, packed=False)  # the float64 exchange
    plain = run_here(decoded_first, spec, output=str(tmp_path / "plain.nc"), **options)
    assert moved[1:] == [np.dtype(np.float64)] * 2
    assert root_attrs(tmp_path / "plain.nc")["series_batches"] == 2
    same_bits(packed["quantile"], plain["quantile"])
    unpack = LinearUnpack("i2", "f4", (-32767,), -32768, 32767, -0.02, 250.0)
    want = nanquantile(unpack.decode(stored).astype(np.float64), params["q"], axis=0,
                       method="hazen")  # fmt: skip
    same_bits(packed["quantile"], want)


def test_a_packed_tile_goes_through_the_kernel(monkeypatch):
    seen = []
    real = quantile_module.cell_quantiles
    monkeypatch.setattr(
        quantile_module, "cell_quantiles", lambda s, *a: seen.append(type(s)) or real(s, *a)
    )
    raw, fill = stored_field("i2", (12, 4), seed=1)
    unpack = LinearUnpack("i2", "f8", (fill,), -32768, 32767, 0.1, 0.0)
    found = quantile.func(Packed(raw.reshape(12, 2, 2), unpack), q=[0.5])["quantile"]
    assert seen == [Packed] and found.shape == (1, 2, 2)
    decoded = unpack.decode(raw).astype(np.float64).reshape(12, 2, 2)
    same_bits(found, nanquantile(decoded, [0.5], axis=0))
    whole = quantile.func(Packed(raw.reshape(12, 2, 2), unpack), q=[0.3, 0.5], over=(0, 1, 2))
    same_bits(whole["quantile"], nanquantile(decoded, [0.3, 0.5]))


@pytest.mark.parametrize("same_packing", [True, False])
def test_many_files_packed_alike_or_each_its_own_way(tmp_path, monkeypatch, same_packing):
    rng = np.random.default_rng(12)
    parts, decoded = [], []
    for k in range(3):
        stored = rng.integers(-500, 500, size=(9 + k, 3, 4)).astype(np.int16)
        stored[rng.random(stored.shape) < 0.2] = -32767
        scale = 0.01 if same_packing else 0.01 * (k + 1)
        attrs = {"scale_factor": scale, "add_offset": 280.0}
        write_netcdf(tmp_path / f"part{k}.nc", stored, attrs=attrs, fill_value=np.int16(-32767))
        parts.append(stored)
        unpack = LinearUnpack("i2", "f8", (-32767,), -32768, 32767, scale, 280.0)
        decoded.append(unpack.decode(stored).astype(np.float64))
    moved = []
    spy_on_exchange(monkeypatch, lambda send: moved.append(send.dtype))
    params = {"q": LEVELS, "method": "weibull"}
    # 8 KiB beyond the base: every slab of lat of int16 series, two of float64 ones.
    got = run_here("quantile", f"{tmp_path}/part*.nc:/tas", params=params, chunk_rows=4,
                   memory_per_rank="200.008MiB")  # fmt: skip
    if same_packing:  # one linear unpack: the stored integers travel, in one batch
        assert moved == [np.dtype(np.int16)]
    else:  # each file decoded its own way by the reader: float64 series, in two batches
        assert moved == [np.dtype(np.float64)] * 2
    want = nanquantile(np.concatenate(decoded), LEVELS, axis=0, method="weibull")
    same_bits(got["quantile"], want)
