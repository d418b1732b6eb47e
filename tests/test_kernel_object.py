"""The Kernel object (issue 20): checked where it is defined, hooks with one calling convention.

``over`` and a generating kernel's seed are declared (``over=True``, ``seed_param=``), never
found by a parameter's name; a plain function carrying declarations set by hand is refused.
"""

import inspect

import numpy as np
import pytest
from helpers import cli_here, run_here, write_dataset
from ncdata import write_netcdf

import hpcapp
from hpcapp.errors import UsageError
from hpcapp.kernels import hookspec
from hpcapp.kernels.api import InputInfo, Kernel, from_function, kernel
from hpcapp.kernels.declare import key_problem
from hpcapp.kernels.registry import load_kernel


def defined(**options):
    """Define a one-chunk kernel with ``options``; return it (or raise what defining raises)."""

    @kernel(**options)
    def total(chunk, scale=1.0):
        """The scaled total."""
        return {"n": np.int64(len(chunk)), "s": chunk.sum() * scale}

    return total


def refused_definition(error, message, func_text=None, **options):
    """Assert that defining a kernel raises ``error`` whose text names it, then ``message``."""
    with pytest.raises(error) as caught:
        if func_text is None:
            defined(**options)
        else:
            namespace = {}
            exec(func_text, {"np": np}, namespace)
            kernel(**options)(namespace["total"])
    text = str(caught.value)
    assert text.startswith("@hpcapp.kernel on 'total': "), text
    assert message in text, text


# --- the object --------------------------------------------------------------------------------


def test_a_kernel_is_an_object_still_callable_like_its_function():
    total = defined(combine={"n": "sum", "s": "sum"})
    assert isinstance(total, Kernel) and total.name == "total"
    assert total(np.arange(4.0), scale=2.0) == {"n": 4, "s": 12.0}  # a unit test calls it
    assert total.__name__ == "total" and total.__doc__ == "The scaled total."
    assert list(inspect.signature(total).parameters) == ["chunk", "scale"]
    assert total.defaults == {"scale": 1.0} and total.description == "The scaled total."
    with pytest.raises(Exception, match="cannot assign"):
        total.combine = "max"  # frozen: what was checked at definition stays so


def test_the_loaded_kernel_is_the_object_under_the_name_it_was_asked_for():
    loaded = load_kernel("hpcapp.examples.exceedances:exceedances")
    assert isinstance(loaded, Kernel) and loaded.name == "hpcapp.examples.exceedances:exceedances"
    from hpcapp.examples.exceedances import exceedances

    assert loaded.func is exceedances.func and exceedances.name == "exceedances"


def test_the_spec_module_names_every_hook_the_kernel_takes():
    hooks = {"combine", "finalize", "validate", "prepare", "halo"}
    assert set(hookspec.HOOKS) == hooks
    assert hooks < set(inspect.signature(kernel).parameters)
    assert hooks < {field for field in Kernel.__dataclass_fields__}


# --- definition-time errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "hook,text,message",
    [
        ("finalize", "def total(partial, bins=64): return partial", "read bins from params"),
        ("finalize", "def total(partial, **params): return partial", "finalize(partial, params)"),
        ("validate", "def total(**params): pass", "validate is called as validate(params, data)"),
        ("prepare", "def total(dtype, chunk_shape, params): pass", "prepare(params, data)"),
        ("combine", "def total(left): return left", "combine is called as combine(left, right)"),
        ("halo", "def total(params, data): return 0, 0", "halo is called as halo(params)"),
    ],
)
def test_a_hook_that_cannot_take_its_calling_convention_is_refused(hook, text, message):
    namespace = {}
    exec(text, namespace)
    with pytest.raises(TypeError) as caught:
        defined(**{hook: namespace["total"]})
    assert str(caught.value).startswith(f"@hpcapp.kernel on 'total': {hook} is called as")
    assert message in str(caught.value)


def test_hooks_of_the_right_convention_pass_whatever_their_names():
    made = defined(
        finalize=lambda p, q: p,
        validate=lambda *args: None,
        prepare=lambda params, data: None,
        combine=lambda a, b: a,
    )
    assert made.finalize is not None and made.prepare is not None


