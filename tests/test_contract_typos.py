"""Typos in a kernel's declaration or in stats' parameters are refused, never run as another job.

Issue 19, items 7 and 8: a combine mapping or per_row naming a key the kernel does not return,
``per_row="norm"`` read as four keys, a bare ``@hpcapp.kernel``, hooks that are not functions,
``-p bins`` without ``range`` (and ``-p seed`` that is not a non-negative integer).
"""

import numpy as np
import pytest
from helpers import cli_here, read_results, run_cli, write_dataset
from input_helpers import refused

import hpcapp
from hpcapp.errors import UsageError
from hpcapp.kernels.api import InputInfo, Kernel, as_partial, from_function, kernel
from hpcapp.kernels.declare import DeclarationError, key_problem
from hpcapp.kernels.grouped import Labelled, group_kernel
from hpcapp.kernels.registry import load_kernel
from hpcapp.testing import run_check

PEAKS = """
import numpy as np
import hpcapp


@hpcapp.kernel(combine={"peek": "max"})
def peaks(chunk):
    return {"n": np.int64(len(chunk)), "peak": chunk.max()}
"""

NORMS = """
import numpy as np
import hpcapp


@hpcapp.kernel(per_row="norm")
def norms(chunk):
    return {"norm": np.abs(chunk), "n": np.int64(len(chunk))}


@hpcapp.kernel(per_row=("nrm",))
def misspelt(chunk):
    return {"norm": np.abs(chunk), "n": np.int64(len(chunk))}
"""

BARE = """
import numpy as np
import hpcapp


@hpcapp.kernel
def total(chunk):
    return {"n": np.int64(len(chunk)), "s": chunk.sum(), "top": chunk.max()}
"""


def fold(kern, data, chunk_rows):
    """Run ``kern`` chunk by chunk, folding left to right, and finish (no MPI)."""
    partials = [
        as_partial(kern.apply(data[i : i + chunk_rows], {}), kern.name)
        for i in range(0, len(data), chunk_rows)
    ]
    merged = partials[0]
    for right in partials[1:]:
        merged = kern.merge(merged, right)
    return kern.finish(merged, {})


def error_line(done, code):
    """Return the error line of a run that must exit ``code`` (exit 2: the only line)."""
    assert done.returncode == code, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("hpcapp: error: "), done.stderr
    if code == 2:
        assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


@pytest.fixture
def values(tmp_path):
    return write_dataset(tmp_path / "in.h5", np.array([3.0, 1.0, 5.0, 2.0]))


# --- combine mappings ------------------------------------------------------------------------


def peaks_kernel(combine):
    @kernel(combine=combine)
    def peaks(chunk):
        return {"n": np.int64(len(chunk)), "peak": chunk.max()}

    return from_function(peaks, "peaks")


def test_a_combine_key_the_kernel_does_not_return_is_named_with_a_suggestion():
    kern = peaks_kernel({"peek": "max"})
    problem = key_problem(kern, {"n": 0, "peak": 0})
    assert problem == (
        "combine names 'peek' (did you mean 'peak'?), which the kernel does not return "
        "(it returns n, peak)"
    )
    assert key_problem(peaks_kernel({"peak": "max"}), {"n": 0, "peak": 0}) is None


def test_keys_left_out_of_a_combine_mapping_are_summed():
    got = fold(peaks_kernel({"peak": "max"}), np.array([3.0, 1.0, 5.0, 2.0]), 2)
    assert got["peak"] == 5.0 and got["n"] == 4  # n summed by default, peak by max


def test_hpcapp_check_reports_the_unknown_combine_key():
    report = run_check(peaks_kernel({"peek": "max"}), np.arange(10.0))
    assert not report.ok
    assert report.failures == [
        "combine names 'peek' (did you mean 'peak'?), which the kernel does not return "
        "(it returns n, peak)"
    ]


