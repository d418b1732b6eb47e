"""Entry point: ``python -m hpcapp`` / ``hpcapp``. The only module that names COMM_WORLD.

An error every rank agreed on ends the job with its exit code, printed once by rank 0. Any other
exception, on any rank, is printed by that rank and aborts the whole MPI job: under ``mpiexec``
an uncaught exception would otherwise leave the other ranks waiting forever.
"""

from __future__ import annotations

import gc
import sys
import traceback
from typing import TYPE_CHECKING, TextIO

from hpcapp.cli.parser import parse
from hpcapp.errors import EXIT_FAILURE, EXIT_USAGE, HpcappError, InterruptError
from hpcapp.parallel.heap import keep_freed_memory
from hpcapp.parallel.launch import (
    Startup,
    launcher_rank,
    limit_threads,
    process_start_time,
    world_problem,
)

if TYPE_CHECKING:
    from mpi4py import MPI


def main(argv: list[str] | None = None, startup: Startup | None = None) -> int:
    """Run the command in ``argv`` and return the exit code.

    ``startup`` is what :func:`console_main` recorded before numpy loaded (for the report).
    """
    try:
        command = parse(argv)
        if command.name == "kernels":
            from hpcapp.kernels.registry import list_kernels

            _print_once(list_kernels())
            return 0
        if command.name == "show":
            from hpcapp.cli.show import describe

            path, png, as_json = command.config
            _print_once(describe(path, as_json))
            if png:
                from hpcapp.cli.plot import plot_file

                plot_file(path, png)
                _print_once(f"hpcapp: drew {png}")
            return 0
        if command.name == "check":
            from hpcapp.testing import run_check

            kernel, data, options = command.config
            report = run_check(kernel, data, **options)
            _print_once(report.text())
            return 0 if report.ok else 1
        if command.name == "slurm":
            from hpcapp.cli.submit import slurm_command

            return slurm_command(command.config)
    except HpcappError as exc:
        # Parsing is identical on every rank, so every rank exits with this code.
        _print_once(f"hpcapp: error: {exc}", sys.stderr)
        return exc.exit_code

    from hpcapp.parallel.interrupt import install_early

    install_early()
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    problem = world_problem(comm.Get_size())
    if problem:
        # Every task may be a world of its own here: only the launcher's rank 0 prints.
        _print_once(f"hpcapp: error: {problem}", sys.stderr)
        return EXIT_USAGE
    try:
        from hpcapp.jobs import app

        if command.name == "run":
            return app.run_job(comm, command.config, startup=startup)
        if command.name == "generate":
            return app.run_generate_command(comm, command.config)
        return app.run_demo(comm, startup)
    except HpcappError as exc:
        if getattr(exc, "collective", False):
            if comm.Get_rank() == 0:
                kind = "" if isinstance(exc, InterruptError) else "error: "
                print(f"hpcapp: {kind}{exc}", file=sys.stderr, flush=True)
            return exc.exit_code
        _abort(comm, f"hpcapp: error: {exc}", exc.exit_code)
    except BaseException as exc:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        _abort(comm, f"hpcapp: unexpected error on rank {comm.Get_rank()}:\n{text}", EXIT_FAILURE)
    return EXIT_FAILURE


def _abort(comm: MPI.Comm, message: str, code: int) -> None:
    """Print this rank's error and end every rank of the job."""
    sys.stderr.write(message.rstrip() + "\n")
    sys.stderr.flush()
    comm.Abort(code)


def _print_once(text: str, stream: TextIO | None = None) -> None:
    if launcher_rank() == 0:
        print(text, file=stream or sys.stdout, flush=True)


def prepare_process() -> Startup:
    """Set this process up as a rank before numpy loads; return what the report says of it."""
    # Before anything imports numpy: its BLAS reads the thread variables once, when it loads.
    startup = Startup(process_started=process_start_time(), thread_note=limit_threads())
    keep_freed_memory()  # a process of its own: its malloc is ours to tune
    return startup


def console_main() -> None:
    """The ``hpcapp`` console script (and ``python -m hpcapp``)."""
    code = main(startup=prepare_process())
    # With numba loaded, the interpreter's last garbage collections take ~0.2 s per rank (as
    # long as a small job); frozen objects are skipped. atexit, flushing and MPI's finalize
    # still run, and the job's files are closed by now. Collect first: garbage cycles can hold
    # h5py objects (an error's traceback), which must go while h5py is whole; frozen, they were
    # seen to crash the interpreter at exit (SIGSEGV after a clean exit-2 refusal).
    gc.collect()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    console_main()