@pytest.mark.parametrize(
    "options,error,message",
    [
        ({"returns": ("n", "s"), "combine": {"peek": "max"}}, ValueError, "combine names 'peek'"),
        ({"returns": ("n", "s"), "per_row": "norm"}, ValueError, "per_row names 'norm'"),
        ({"returns": 5}, TypeError, "returns must be a key name or a sequence of key names"),
        ({"over": "time"}, TypeError, "over must be True or False, got 'time'"),
        ({"over": True}, TypeError, "over=True: the kernel gets the axes"),
        ({"elementwise": True}, ValueError, "elementwise=True describes a combine function"),
        ({"elementwise": 1, "combine": max}, TypeError, "elementwise must be True or False"),
        ({"seed_param": "scale"}, ValueError, "seed_param names a parameter of a kernel that"),
        ({"times": 1}, TypeError, "times must be True or False"),
        ({"times": True}, TypeError, "times=: the kernel gets times=..., but takes no parameter"),
        ({"halo": lambda params: (1, 0)}, TypeError, "halo=: the kernel gets halo=..."),
        ({"halo": 3}, TypeError, "halo must be a function halo(params)"),
        ({"climatology_param": "clim"}, ValueError, "climatology_param 'clim' is not one of"),
    ],
)
def test_declarations_are_checked_against_each_other_when_defined(options, error, message):
    refused_definition(error, message, **options)


def test_returns_names_a_close_key_and_is_checked_at_every_chunk():
    refused_definition(
        ValueError,
        "combine names 'ss' (did you mean 's'?), which the kernel does not return",
        returns=("n", "s"),
        combine={"ss": "max"},
    )
    made = defined(returns=("n", "s"), combine={"s": "max"})
    assert key_problem(made, {"n": 0, "s": 0}) is None
    assert key_problem(made, {"n": 0, "s": 0, "extra": 0}) == (
        "the kernel returns extra, n, s, not the keys it declares (returns=('n', 's'))"
    )


@pytest.mark.parametrize(
    "text,options,error,message",
    [
        ("def total(chunk, times=None): return {}", {}, ValueError,
         "a parameter named `times` is given by the job only when the kernel declares times="),
        ("def total(rng, n_rows, n=1, times=None): return {}",
         {"generates": True, "rows_param": "n", "times": True}, ValueError,
         "a generating kernel has none"),
        ("def total(): return {}", {}, TypeError, "a kernel is called as f(chunk, **params)"),
        ("def total(rng): return {}", {"generates": True, "rows_param": "n"}, TypeError,
         "f(rng, n_rows, **params)"),
        ("def total(rng, n_rows, n=1): return {}", {"generates": True}, ValueError,
         "generates=True needs rows_param"),
        ("def total(rng, n_rows, n=1, seed=0): return {}", {"generates": True, "rows_param": "n"},
         ValueError, "declares seed_param='seed'"),
        ("def total(rng, n_rows, n=1): return {}",
         {"generates": True, "rows_param": "n", "seed_param": "sed"}, ValueError,
         "seed_param 'sed' is not one of its parameters"),
        ("def total(chunk, over=(0,)): return {}", {}, ValueError,
         "a parameter named `over` is given the axes to reduce (--over) only when the kernel "
         "declares over=True"),
    ],
)  # fmt: skip
def test_the_function_is_checked_against_what_it_declares(text, options, error, message):
    refused_definition(error, message, func_text=text, **options)


def test_decorating_a_kernel_again_is_refused():
    with pytest.raises(TypeError, match="decorates a function, got a Kernel already"):
        kernel(combine="max")(defined())


# --- an undecorated function -------------------------------------------------------------------


HAND_SET = """
import numpy as np

def peak(chunk):
    return {"peak": chunk.max(axis=0)}

peak.combine = "max"
"""


def test_a_plain_function_is_a_sum_kernel_but_hand_set_declarations_are_refused(tmp_path):
    def plain(chunk):
        return {"s": chunk.sum()}

    made = from_function(plain, "plain")
    assert made.combine == "sum" and made.func is plain and made.finalize is None

    def peak(chunk):
        return {"peak": chunk.max(axis=0)}

    for attribute, value in (("combine", "max"), ("finalize", print), ("per_row", ("x",))):
        setattr(peak, attribute, value)
        with pytest.raises(UsageError) as caught:
            from_function(peak, "peak")
        assert str(caught.value) == (
            f"kernel 'peak': peak carries a {attribute!r} attribute, which hpcapp does not "
            f"read: declare it with @hpcapp.kernel({attribute}=...)"
        )
        delattr(peak, attribute)
    data = write_dataset(tmp_path / "in.h5", np.array([[3.0], [1.0], [5.0]]))
    with pytest.raises(UsageError, match="carries a 'combine' attribute"):
        peak.combine = "max"
        hpcapp.run(peak, data)
    (tmp_path / "hand.py").write_text(HAND_SET)
    out = tmp_path / "out.h5"
    done = cli_here(["run", f"{tmp_path / 'hand.py'}:peak", data, "-o", str(out)])
    assert done.returncode == 2 and not out.exists()
    assert done.stderr == (
        f"hpcapp: error: kernel '{tmp_path / 'hand.py'}:peak': peak carries a 'combine' "
        "attribute, which hpcapp does not read: declare it with @hpcapp.kernel(combine=...)\n"
    )