def test_a_grouped_kernel_checks_the_keys_of_the_kernel_it_groups():
    grouped = group_kernel(peaks_kernel({"peek": "max"}))
    item = Labelled(np.array([3.0, 1.0, 5.0]), np.array([0, 0, 1]))
    with pytest.raises(DeclarationError, match="combine names 'peek'"):
        grouped.apply(item, {})


def test_run_refuses_an_unknown_combine_key_at_the_first_chunk_on_every_rank(tmp_path, values):
    (tmp_path / "peaks.py").write_text(PEAKS)
    spec = f"{tmp_path / 'peaks.py'}:peaks"
    out = tmp_path / "out.h5"
    line = error_line(
        run_cli(["run", spec, values, "-q", "-o", str(out), "--chunk-rows", "2"], 2), 1
    )
    assert line == (
        f"hpcapp: error: kernel '{spec}' on rank 0, chunk 0 (rows 0-1): combine names 'peek' "
        "(did you mean 'peak'?), which the kernel does not return (it returns n, peak)"
    )
    assert not out.exists()
    grouped = ["run", spec, values, "-q", "-o", str(tmp_path / "g.h5"), "--group-every", "2"]
    assert "combine names 'peek' (did you mean 'peak'?)" in error_line(cli_here(grouped), 1)
    check = cli_here(["check", f"{tmp_path / 'peaks.py'}:peaks"])
    assert check.returncode == 1
    assert "FAIL  combine names 'peek' (did you mean 'peak'?)" in check.stdout


# --- per_row -------------------------------------------------------------------------------


def test_per_row_given_one_name_is_one_key():
    @kernel(per_row="norm")
    def norms(chunk):
        return {"norm": np.abs(chunk), "n": np.int64(len(chunk))}

    assert norms.per_row == ("norm",)
    assert from_function(norms, "norms").per_row == ("norm",)


@pytest.mark.parametrize(
    "per_row,error,message",
    [
        (5, TypeError, "per_row must be a key name or a sequence of key names, got int"),
        ({"norm": 1}, TypeError, "per_row must be a key name or a sequence of key names"),
        (("norm", 1), TypeError, "per_row key names must be identifiers (strings), got 1"),
        (("a-b",), TypeError, "per_row key names must be identifiers (strings), got 'a-b'"),
        (("y", "y"), ValueError, "per_row names a key twice"),
    ],
)
def test_per_row_that_is_not_key_names_is_refused_when_decorating(per_row, error, message):
    with pytest.raises(error) as caught:

        @kernel(per_row=per_row)
        def rows(chunk):
            return {"y": chunk}

    assert str(caught.value).startswith(f"@hpcapp.kernel on 'rows': {message}")


def test_per_row_keys_the_kernel_does_not_return_are_named():
    @kernel(per_row=("nrm",))
    def misspelt(chunk):
        return {"norm": np.abs(chunk), "n": np.int64(len(chunk))}

    kern = from_function(misspelt, "misspelt")
    assert key_problem(kern, {"norm": 0, "n": 0}) == (
        "per_row names 'nrm' (did you mean 'norm'?), which the kernel does not return "
        "(it returns n, norm)"
    )
    assert "per_row names 'nrm'" in run_check(kern, np.arange(10.0)).failures[0]


def test_per_row_and_a_combine_mapping_must_not_name_the_same_key():
    with pytest.raises(ValueError, match="combine names per-row key"):

        @kernel(per_row="norm", combine={"norm": "max"})
        def norms(chunk):
            return {"norm": np.abs(chunk), "n": np.int64(len(chunk))}


