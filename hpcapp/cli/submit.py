"""``hpcapp slurm``: check a command as its batch job will run it, then write or submit the job.

The batch script is the one :mod:`hpcapp.cli.slurm` renders. This part is split from that module,
which every rank of every job imports for its provenance: it runs only on a login node.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hpcapp.cli.slurm import (
    BATCH_COMMANDS,
    BatchOptions,
    describe_seconds,
    render_command_script,
    time_limit_seconds,
)
from hpcapp.errors import EXIT_FAILURE, UsageError

if TYPE_CHECKING:
    import argparse


def check_batch_command(command: list[str]) -> None:
    """Refuse an hpcapp command that would fail in the batch job (parsed as hpcapp would)."""
    if not command:
        raise UsageError(
            "give the hpcapp command after `--`, e.g. "
            "`hpcapp slurm --ntasks 64 -- run stats data.h5:/x -o out.h5`"
        )
    if command[0] not in BATCH_COMMANDS:
        raise UsageError(
            f"the command after `--` must be one of {', '.join(BATCH_COMMANDS)}, not {command[0]!r}"
        )
    from hpcapp.cli.parser import parse

    parse(command)  # raises UsageError with the same message the batch job would print


def check_run_here(command: list[str]) -> None:
    """Run the checks ``run`` makes before any work (input, kernel, params, output), here.

    They are ``run``'s own checks, called without MPI, on the command as the batch job will run
    it: the script adds ``--resume``, so an existing checkpoint of this job, or an output that
    already holds its result, is fine, exactly as it will be in the job. Nothing is written.
    """
    if command[0] != "run":
        return
    from hpcapp.cli.parser import parse
    from hpcapp.jobs.plan import plan_job
    from hpcapp.jobs.provenance import load_with_code

    config = dataclasses.replace(parse(command).config, resume=True)
    try:
        plan_job(config, *load_with_code(config.kernel))
    except UsageError as exc:
        raise UsageError(
            f"{exc}\n(checked before writing the batch script, as the job would; if the input "
            "exists only on the cluster, add --no-check)"
        ) from None


def slurm_command(args: argparse.Namespace) -> int:
    """``hpcapp slurm``: print, write (--output-script) or submit (--submit) a batch script."""
    command = list(args.hpcapp_command)
    if command[:1] == ["--"]:
        command = command[1:]
    check_batch_command(command)
    if not args.no_check:
        check_run_here(command)
    one_per_node = args.ntasks is None and args.ntasks_per_node is None
    options = BatchOptions(
        nodes=args.nodes,
        ntasks=args.ntasks,
        ntasks_per_node=1 if one_per_node else args.ntasks_per_node,
        cpus_per_task=args.cpus_per_task,
        time=args.time.strip(),
        job_name=args.job_name,
        partition=args.partition,
        account=args.account,
        # Run where `hpcapp slurm` ran: relative paths in the command mean the same there.
        chdir=os.getcwd(),
    )
    text = render_command_script(options, command, sys.executable, args.launcher)
    if one_per_node:
        print("hpcapp: note: no --ntasks or --ntasks-per-node: one rank per node", file=sys.stderr)
    if re.fullmatch(r"\d+:\d+", options.time):
        limit = describe_seconds(time_limit_seconds(options.time))
        print(f"hpcapp: note: --time {options.time} is MM:SS to SLURM: {limit}", file=sys.stderr)
    if args.output_script:
        path = Path(args.output_script)
        try:
            path.write_text(text)
            path.chmod(0o755)
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc}") from None
        print(f"hpcapp: wrote {path}; submit it with: sbatch {shlex.quote(str(path))}")
        return 0
    if not args.submit:
        sys.stdout.write(text)
        return 0
    # Imported here, not at the top: every rank of every job imports this module.
    import shutil
    import subprocess

    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise UsageError(
            "sbatch not found: run this on a SLURM login node, or write the script with "
            "--output-script FILE and submit it there"
        )
    # sbatch reads the script from stdin and prints "Submitted batch job N".
    done = subprocess.run([sbatch], input=text, text=True, check=False)
    if done.returncode != 0:
        print(f"hpcapp: error: sbatch refused the script (exit {done.returncode})", file=sys.stderr)
        return EXIT_FAILURE
    return 0