# --- over and seed, declared ----------------------------------------------------------------


@kernel(over=True, finalize=lambda partial, params: {**partial, "axes": np.array(params["over"])})
def total_over(chunk, over):
    """The NaN-sum over the axes of --over."""
    return {"total": np.nansum(chunk.astype(np.float64), axis=over)}


def test_a_kernel_declared_over_gets_the_axes_of_over_in_process(tmp_path):
    rng = np.random.default_rng(5)
    data = rng.normal(size=(12, 3, 4)).astype(np.float32)
    spec = write_netcdf(tmp_path / "in.nc", data)
    for over, axes in (("time", (0,)), ("lon,time", (0, 2)), (None, (0,))):
        got = run_here(total_over, spec, over=over, chunk_rows=5)
        assert got["axes"].tolist() == list(axes)  # finalize finds it in params
        np.testing.assert_allclose(got["total"], np.nansum(data.astype(np.float64), axis=axes))
    plain = kernel(lambda chunk: {"total": np.nansum(chunk, axis=0)})
    with pytest.raises(UsageError, match=r"declare it with @hpcapp.kernel\(over=True\)"):
        run_here(plain, spec, over="lat")
    with pytest.raises(UsageError, match="give the dimensions to reduce with --over, not -p over"):
        run_here(total_over, spec, params={"over": (1,)})


@kernel(generates=True, rows_param="draws", seed_param="start")
def draws(rng, n_rows, draws=100, start=0):
    """The sum of uniform draws, seeded by -p start=S."""
    return {"s": rng.random(n_rows).sum(), "n": np.int64(n_rows)}


@kernel(generates=True, rows_param="draws")
def unseeded(rng, n_rows, draws=100):
    """The sum of uniform draws from the job's fixed seed 0."""
    return {"s": rng.random(n_rows).sum(), "n": np.int64(n_rows)}


def seeded_sum(seed, n_rows):
    """The sum of the draws as the engine seeds its one chunk: (seed, chunk 0)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    return rng.random(n_rows).sum()


def test_a_generating_kernel_is_seeded_from_the_parameter_it_declares():
    for start in (0, 7):
        got = run_here(draws, params={"draws": 50, "start": start})
        assert got["s"] == seeded_sum(start, 50) and got["n"] == 50
    with pytest.raises(UsageError, match="-p start must be a non-negative integer, got -1"):
        run_here(draws, params={"draws": 50, "start": -1})
    assert run_here(unseeded, params={"draws": 50})["s"] == seeded_sum(0, 50)
    with pytest.raises(UsageError, match="has no parameter 'seed'"):
        run_here(unseeded, params={"draws": 50, "seed": 3})  # not a magic name any more


def test_validate_and_prepare_get_params_and_the_input_description(tmp_path):
    seen = []

    @kernel(
        validate=lambda params, data: seen.append(("validate", dict(params), data)),
        prepare=lambda params, data: seen.append(("prepare", dict(params), data)),
    )
    def total(chunk, scale=1.0):
        return {"s": chunk.sum() * scale}

    spec = write_dataset(tmp_path / "in.h5", np.ones((10, 3), np.float32))
    run_here(total, spec, params={"scale": 2.0}, chunk_rows=4)
    given = frozenset({"scale"})
    assert seen == [
        ("validate", {"scale": 2.0}, InputInfo(given=given)),
        ("validate", {"scale": 2.0}, InputInfo(np.dtype("float32"), (3,), given)),
        ("prepare", {"scale": 2.0}, InputInfo(np.dtype("float32"), (3,), chunk_rows=4)),
    ]
    assert seen[-1][2].chunk_shape == (4, 3)


OLD_FINALIZE = """
import hpcapp

def finish(partial, threshold=0.5):
    return partial

@hpcapp.kernel(finalize=finish)
def total(chunk, threshold=0.5):
    return {"s": chunk.sum()}
"""


def test_the_command_line_refuses_a_kernel_file_whose_definition_fails_in_one_line(tmp_path):
    (tmp_path / "old.py").write_text(OLD_FINALIZE)
    data = write_dataset(tmp_path / "in.h5", np.arange(4.0))
    done = cli_here(["run", f"{tmp_path / 'old.py'}:total", data, "-o", str(tmp_path / "o.h5")])
    assert done.returncode == 2 and not (tmp_path / "o.h5").exists()
    assert done.stderr == (
        f"hpcapp: error: importing kernel file '{tmp_path / 'old.py'}': @hpcapp.kernel on "
        "'total': finalize is called as finalize(partial, params), which finish(partial, "
        "threshold=0.5) does not take (read threshold from params)\n"
    )
