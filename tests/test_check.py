"""``hpcapp check`` / hpcapp.testing: correct kernels pass, broken ones are caught with advice."""

import numpy as np
import pytest

import hpcapp
from hpcapp.testing import check_kernel, run_check


def mean_by_sum(chunk):
    """The classic mistake: a per-chunk mean, combined by the default "sum"."""
    return {"mean": np.mean(chunk, axis=0)}


def _average(left, right):
    return {"mean": (left["mean"] + right["mean"]) / 2}


@hpcapp.kernel(combine=_average)
def mean_of_means(chunk):
    """Averages the means of two chunks, right only when both have the same rows."""
    return {"mean": np.mean(chunk, axis=0)}


def _last(left, right):
    return {"first": right["first"]}


@hpcapp.kernel(combine=_last)
def first_value(chunk):
    """Combines by keeping the right side: not what the whole array gives, nor associative."""
    return {"first": np.asarray(chunk[0])}


def max_by_sum(chunk):
    """A maximum, combined by sum."""
    return {"peak": np.max(chunk, axis=0)}


def modifies_input(chunk):
    """Scales its chunk in place: hpcapp reuses the read buffer."""
    chunk *= 2
    return {"s": chunk.sum(axis=0)}


def global_random(chunk):
    """Uses numpy's global random state: another answer on every call."""
    return {"s": chunk.sum(axis=0) + np.random.random()}


def changing_keys(chunk):
    """Returns another key when a chunk holds a large value."""
    return {"big" if np.max(chunk) > 1.2 else "small": np.float64(chunk.sum())}


def changing_dtype(chunk):
    """Returns int64 for short chunks and float64 for long ones."""
    total = chunk.sum()
    return {"s": np.int64(total) if len(chunk) < 100 else np.float64(total)}


@hpcapp.kernel(per_row=("z",))
def zscore_per_row(chunk):
    """Per-row z-scores against the chunk's own mean: depends on how rows are cut."""
    return {"z": (chunk - chunk.mean()) / chunk.std(), "n": np.int64(len(chunk))}


@hpcapp.kernel(per_row=("y",))
def short_rows(chunk):
    """Returns one row too few."""
    return {"y": chunk[1:], "n": np.int64(len(chunk))}


def _noisy_finalize(partial, params):
    return {"s": partial["s"] + np.random.random()}


@hpcapp.kernel(finalize=_noisy_finalize)
def noisy_finalize(chunk):
    """A finalize that draws random numbers."""
    return {"s": chunk.sum(axis=0)}


def _drop_count(left, right):
    return {"s": left["s"] + right["s"]}


@hpcapp.kernel(combine=_drop_count)
def count_lost_in_combine(chunk):
    """Its combine forgets a key (the check once crashed on showing the missing value)."""
    return {"s": chunk.sum(axis=0), "n": np.int64(len(chunk))}


BROKEN = [
    (mean_by_sum, "key 'mean'", "a mean does not combine by sum; return the sum and the count"),
    (mean_of_means, "key 'mean'", "averaging the means of unequal chunks is wrong"),
    (first_value, "key 'first'", "depends on how the rows are cut"),
    (max_by_sum, "key 'peak'", "declare combine={'peak': 'max'}"),
    (modifies_input, "modifies its input chunk", "work on a copy"),
    (global_random, "differs between two calls on the same chunk", "global random state"),
    (changing_keys, "do not match", "different keys"),
    (changing_dtype, "do not match", "dtype"),
    (zscore_per_row, "per-row key 'z' depends on how the rows are cut", "that row only"),
    (short_rows, "per-row key 'y' must have", "rows"),
    (noisy_finalize, "finalize is not deterministic", "key 's'"),
    (count_lost_in_combine, "key 'n': 1000 on one chunk vs nothing on 2 chunks", "missing"),
]


@pytest.mark.parametrize("func,what,advice", BROKEN, ids=[b[0].__name__ for b in BROKEN])
def test_broken_kernels_are_caught_with_advice(func, what, advice):
    report = run_check(func, shape=(1000, 2))
    assert not report.ok
    text = report.text()
    assert what in text and advice in text, text
    with pytest.raises(AssertionError, match="FAIL"):
        check_kernel(func, shape=(1000, 2))


@pytest.mark.parametrize(
    "spec,params",
    [
        ("stats", {"range": [0, 1], "bins": 16}),
        ("stats", {}),
        ("montecarlo", {"samples": 50_000}),
        ("hpcapp.examples.exceedances:exceedances", {"threshold": 0.7}),
        ("hpcapp.examples.row_norms:row_norms", {"scale": 2.0}),
    ],
)
@pytest.mark.parametrize("dtype", ["float64", "float32", "int32"])
def test_shipped_kernels_pass(spec, params, dtype):
    report = check_kernel(spec, params=params, dtype=dtype, shape=(2000, 3))
    assert report.ok and report.checks


