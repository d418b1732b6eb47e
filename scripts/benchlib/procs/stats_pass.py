"""The compiled ``stats`` loop: one-pass lanes against the three-pass loop; packed decoding.

    python -m scripts.benchlib.procs.stats_pass --repeat 10

Times, in this process on one core, ns per value of ``_fused.chunk_partial`` with no histogram
(the one-pass :mod:`hpcapp.kernels._fused_lanes`) and of ``_fused.fused_stats`` run without a
histogram (the three-pass loop it replaced, still the reference of the tests), on chunks shaped
like the jobs they serve, and checks that both give the same bits; the same with a 64-bin
histogram (both loops bin it), and the hand numba fold of ``peers`` (sum, min, max, 64 bins:
less than hpcapp computes) on the same chunk. Then CF-packed int16 (float32
``scale_factor``/``add_offset``, a ``_FillValue``) of the same shapes: numpy's decoding then the
lanes, against the lanes decoding each value (``unpack``). Last, the per-chunk phases of the
2-D ``peers`` benchmark (:mod:`scripts.benchlib.procs.stats_phases`). Prints one line ``BENCH
{json}``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from hpcapp.kernels import _fused_call as _fused
from hpcapp.kernels.packed import LinearUnpack

from .partials import new_partial, update
from .stats_phases import phases

ACC = np.dtype(np.float64)  # the accumulator of float data
SHAPES = (
    ((64, 64_800), np.float32),  # --over time on a 180 x 360 grid: one column per cell
    ((65_536, 8), np.float64),
    ((4_000, 1_000), np.float64),
    ((100_000, 3), np.float64),
)


def ns_per_value(run, chunk: np.ndarray, repeat: int) -> float:
    """Return the best of ``repeat`` timings of ``run(chunk)``, in ns per value."""
    run(chunk)  # compile or load first
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run(chunk)
        best = min(best, time.perf_counter() - start)
    return best / chunk.size * 1e9


def main() -> None:
    """Time both loops on every shape and print the BENCH line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--phase-rows", type=int, default=131_072, help="rows of 8 float32")
    options = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for shape, dtype in SHAPES:
        chunk = (280 + 10 * rng.standard_normal(shape)).astype(dtype)
        lanes = _fused.chunk_partial(chunk, ACC, 1, None)
        reference = _fused.three_pass_partial(chunk)
        same = all(lanes[k].tobytes() == v.tobytes() for k, v in reference.items())
        old = ns_per_value(_fused.three_pass_partial, chunk, options.repeat)
        new = ns_per_value(lambda c: _fused.chunk_partial(c, ACC, 1, None), chunk, options.repeat)
        plan = _fused.histogram_plan(chunk.dtype.str, 64, 250.0, 310.0)
        hist = _fused.chunk_partial(chunk, ACC, 64, plan)
        reference = _fused.three_pass_partial(chunk, 64, plan)
        hist_same = all(hist[k].tobytes() == v.tobytes() for k, v in reference.items())
        hist_old = ns_per_value(
            lambda c, p=plan: _fused.three_pass_partial(c, 64, p), chunk, options.repeat
        )
        hist_new = ns_per_value(
            lambda c, p=plan: _fused.chunk_partial(c, ACC, 64, p), chunk, options.repeat
        )
        hand = new_partial("numba", shape[1], 64)
        hand_ns = ns_per_value(
            lambda c, h=hand: update(h, c, "numba", 64, (250.0, 310.0)), chunk, options.repeat
        )
        # Packed: stored int16 for 0.01 K steps around 273.15 K, some filled.
        unpack = LinearUnpack("<i2", "<f4", (-32767,), -32768, 32767, 0.01, 273.15)
        stored = np.round((chunk - 273.15) / 0.01).astype(np.int16)
        stored.reshape(-1)[::97] = -32767
        packed = _fused.chunk_partial(stored, ACC, 1, None, unpack)
        reference = _fused.chunk_partial(unpack.decode(stored), ACC, 1, None)
        packed_same = all(packed[k].tobytes() == v.tobytes() for k, v in reference.items())
        decode_first = ns_per_value(
            lambda c, u=unpack: _fused.chunk_partial(u.decode(c), ACC, 1, None),
            stored,
            options.repeat,
        )
        fused = ns_per_value(
            lambda c, u=unpack: _fused.chunk_partial(c, ACC, 1, None, u), stored, options.repeat
        )
        rows.append(
            {
                "rows": shape[0],
                "cols": shape[1],
                "dtype": np.dtype(dtype).name,
                "three_pass_ns": old,
                "lanes_ns": new,
                "same_bits": same,
                "hist_three_pass_ns": hist_old,
                "hist_lanes_ns": hist_new,
                "hist_same_bits": hist_same,
                "hand_fold_ns": hand_ns,
                "packed_decode_first_ns": decode_first,
                "packed_fused_ns": fused,
                "packed_same_bits": packed_same,
                "decoded_bytes_saved": stored.size * np.dtype(unpack.dtype).itemsize,
            }
        )
    split = phases(options.phase_rows, options.repeat)
    result = {"repeat": options.repeat, "rows": rows, "phases": split}
    print("BENCH " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
