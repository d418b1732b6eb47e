"""Helpers for users' own test suites: prove a kernel's contract, and its bits on N ranks.

``check_kernel`` runs in one process in about a second (no MPI); ``assert_same_on_ranks`` runs
the real command line under ``mpiexec -n N`` for several N and compares the result files
bitwise, as hpcapp's own tests do::

    from hpcapp.testing import assert_same_on_ranks, check_kernel

    def test_my_kernel(tmp_path):
        check_kernel("kernels/mine.py:mine", dtype="float64", shape=(1000, 3))
        assert_same_on_ranks(["kernels/mine.py:mine", "data.h5:/x"], tmp_path, ranks=(1, 2, 4))
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hpcapp.jobs.check import CHECK_SECONDS, SAMPLE_BYTES, SAMPLE_ROWS, prepare_check
from hpcapp.jobs.series_check import prepare_series_check
from hpcapp.kernels.contract import DEFAULT_RTOL, CheckReport, check_contract
from hpcapp.kernels.series_contract import check_tiling
from hpcapp.parallel.launch import find_mpiexec

MAX_CHECK_ROWS = SAMPLE_ROWS


def resolve_kernel(kernel: Any) -> Any:
    """Return a :class:`~hpcapp.kernels.api.Kernel` from a function, a spec or a Kernel."""
    from hpcapp.kernels.api import Kernel, from_function
    from hpcapp.kernels.registry import load_kernel

    if isinstance(kernel, Kernel):
        return kernel
    if isinstance(kernel, str):
        return load_kernel(kernel)
    if callable(kernel):
        return from_function(kernel, getattr(kernel, "__qualname__", repr(kernel)))  # plain
    raise TypeError(
        f"kernel must be a function, a 'module:function' string or a Kernel: {kernel!r}"
    )


def sample_input(
    dtype: str = "float64", shape: Sequence[int] = (1000,), seed: int = 0, nan: float = 0.0
) -> Any:
    """Return generated test rows: normal(0.5, 0.3) floats or integers in [0, 100)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    kind = np.dtype(dtype).kind
    if kind in "iu":
        return rng.integers(0, 100, size=tuple(shape)).astype(dtype)
    if kind == "b":
        return rng.random(tuple(shape)) < 0.5
    data = rng.normal(0.5, 0.3, size=tuple(shape)).astype(dtype)
    if nan:
        data[rng.random(data.shape) < nan] = np.nan
    return data


def read_rows(
    spec: str, max_rows: int = MAX_CHECK_ROWS, *, raw: bool = False, mask_valid_range: bool = False
) -> Any:
    """Return the first ``max_rows`` rows of an input as ``run`` hands them to a kernel.

    The input (``FILE.h5:/dataset``, a glob or an ``@list``) is checked as ``run`` checks it,
    and its values are CF-decoded as ``run`` decodes them (``raw``: ``--raw``;
    ``mask_valid_range``: ``--mask-valid-range``).
    """
    from hpcapp.io.sources.specs import inspect_spec

    source = inspect_spec(spec, mask_valid_range=mask_valid_range)
    source = source.describe(None, raw, mask_valid_range)
    return source.read_rows(0, min(max_rows, source.n_rows))