def test_a_mean_message_shows_both_numbers():
    report = run_check(mean_by_sum, np.arange(10.0), trials=1)
    (failure,) = report.failures
    assert failure.startswith("key 'mean': 4.5 on one chunk vs ")
    assert "on 2 chunks" in failure or "chunks (rows 0-" in failure


def test_hpcapp_check_command_exit_codes(tmp_path):
    from helpers import cli_here, write_dataset

    kernel = tmp_path / "k.py"
    kernel.write_text(
        "import numpy as np\n"
        "def mean(chunk):\n    return {'mean': chunk.mean(axis=0)}\n"
        "def total(chunk):\n    return {'s': chunk.sum(axis=0)}\n"
    )
    spec = write_dataset(tmp_path / "in.h5", np.random.default_rng(0).random((500, 2)))

    def check(*args):
        return cli_here(["check", *args])

    bad = check(f"{kernel}:mean", spec)
    assert bad.returncode == 1 and "a mean does not combine by sum" in bad.stdout
    good = check(f"{kernel}:total", "--dtype", "int32", "--shape", "300,4")
    assert good.returncode == 0 and "all rules hold" in good.stdout
    refused = check("stats", "--shape", "3,x")
    assert refused.returncode == 2 and "--shape" in refused.stderr


def _kelvin_counts(chunk):
    """Count cells above freezing; refuse values that are no temperatures in kelvin."""
    if np.nanmin(chunk) < 150.0:
        raise ValueError(f"{np.nanmin(chunk)} is no temperature in K: raw packed integers?")
    return {"valid": np.isfinite(chunk).sum(axis=0), "warm": (chunk > 273.15).sum(axis=0)}


def _packed_input(tmp_path):
    """A netCDF-4 variable packed in int16 with a fill value: kelvin as xarray decodes them."""
    from ncdata import write_netcdf

    rng = np.random.default_rng(5)
    kelvin = rng.uniform(240.0, 300.0, size=(40, 3, 4))
    stored = np.round((kelvin - 270.0) / 0.01).astype(np.int16)
    stored[rng.random(stored.shape) < 0.1] = -32767
    attrs = {"scale_factor": np.float32(0.01), "add_offset": np.float32(270.0), "units": "K"}
    return write_netcdf(tmp_path / "packed.nc", stored, attrs=attrs, fill_value=np.int16(-32767))


def test_check_passes_the_kernel_the_decoded_values_run_does(tmp_path):
    """``check`` once read the stored int16 values; now the values xarray and ``run`` decode."""
    import xarray as xr
    from helpers import run_here

    from hpcapp.testing import read_rows

    spec = _packed_input(tmp_path)
    path = spec.rpartition(":")[0]
    with xr.open_dataset(path) as ds:
        expected = ds["tas"].values
    assert expected.dtype == np.float32 and np.isnan(expected).any()
    checked = read_rows(spec)
    assert checked.dtype == expected.dtype
    assert checked.tobytes() == expected.tobytes()  # NaN where filled, same bits elsewhere
    raw = read_rows(spec, raw=True)
    assert raw.dtype == np.int16 and raw.tobytes() != checked.tobytes()

    seen = []

    def record(chunk):
        seen.append(np.array(chunk, copy=True))
        return {"rows": np.asarray(len(chunk))}

    run_here(record, spec, chunk_rows=7)
    assert np.concatenate(seen).tobytes() == expected.tobytes()
    seen.clear()
    run_check(record, spec, trials=1)
    assert max(seen, key=len).tobytes() == expected.tobytes()  # the whole input, as run saw it


def test_check_verdict_on_a_packed_input_is_the_runs(tmp_path):
    """A kernel that refuses integers that are no kelvin passes, as ``run`` runs it."""
    from helpers import cli_here, run_here

    spec = _packed_input(tmp_path)
    assert run_here(_kelvin_counts, spec)["valid"].sum() > 0
    report = run_check(_kelvin_counts, spec, trials=3)
    assert report.ok, report.text()
    kernel = tmp_path / "k.py"
    kernel.write_text(
        "import numpy as np\n"
        "def kelvin(chunk):\n"
        "    assert np.nanmin(chunk) >= 150.0, 'raw packed integers?'\n"
        "    return {'warm': (chunk > 273.15).sum(axis=0)}\n"
    )
    done = cli_here(["check", f"{kernel}:kelvin", spec])
    assert done.returncode == 0 and "all rules hold" in done.stdout, done.stdout + done.stderr
