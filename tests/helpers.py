"""Helpers of the tests: run a job in this process or the real CLI under mpiexec; small inputs.

Three ways to run a job, cheapest first (pick the cheapest that still tests the thing):
- ``run_here``: ``hpcapp.run`` on ``MPI.COMM_SELF`` in this process, for numbers and refusals.
- ``cli_here``: the command line's ``main(argv)`` in this process (one rank), for what the
  command prints and its exit code, where no launcher, signal or second rank is involved.
- ``run_cli``: ``mpiexec -n N python -m hpcapp`` in a subprocess, for the launcher, signals,
  aborts, and what several ranks print.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

# The one launcher lookup of the project (scripts/ is importable: pyproject's pytest pythonpath).
from scripts.benchlib.launcher import find_mpiexec, without_launch, without_netcdf4_plugins
from scripts.benchlib.registry import REGISTRY

REPO = Path(__file__).resolve().parent.parent
# An end-to-end run that takes longer than this has hung: fail the test instead of CI.
CLI_TIMEOUT = 120


# Inputs whose chunks take stats' compiled loops (histogram and one-pass lanes, 1-D, 2-D and
# N-D): (shape, dtype, chunk_rows, histogram), checked against numpy in test_stats_fused.py and
# for the same bits on any rank count in test_ranks_mpi.py.
COMPILED_SHAPES = [
    ((400_000,), "float64", 140_000, True),
    ((60_000, 8), "float32", 20_000, True),
    ((60_000, 8), "float64", 20_001, False),  # the one-pass lanes, with a short segment
    ((2_000, 20, 30), "float32", 250, False),  # per cell over time: one lane per cell
]


def mpiexec() -> str:
    """Return the launcher (``$MPIEXEC``, PATH, else the mpich wheel's beside this Python)."""
    try:
        return find_mpiexec()
    except FileNotFoundError as error:
        pytest.fail(str(error))


def clean_env() -> dict[str, str]:
    """Return an environment without the variables of an enclosing MPI launch."""
    env = without_netcdf4_plugins(without_launch(os.environ))
    env["PYTHONPATH"] = str(REPO)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["HPCAPP_PROGRESS"] = "lines"  # the same progress output however the tests are run
    return env


def without_quiet(args: list[str]) -> list[str]:
    """Return ``args`` without ``-q``: to read what a run says besides errors."""
    return [arg for arg in args if arg not in ("-q", "--quiet")]


def cli_command(args: list[str], n_ranks: int) -> list[str]:
    """Return the command line ``mpiexec -n N python -m hpcapp ARGS``."""
    return [mpiexec(), "-n", str(n_ranks), sys.executable, "-m", "hpcapp", *args]


def run_cli(
    args: list[str],
    n_ranks: int = 1,
    cwd: Path | None = None,
    timeout: float = CLI_TIMEOUT,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``mpiexec -n N python -m hpcapp ARGS`` and return it (output captured as text)."""
    return subprocess.run(
        cli_command(args, n_ranks),
        cwd=cwd,
        env={**clean_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(args: list[str], n_ranks: int) -> subprocess.Popen[str]:
    """Start ``mpiexec -n N python -m hpcapp ARGS`` without waiting (output piped as text)."""
    return subprocess.Popen(
        cli_command(args, n_ranks),
        env=clean_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def interrupt_when_running(
    process, checkpoint_dir, delay, sig=signal.SIGTERM, before=None, ready="manifest.json"
):
    """Wait until the job has started computing, then ``delay`` seconds, then send ``sig``.

    The job has started when it has written the checkpoint file ``ready`` (its manifest, or
    ``rows.h5`` for per-row outputs): a new one, if ``before`` (the ``st_mtime_ns`` of one
    left by an earlier run, which a resume rewrites) is given.
    """
    manifest = checkpoint_dir / ready

    def started():
        return manifest.exists() and (before is None or manifest.stat().st_mtime_ns != before)

    deadline = time.monotonic() + 60  # a hang guard, not a measurement
    while not started():
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            process.communicate()
            pytest.fail("the job did not start")
        time.sleep(0.01)
    time.sleep(delay)
    process.send_signal(sig)
    return process.communicate(timeout=60)


def run_python(code: str, timeout: float = 60) -> str:
    """Run ``python -c code`` in the tests' clean environment; return its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=timeout,
        check=True,
    )
    return done.stdout


def run_here(kernel: Any, input: Any = None, **options: Any) -> dict[str, Any] | None:
    """Run a job with ``hpcapp.run`` in this process (on ``MPI.COMM_SELF`` unless ``comm``)."""
    from mpi4py import MPI

    import hpcapp

    options.setdefault("comm", MPI.COMM_SELF)
    saved_path = list(sys.path)
    try:
        return hpcapp.run(kernel, input, **options)
    finally:
        sys.path[:] = saved_path  # a kernel file's folder goes first on it: not for later tests


class AbortedError(Exception):
    """The command would have aborted the MPI job (an error the ranks did not agree on)."""


def _raise_instead_of_abort(comm: object, message: str, code: int) -> None:
    raise AbortedError(f"exit {code}: {message}")


def cli_here(
    args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the command line ``hpcapp ARGS`` in this process, as one rank; return it like run_cli.

    What it prints and its exit code are the command's; ``env`` is set for the call only. An
    error that would abort the MPI job fails the test instead of ending pytest.
    """
    import hpcapp.__main__ as entry

    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    signals = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
    saved_handlers = {number: signal.getsignal(number) for number in signals}
    saved_abort = entry._abort
    saved_path = list(sys.path)
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        os.environ.update({"HPCAPP_PROGRESS": "lines", **(env or {})})
        if cwd is not None:
            os.chdir(cwd)
        entry._abort = _raise_instead_of_abort
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = entry.main(list(args))
    finally:
        entry._abort = saved_abort
        sys.path[:] = saved_path  # a kernel file's folder goes first on it: not for later tests
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for number, handler in saved_handlers.items():
            signal.signal(number, handler)
    return subprocess.CompletedProcess(args, code, stdout.getvalue(), stderr.getvalue())


def write_dataset(path: Path, data: np.ndarray, name: str = "x", **kwargs: object) -> str:
    """Write ``data`` to ``path`` and return the ``FILE:/DATASET`` spec."""
    with h5py.File(path, "a") as h5:
        h5.create_dataset(name, data=data, **kwargs)
    return f"{path}:/{name}"


def read_results(path: Path) -> dict[str, np.ndarray]:
    """Read every result of an output file, keyed as the kernel returned them (``mean``)."""
    from hpcapp.io.results import read_results as read

    return read(str(path))


def result_bytes(path: Path) -> dict[str, bytes]:
    """Return the bytes of every result of an output file."""
    return {key: value.tobytes() for key, value in read_results(path).items()}


def coordinate_bytes(path: Path) -> dict[str, bytes]:
    """Return the bytes of every coordinate variable of an output file (``time``, ``lat``...)."""
    with h5py.File(path, "r") as h5:
        return {
            name: dataset[()].tobytes()
            for name, dataset in h5.items()
            if dataset.attrs.get("CLASS") == b"DIMENSION_SCALE" and name != "rank"
        }


def as_bytes(results: dict[str, Any]) -> dict[str, bytes]:
    """Return the bytes of every array of a result dict (as ``hpcapp.run`` returns it)."""
    return {key: np.asarray(value).tobytes() for key, value in results.items()}


def result_variables(path: Path) -> set[str]:
    """Return the keys of the results of an output file (dimensions and coordinates left out)."""
    return set(read_results(path))


def result_names(path: Path) -> dict[str, str]:
    """Return key -> netCDF variable name of every result of an output file."""
    from hpcapp.io.results import names_in

    return names_in(str(path))


def timing_of(path: Path) -> tuple[np.ndarray, list[str]]:
    """Return an output file's per-rank timing (ranks x columns) and its column names."""
    from hpcapp.io.results import read_timing

    with h5py.File(path, "r") as h5:
        found = read_timing(h5)
    assert found is not None, f"{path} has no timing"
    return found


def root_attrs(path: Path) -> dict[str, Any]:
    """Return an output file's global attributes, text as str (netCDF ``char`` is bytes in h5py)."""
    from hpcapp.cli.show import read_record

    return read_record(str(path))["attributes"]


def sample_data(rows: int, cols: int | None, dtype: str, seed: int = 1, nan: float = 0.0):
    """Return deterministic test data of the given shape and dtype, with optional NaNs."""
    rng = np.random.default_rng(seed)
    shape = (rows,) if cols is None else (rows, cols)
    if np.dtype(dtype).kind in "iu":
        return rng.integers(0, 200, size=shape).astype(dtype)
    data = rng.normal(0.5, 0.3, size=shape).astype(dtype)
    if nan:
        data[rng.random(shape) < nan] = np.nan
    return data


def refused_here(kernel: Any, input: Any, *fragments: str, **options: Any) -> str:
    """Run a job that must be refused (UsageError, one line holding every fragment); return it."""
    from hpcapp.errors import UsageError

    with pytest.raises(UsageError) as caught:
        run_here(kernel, input, **options)
    message = str(caught.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def bench(*args: str, timeout: float = 280) -> subprocess.CompletedProcess[str]:
    """Run ``python scripts/bench.py ARGS``."""
    command = [sys.executable, str(REPO / "scripts" / "bench.py"), *args]
    return subprocess.run(command, env=clean_env(), capture_output=True, text=True, timeout=timeout)


def run_tiny(name: str, tmp_path: Path, *extra: str) -> dict[str, Any]:
    """Run one benchmark at its tiny sizes through the entry; check its JSON and its table.

    Return the benchmark's result; skip if a module it needs is not installed.
    """
    missing = REGISTRY[name].missing()
    if missing:
        pytest.skip(f"{name} needs {', '.join(missing)}, not installed (pip install -e .[bench])")
    path = tmp_path / f"{name}.json"
    done = bench(name, "--tiny", "--json", str(path), *extra)
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(path.read_text())
    assert document["benchmark"] == name
    assert document["command"][3:] == ["--tiny", "--json", str(path), *extra]
    table = bench("table", str(path))
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith("| ") and table.stdout in done.stdout
    return document["result"]


def spy_on_exchange(monkeypatch: Any, record: Any) -> None:
    """Call ``record(send)`` with each send buffer of the transpose's exchange, then exchange."""
    from hpcapp.parallel import transpose

    exchange = transpose.exchange

    def spy(comm: Any, send: Any, *args: Any) -> Any:
        record(send)
        return exchange(comm, send, *args)

    monkeypatch.setattr(transpose, "exchange", spy)