def test_run_writes_a_per_row_key_given_as_one_string_and_refuses_a_misspelt_one(tmp_path, values):
    (tmp_path / "norms.py").write_text(NORMS)
    out = tmp_path / "out.h5"
    base = ["--chunk-rows", "2", "-q"]
    done = cli_here(["run", f"{tmp_path / 'norms.py'}:norms", values, "-o", str(out), *base])
    assert done.returncode == 0, done.stderr
    got = read_results(out)
    np.testing.assert_array_equal(got["norm"], [3.0, 1.0, 5.0, 2.0])
    assert got["n"] == 4 and not {"o", "r", "m"} & set(got)
    bad = ["run", f"{tmp_path / 'norms.py'}:misspelt", values, "-o", str(tmp_path / "b.h5")]
    line = error_line(cli_here([*bad, *base]), 1)
    assert line.endswith(
        "per_row names 'nrm' (did you mean 'norm'?), which the kernel does not return "
        "(it returns n, norm)"
    )
    (tmp_path / "five.py").write_text(NORMS.replace('per_row="norm"', "per_row=5"))
    five = ["run", f"{tmp_path / 'five.py'}:norms", values, "-o", str(tmp_path / "f.h5")]
    line = error_line(cli_here(five), 2)
    assert "@hpcapp.kernel on 'norms': per_row must be a key name or a sequence" in line


# --- bare @hpcapp.kernel, positional combine, hooks ---------------------------------------


def test_a_bare_decorator_declares_the_defaults():
    def total(chunk):
        return {"n": np.int64(len(chunk)), "s": chunk.sum()}

    made = kernel(total)
    assert isinstance(made, Kernel) and made.func is total
    assert made.combine == "sum" and made.per_row == () and made.name == "total"
    got = fold(made, np.arange(10.0), 3)
    assert got["n"] == 10 and got["s"] == 45.0


def test_a_combine_given_first_as_a_string_or_mapping_still_works():
    @kernel("max")
    def top(chunk):
        return {"top": chunk.max()}

    @kernel({"peak": "max"})
    def peaks(chunk):
        return {"n": np.int64(len(chunk)), "peak": chunk.max()}

    assert fold(from_function(top, "top"), np.array([3.0, 1.0, 5.0, 2.0]), 1)["top"] == 5.0
    got = fold(from_function(peaks, "peaks"), np.array([3.0, 1.0, 5.0, 2.0]), 2)
    assert got["peak"] == 5.0 and got["n"] == 4
    with pytest.raises(TypeError, match="combine twice"):
        kernel("max", combine="min")


def test_a_function_given_first_is_the_kernel_and_takes_the_options():
    def finish(partial, params):
        return {"mean": partial["s"] / partial["n"]}

    def mean(chunk):
        return {"n": np.int64(len(chunk)), "s": chunk.sum()}

    made = kernel(mean, finalize=finish)
    assert made.func is mean and made.finalize is finish
    assert fold(made, np.arange(10.0), 4)["mean"] == 4.5


@pytest.mark.parametrize(
    "options,error,message",
    [
        ({"finalize": "finish"}, TypeError, "finalize must be a function finalize(partial, "),
        ({"validate": 3}, TypeError, "validate must be a function validate(params, data), got"),
        ({"prepare": "warm"}, TypeError, "prepare must be a function prepare(params, data), got"),
        ({"combine": 42}, TypeError, "combine must be one of 'sum', 'min', 'max'"),
        ({"combine": "avg"}, ValueError, "combine 'avg' is not one of 'sum', 'min', 'max'"),
        ({"combine": {"s": "mean"}}, ValueError, "combine {'s': 'mean'}: the op must be one of"),
        ({"combine": {1: "sum"}}, TypeError, "combine maps result keys (strings) to ops"),
        ({"generates": "yes"}, TypeError, "generates must be True or False"),
        ({"rows_param": "n"}, ValueError, "rows_param names a parameter of a kernel that gen"),
    ],
)
def test_declarations_of_the_wrong_kind_are_refused_when_decorating(options, error, message):
    with pytest.raises(error) as caught:

        @kernel(**options)
        def total(chunk):
            return {"s": chunk.sum()}

    assert str(caught.value).startswith(f"@hpcapp.kernel on 'total': {message}")


def test_rows_param_must_name_a_parameter():
    with pytest.raises(ValueError, match=r"rows_param 'sample' .* did you mean 'samples'"):

        @kernel(generates=True, rows_param="sample")
        def draws(rng, n_rows, samples=10):
            return {"n": np.int64(n_rows)}