def run_check(
    kernel: Any,
    input: Any = None,
    *,
    params: Mapping[str, Any] | None = None,
    over: str | Sequence[str | int] | None = None,
    dims: str | None = None,
    raw: bool = False,
    mask_valid_range: bool = False,
    group_every: int | None = None,
    group_by: str | None = None,
    resample: str | None = None,
    sort_files: bool = False,
    sel: Mapping[str, Any] | str | None = None,
    isel: Mapping[str, Any] | str | None = None,
    weights: str | None = None,
    mask: str | None = None,
    regions: str | None = None,
    dtype: str = "float64",
    shape: Sequence[int] = (1000,),
    nan: float = 0.0,
    seed: int = 0,
    trials: int = 20,
    rtol: float = DEFAULT_RTOL,
    max_bytes: int = SAMPLE_BYTES,
    seconds: float | None = CHECK_SECONDS,
) -> CheckReport:
    """Check a kernel's contract on ``input`` (a spec, an array) or generated data.

    The data options (``params`` to ``regions``) are ``hpcapp.run``'s, resolved as it
    resolves them: the kernel is judged with the parameters, ``over``, per-row outputs and
    groups a run would give it. At most ``max_bytes`` of values (and 100,000 rows) are checked,
    in a few blocks spread over the input. ``dtype``, ``shape`` and ``nan`` describe generated
    data (no ``input``); ``seed`` seeds it and the random cuts. Cuts stop after ``trials``, or
    once ``seconds`` are spent (at least 2 are tried; None: no time limit). A series kernel
    (``series=True``) is checked on the whole series of a small box of cells instead, tiled in
    many ways (:mod:`hpcapp.kernels.series_contract`): its results must have the same bits.
    """
    options = {  # the data options, by the names hpcapp.run and JobConfig give them
        "params": dict(params or {}),
        "over": over,
        "dims": dims,
        "raw": raw,
        "mask_valid_range": mask_valid_range,
        "group_every": group_every,
        "group_by": group_by,
        "resample": resample,
        "sort_files": sort_files,
        "sel": sel,
        "isel": isel,
        "weights": weights,
        "mask": mask,
        "regions": regions,
    }
    resolved = resolve_kernel(kernel)
    if input is None and not resolved.generates:
        input = sample_input(dtype, shape, seed, nan)
    if resolved.series:  # whole series: check that tiling the cells changes no bit
        sample = prepare_series_check(resolved, input, options, max_bytes)
        tiled = check_tiling(
            sample.kernel,
            sample.series,
            sample.params,
            trials=trials,
            seed=seed,
            seconds=seconds,
            written=sample.shape,
        )
        tiled.notes[:0] = sample.notes
        return tiled
    data = prepare_check(resolved, input, options, max_bytes)
    report = check_contract(
        data.kernel,
        data.rows,
        data.params,
        n_rows=data.n_rows,
        labels=data.labels,
        trials=trials,
        seed=seed,
        rtol=rtol,
        seconds=seconds,
        times=data.times,
        first_row=data.first_row,
    )
    report.notes[:0] = data.notes
    return report


def check_kernel(kernel: Any, input: Any = None, **options: Any) -> CheckReport:
    """Like :func:`run_check`, but raise AssertionError with the report if a rule fails."""
    report = run_check(kernel, input, **options)
    if not report.ok:
        raise AssertionError(report.text())
    return report


def assert_same_on_ranks(
    run_args: Sequence[str],
    directory: str | os.PathLike[str],
    ranks: Sequence[int] = (1, 2, 3, 4),
    *,
    timeout: float = 300.0,
    mpiexec: str | None = None,
    env: Mapping[str, str] | None = None,
    on_run: Callable[[int, subprocess.CompletedProcess[str]], None] | None = None,
) -> dict[str, Any]:
    """Run ``hpcapp run RUN_ARGS -o DIR/ranksN.h5`` under ``mpiexec -n N`` for every N.

    Fails (AssertionError) unless every run exits 0 within ``timeout`` seconds and every
    result has the same bytes on every rank count. Returns the results of the first.
    """
    from hpcapp.io.results import read_results

    launcher = mpiexec or find_mpiexec()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "HYDRA_"))}
    outputs: dict[int, dict[str, Any]] = {}
    for n_ranks in ranks:
        out = Path(directory) / f"ranks{n_ranks}.h5"
        command = [launcher, "-n", str(n_ranks), sys.executable, "-m", "hpcapp", "run"]
        command += [*run_args, "-o", str(out), "--overwrite", "-q"]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env={**base, **(env or {})}
        )
        if on_run is not None:
            on_run(n_ranks, done)
        assert done.returncode == 0, f"{n_ranks} ranks: exit {done.returncode}\n{done.stderr}"
        outputs[n_ranks] = read_results(str(out))
    first = ranks[0]
    for n_ranks in ranks[1:]:
        for key, value in outputs[first].items():
            other = outputs[n_ranks].get(key)
            same = (
                other is not None
                and other.dtype == value.dtype
                and other.shape == value.shape
                and other.tobytes() == value.tobytes()
            )
            assert same, f"result {key!r} differs between {first} and {n_ranks} ranks"
    return outputs[first]
