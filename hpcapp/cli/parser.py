"""The command line: argparse definitions that turn ``argv`` into a command and its config.

Parsing needs no MPI and no h5py: ``hpcapp --help`` and ``hpcapp kernels`` answer instantly, and
every rank parses the same ``argv`` to the same result without talking to the others.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any, NoReturn

from hpcapp.errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
)
from hpcapp.jobs.config import CONFLICTS, JobConfig, load_config_file, make_job_config
from hpcapp.jobs.options import add_arguments, command_line_values
from hpcapp.parallel.launch import launcher_rank

# What each exit code means, for --help (a test checks every EXIT_* constant is here).
EXIT_MEANINGS = {
    EXIT_OK: "success",
    EXIT_FAILURE: "failure while running",
    EXIT_USAGE: "usage or bad input (nothing was computed)",
    EXIT_INTERRUPTED: "stopped by SIGTERM, SIGUSR1 or SIGINT with progress saved: "
    "rerun with --resume",
}


@dataclasses.dataclass(frozen=True)
class Command:
    """A parsed command line: the command's name and its configuration."""

    name: str
    config: Any = None


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises UsageError and prints help on rank 0 only."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")

    def _print_message(self, message: str, file: Any = None) -> None:
        if launcher_rank() == 0:
            super()._print_message(message, file)


def exit_codes_text() -> str:
    """Return the exit-code paragraph of ``--help``."""
    return "Exit codes: " + "; ".join(f"{c} {m}" for c, m in EXIT_MEANINGS.items()) + "."


def build_parser() -> argparse.ArgumentParser:
    """Define the commands: run, generate, show, slurm, kernels, demo."""
    parser = _Parser(
        prog="hpcapp",
        description="Run a numpy kernel over every chunk of an HDF5 dataset on all MPI ranks. "
        "With no command, runs a built-in demonstration job.",
        epilog=exit_codes_text(),
    )
    from hpcapp import __version__

    parser.add_argument("--version", action="version", version=f"hpcapp {__version__}")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

    run = commands.add_parser(
        "run", help="run a kernel over a dataset, write one result file", epilog=exit_codes_text()
    )
    add_arguments(run, JobConfig, CONFLICTS)
    run.add_argument("--config", help="TOML file with any of these options; the command line wins")

    gen = commands.add_parser("generate", help="write a synthetic dataset in parallel")
    gen.add_argument("target", help="FILE.h5:/dataset to create")
    gen.add_argument("--rows", type=int, required=True, help="number of rows")
    gen.add_argument("--cols", type=int, help="number of columns (omit for a 1-D dataset)")
    gen.add_argument("--dtype", default="float64", help="numpy dtype name (default float64)")
    gen.add_argument("--dist", default="uniform", help="uniform (default) or normal")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    gen.add_argument("--nan-fraction", type=float, default=0.0, help="fraction of NaN values")
    gen.add_argument("--overwrite", action="store_true", help="replace an existing file")

    show = commands.add_parser("show", help="print the results and provenance of an output file")
    show.add_argument("file", help="an hpcapp result file")
    show.add_argument("--plot", metavar="FILE.png", help="also draw the results and timing")
    show.add_argument(
        "--json", action="store_true", help="print the full record (attributes, results, timing)"
    )

    slurm = commands.add_parser(
        "slurm",
        help="write (or submit) a SLURM batch script for an hpcapp command",
        description="Everything after `--` is the hpcapp command to run, e.g. "
        "`hpcapp slurm --nodes 2 --ntasks-per-node 64 -- run stats d.h5:/x -o o.h5`",
    )
    slurm.add_argument("--nodes", type=int, default=1, help="number of nodes (default 1)")
    tasks = slurm.add_mutually_exclusive_group()
    tasks.add_argument("--ntasks", type=int, help="total MPI ranks")
    tasks.add_argument("--ntasks-per-node", type=int, help="MPI ranks per node")
    slurm.add_argument("--cpus-per-task", type=int, default=1, help="cores per rank (default 1)")
    slurm.add_argument(
        "--time",
        default="01:00:00",
        help="wall-time limit in a SLURM format: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or "
        "D-HH:MM:SS (default 01:00:00; 1:30 is 1 min 30 s)",
    )
    slurm.add_argument("--partition", help="SLURM partition")
    slurm.add_argument("--account", help="SLURM account")
    slurm.add_argument("--job-name", default="hpcapp", help="job name (default hpcapp)")
    slurm.add_argument(
        "--launcher",
        choices=("srun", "mpiexec"),
        default="srun",
        help="srun --mpi=pmi2 (default) or mpiexec inside the allocation",
    )
    slurm.add_argument(
        "--no-check",
        action="store_true",
        help="do not check the command's input, kernel, parameters and output here first "
        "(for inputs that exist only on the cluster)",
    )
    where = slurm.add_mutually_exclusive_group()
    where.add_argument("--output-script", help="write the batch script to this file")
    where.add_argument("--submit", action="store_true", help="submit it with sbatch")
    slurm.add_argument(
        "hpcapp_command",
        nargs=argparse.REMAINDER,
        help="-- then the hpcapp command (e.g. -- run stats d.h5:/x -o o.h5)",
    )

    check = commands.add_parser(
        "check",
        help="prove a kernel's contract in one process before a big run (exit 0 if it holds)",
        description="Runs KERNEL serially on a sample of INPUT (at most 4 MiB of values and "
        "100,000 rows, in a few blocks spread over the input) or on generated data, as `run` "
        "would run it: the data options below are run's, resolved as run resolves them. The "
        "rows are cut into chunks in many random ways; check proves that the results do not "
        "depend on the cut or on the shape of the combining tree, that finalize is "
        "deterministic, that per-row outputs have one row per input row and that the kernel "
        "leaves its chunk unchanged. Exit 0 when every rule holds, 1 otherwise.",
    )
    check.add_argument("kernel", help="stats, pkg.module:func or file.py:func")
    check.add_argument("input", nargs="?", help="FILE.h5:/dataset (default: generated data)")
    add_arguments(check, JobConfig, CONFLICTS, data_only=True)  # run's data options
    check.add_argument("--dtype", default="float64", help="generated data's dtype (float64)")
    check.add_argument("--shape", default="1000,3", help="generated data's shape (1000,3)")
    check.add_argument("--nan-fraction", type=float, default=0.0, help="NaNs in generated data")
    check.add_argument("--trials", type=int, default=20, help="random cuts to try (20)")
    check.add_argument(
        "--seconds",
        type=float,
        default=5.0,
        help="stop trying cuts once this time is spent, after 2 at least (5; 0: no limit)",
    )
    check.add_argument("--seed", type=int, default=0, help="seed of the data and the cuts")
    check.add_argument(
        "--rtol", type=float, default=1e-8, help="relative tolerance for float results (1e-8)"
    )

    commands.add_parser("kernels", help="list the built-in kernels and their parameters")
    commands.add_parser("demo", help="the built-in demonstration job (same as no command)")
    return parser