def test_run_takes_a_bare_kernel_and_refuses_a_hook_that_is_not_a_function(tmp_path, values):
    (tmp_path / "bare.py").write_text(BARE)
    out = tmp_path / "out.h5"
    args = ["run", f"{tmp_path / 'bare.py'}:total", values, "-o", str(out), "--chunk-rows", "1"]
    done = cli_here([*args, "-q"])
    assert done.returncode == 0, done.stderr
    got = read_results(out)
    assert (got["n"], got["s"], got["top"]) == (4, 11.0, 11.0)  # the default: every key summed
    (tmp_path / "hook.py").write_text(BARE.replace("@hpcapp.kernel", "@hpcapp.kernel(finalize=1)"))
    hook = ["run", f"{tmp_path / 'hook.py'}:total", values, "-o", str(tmp_path / "h.h5")]
    line = error_line(cli_here(hook), 2)
    assert "@hpcapp.kernel on 'total': finalize must be a function finalize(partial, " in line


# --- stats: bins without range; generating kernels: seed ------------------------------------


@pytest.mark.parametrize("given", [{"bins": 4096}, {"bins": 64}, {"bins": 8}])
def test_bins_given_without_range_is_refused(given):
    kern = load_kernel("stats")
    message = "kernel 'stats': bins needs range: -p range=LO,HI (a histogram needs a fixed range)"
    with pytest.raises(UsageError) as caught:
        kern.check_params(given)
    assert str(caught.value) == message
    with pytest.raises(UsageError, match="bins needs range"):
        kern.check_params(given, InputInfo("float32", (3,)), over=(1,))


def test_bins_keeps_its_default_with_a_range_and_alone():
    kern = load_kernel("stats")
    assert kern.check_params({"range": [0, 1]})["bins"] == 64
    assert kern.check_params({})["bins"] == 64
    assert kern.check_params({"bins": 8, "range": [0, 1]})["bins"] == 8


def test_hpcapp_run_refuses_bins_without_range_and_bins_64_by_default(values):
    with pytest.raises(UsageError, match="bins needs range"):
        hpcapp.run("stats", values, params={"bins": 8})
    results = hpcapp.run("stats", values, params={"range": [0, 8]})
    expected = np.histogram([3.0, 1.0, 5.0, 2.0], bins=64, range=(0, 8))[0]
    np.testing.assert_array_equal(results["hist"], expected)


def test_the_command_line_and_a_config_file_refuse_bins_without_range(tmp_path, values):
    message = "hpcapp: error: kernel 'stats': bins needs range: -p range=LO,HI"
    refused(values, message, n_ranks=2, tmp_path=tmp_path, extra=["-p", "bins=4096"])
    config = tmp_path / "job.toml"
    config.write_text("[params]\nbins = 32\n")
    refused(values, "bins needs range", tmp_path=tmp_path, extra=["--config", str(config)])
    listed = cli_here(["kernels"])
    assert "-p bins=...   (default 64)" in listed.stdout


@pytest.mark.parametrize("seed", [1.5, -1, "abc", True])
def test_a_generating_kernel_refuses_a_seed_that_is_not_a_non_negative_integer(seed):
    with pytest.raises(UsageError, match="-p seed must be a non-negative integer"):
        load_kernel("montecarlo").check_params({"seed": seed})
    assert load_kernel("montecarlo").check_params({"seed": np.int64(3)})["seed"] == 3


def test_montecarlo_refuses_a_fractional_seed_on_the_command_line(tmp_path):
    out = tmp_path / "pi.h5"
    done = cli_here(["run", "montecarlo", "-p", "samples=100", "-p", "seed=1.5", "-o", str(out)])
    line = error_line(done, 2)
    assert line == (
        "hpcapp: error: kernel 'montecarlo': -p seed must be a non-negative integer, got 1.5"
    )
    assert not out.exists()