def parse(argv: list[str] | None = None) -> Command:
    """Parse ``argv`` (default ``sys.argv[1:]``) into a :class:`Command`; raise UsageError."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command in (None, "demo"):
        return Command("demo")
    if args.command == "run":
        file_values = load_config_file(args.config) if args.config else {}
        return Command("run", make_job_config(command_line_values(args, JobConfig), file_values))
    if args.command == "generate":
        from hpcapp.jobs.generate import GenerateConfig

        config = GenerateConfig(
            target=args.target,
            rows=args.rows,
            cols=args.cols,
            dtype=args.dtype,
            dist=args.dist,
            seed=args.seed,
            nan_fraction=args.nan_fraction,
            overwrite=args.overwrite,
        )
        return Command("generate", config)
    if args.command == "show":
        return Command("show", (args.file, args.plot, args.json))
    if args.command == "slurm":
        return Command("slurm", args)
    if args.command == "check":
        try:
            shape = tuple(int(n) for n in args.shape.split(","))
        except ValueError:
            raise UsageError(f"--shape must be N or N,M,..., got {args.shape!r}") from None
        # A data option not given takes run's default (JobConfig's), as run would.
        given = command_line_values(args, JobConfig, data_only=True)
        options = {
            **{name: value for name, value in given.items() if value is not None},
            "dtype": args.dtype,
            "shape": shape,
            "nan": args.nan_fraction,
            "trials": args.trials,
            "seconds": args.seconds or None,
            "seed": args.seed,
            "rtol": args.rtol,
        }
        return Command("check", (args.kernel, args.input, options))
    return Command(args.command)
