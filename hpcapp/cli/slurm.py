"""SLURM batch scripts for hpcapp commands (the job's context is in hpcapp.parallel.launch).

The batch-script text lives here and nowhere else. ``hpcapp slurm`` (:mod:`hpcapp.cli.submit`)
renders it for one command; the scripts in the repository's ``slurm/`` directory are renderings
of it too (``EXAMPLES``), which a test keeps equal to what this module produces (regenerate with
``python -c "import hpcapp.cli.slurm as s; s.write_examples('slurm')"``). Keeping the text in a
module rather than in data files means an installed hpcapp renders exactly what the repository
shows, with no package data to ship.

"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shlex
import textwrap
from pathlib import Path

from hpcapp.errors import UsageError

LAUNCHERS = ("srun", "mpiexec")
# Commands worth a batch job (show, kernels and slurm answer at once on a login node).
BATCH_COMMANDS = ("run", "generate", "demo")
# Seconds before the time limit at which SLURM sends USR1: enough for every rank to finish its
# current chunk and write its checkpoint part. SLURM may send it up to 60 s earlier anyway.
SIGNAL_LEAD = 120
# A job that stops at its time limit requeues itself at most this often (each attempt continues
# from the last checkpoint; the cap only stops a job that can make no progress from looping).
MAX_REQUEUES = 10
# The memory request is the job's own estimate (hpcapp.io.memory) times this, rounded up to a
# multiple of MEMORY_STEP: the estimate leaves out the allocator's slack and MPI's buffers.
MEMORY_HEADROOM = 1.25
MEMORY_STEP = 64 << 20


# ---------------------------------------------------------------------------------------------
# Batch-script text. {{name}} marks a slot; bash itself never uses double braces.

_TEMPLATE = """\
#!/bin/bash
{{intro}}

# ---- Resources (sbatch reads the #SBATCH lines above the first command) ---------------------
{{sbatch}}
# ---- Time-limit safety ----------------------------------------------------------------------
# SLURM sends USR1 to this script {{lead}} s before the time limit; hpcapp saves a checkpoint and
# stops, and the job requeues itself and continues from the checkpoint (see slurm/README.md).
#SBATCH --signal=B:USR1@{{lead}}
#SBATCH --requeue
# One log for every attempt of the job: a requeued job appends to it.
#SBATCH --output={{log}}
#SBATCH --open-mode=append

set -euo pipefail

# ==== Site set-up: the one place to edit for your cluster ====================================
# Load your modules (names vary by site) and activate your environment here, e.g.:
#   module load python openmpi
#   source ~/venvs/hpcapp/bin/activate
# The Python that has hpcapp installed (HPCAPP_PYTHON=... at submission overrides it):
PYTHON=${HPCAPP_PYTHON:-{{python}}}
# How to start the MPI ranks: srun (SLURM starts them) or mpiexec (your MPI's own launcher,
# which reads the allocation from SLURM). HPCAPP_LAUNCHER=... at submission overrides it.
LAUNCHER=${HPCAPP_LAUNCHER:-{{launcher}}}
# =============================================================================================

{{what}}

# ---- Run (nothing to edit below) ------------------------------------------------------------
# A requeued job must continue, not start over: --resume continues from the checkpoint beside
# the output (OUT.h5.checkpoint/), starts afresh if there is none, and exits at once if the
# output is already complete.
if [ "${HPCAPP_ARGS[0]}" = run ]; then HPCAPP_ARGS+=(--resume); fi

# numpy's threads x ranks must not exceed the cores: each rank gets --cpus-per-task threads.
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}

case $LAUNCHER in
    # --mpi=pmi2 suits MPICH-based MPIs (MPICH, Intel MPI, MVAPICH); Open MPI 5 needs pmix.
    # Since SLURM 22.05 srun does not pass the job's --cpus-per-task on to its tasks by itself.
    # --kill-on-bad-exit: a rank that dies (killed, out of memory) ends the step at once,
    # instead of leaving the others waiting in MPI until the time limit.
    srun) launch=(srun --mpi=pmi2 --kill-on-bad-exit=1 --cpus-per-task="$OMP_NUM_THREADS") ;;
    mpiexec) launch=(mpiexec -n "$SLURM_NTASKS") ;;
    *) echo "LAUNCHER must be srun or mpiexec, not '$LAUNCHER'" >&2; exit 2 ;;
esac

echo "hpcapp job ${SLURM_JOB_ID:-?} attempt $((${SLURM_RESTART_COUNT:-0} + 1)):" \\
    "${SLURM_NTASKS:-?} ranks on ${SLURM_JOB_NODELIST:-?} via $LAUNCHER: hpcapp ${HPCAPP_ARGS[*]}"

# Run the ranks in the background and wait for them: bash runs a trap only between commands, so
# with the ranks in the foreground the USR1 sent before the time limit would wait until the
# limit had passed. srun and mpiexec hand the signal on to every rank.
"${launch[@]}" "$PYTHON" -m hpcapp "${HPCAPP_ARGS[@]}" &
step=$!
signalled=""
trap 'signalled=USR1; kill -USR1 "$step" 2>/dev/null || true' USR1
trap 'signalled=TERM; kill -TERM "$step" 2>/dev/null || true' TERM
# `wait` returns early when a trapped signal arrives: wait again until the ranks have ended
# (bash keeps the exit status of a finished background job for the last `wait`).
while kill -0 "$step" 2>/dev/null; do wait "$step" || true; done
status=0
wait "$step" || status=$?

# 75: hpcapp saved a checkpoint and stopped because it was asked to (the time limit is near).
# Put the job back in the queue; its next attempt runs this script again and resumes. Not after
# TERM: that is scancel (the user wants it to stop), or pre-emption (SLURM requeues by itself).
if [ "$status" -eq 75 ] && [ "$signalled" != TERM ]; then
    if [ "${SLURM_RESTART_COUNT:-0}" -ge {{max_requeues}} ]; then
        echo "hpcapp job $SLURM_JOB_ID: stopped {{max_requeues}} times; resubmit to continue" >&2
    elif scontrol requeue "$SLURM_JOB_ID"; then
        echo "hpcapp job $SLURM_JOB_ID: checkpoint saved, job requeued" >&2
    else
        echo "hpcapp job $SLURM_JOB_ID: checkpoint saved; resubmit this job to continue" >&2
    fi
fi
exit "$status"
"""

_WHAT_ARGUMENTS = """\
# ---- What to run: the hpcapp command given after this script's name -------------------------
HPCAPP_ARGS=("$@")
if [ ${#HPCAPP_ARGS[@]} -eq 0 ]; then
    echo "usage: sbatch [OPTIONS] job.sbatch run KERNEL [INPUT] -o OUT.h5 [-p KEY=VALUE]..." >&2
    exit 2
fi"""

_WHAT_TASK_FILE = """\
# ---- What to run: line N of the task file is the hpcapp command of array task N -------------
# Words are split at spaces (no quoting); blank lines and comments would shift the numbering.
TASK_FILE=${1:?usage: sbatch --array=1-N sweep.sbatch TASK_FILE}
TASK=${SLURM_ARRAY_TASK_ID:?submit as a job array: sbatch --array=1-N sweep.sbatch TASK_FILE}
HPCAPP_ARGS=()
read -ra HPCAPP_ARGS < <(sed -n "${TASK}p" "$TASK_FILE") || true
if [ ${#HPCAPP_ARGS[@]} -eq 0 ]; then
    echo "$TASK_FILE has no command on line $TASK" >&2
    exit 2
fi"""

_WHAT_COMMAND = """\
# ---- What to run (the command given to `hpcapp slurm`) --------------------------------------
HPCAPP_ARGS=({{command}})"""

_INTRO_JOB = """\
# hpcapp batch job: one hpcapp command on every allocated MPI rank, safe at the time limit.
#
#   sbatch slurm/job.sbatch run stats data.h5:/temperature -o summary.h5 -p range=250,320
#   sbatch --nodes=4 --ntasks-per-node=64 --time=12:00:00 slurm/job.sbatch run ...
#
# Options given to sbatch override the #SBATCH lines below. Edit the set-up section once for
# your site. Documentation: slurm/README.md. (This file is rendered by hpcapp/cli/slurm.py.)"""

_INTRO_SWEEP = """\
# hpcapp parameter sweep: a job array in which array task N runs line N of a task file (one
# hpcapp command per line, each writing its own output file). Each task is an MPI job of its
# own with the resources below, and requeues itself at the time limit like slurm/job.sbatch.
#
#   for seed in 1 2 3 4; do
#       echo "run montecarlo -o pi-$seed.h5 -p samples=4000000000 -p seed=$seed"
#   done > pi.tasks
#   sbatch --array=1-4 slurm/sweep.sbatch pi.tasks
#
# Documentation: slurm/README.md. (This file is rendered by hpcapp/cli/slurm.py.)"""

_INTRO_COMMAND = """\
# hpcapp batch job written by `hpcapp slurm`: submit it with `sbatch THIS_FILE`.
# At the time limit hpcapp saves a checkpoint and the job requeues itself to finish.
# Documentation: slurm/README.md in the hpcapp repository."""


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    """The #SBATCH settings of one script."""

    job_name: str = "hpcapp"
    nodes: int = 1
    ntasks: int | None = None
    ntasks_per_node: int | None = None
    cpus_per_task: int = 1
    memory_per_rank: int | None = None  # bytes a rank needs (estimated): --mem-per-cpu
    time: str = "01:00:00"
    partition: str | None = None
    account: str | None = None
    chdir: str | None = None
    array: str | None = None


def time_limit_seconds(text: str) -> int:
    """Return the seconds of a SLURM time limit: M, M:S, H:M:S, D-H, D-H:M or D-H:M:S."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+(?::\d+){0,2})", text.strip())
    if not match:
        raise UsageError(
            f"--time {text!r}: use a SLURM time limit: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or "
            "D-HH:MM:SS (e.g. 90 or 1:30:00 for an hour and a half)"
        )
    days, clock = match.groups()
    parts = [int(part) for part in clock.split(":")]
    if days is None:  # M, M:S, H:M:S
        hours, minutes, seconds = [(0, parts[0], 0), (0, *parts), tuple(parts)][len(parts) - 1]
    else:  # D-H, D-H:M, D-H:M:S
        hours, minutes, seconds = (*parts, 0, 0)[:3]
    total = ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise UsageError(f"--time {text!r}: the time limit must be positive")
    return total


def describe_seconds(total: int) -> str:
    """Return a time limit in words: ``1 min 30 s``, ``2 d 3 h``, ``12 h``."""
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (seconds, "s")]
    return " ".join(f"{value} {unit}" for value, unit in parts if value)


def signal_lead(time_limit: int) -> int:
    """Return how many seconds before the limit to signal: SIGNAL_LEAD, less for short jobs."""
    return max(1, min(SIGNAL_LEAD, time_limit // 4))


def _sbatch_value(option: str, value: str) -> str:
    """Return ``value`` as written on an #SBATCH line (sbatch understands double quotes)."""
    if not value or any(c in value for c in '"\\\n\r'):
        raise UsageError(f"--{option} {value!r}: empty, or contains a quote or backslash")
    return f'"{value}"' if re.search(r"\s", value) else value


def _sbatch_lines(options: BatchOptions) -> str:
    """Return the resource #SBATCH lines, one per option that is set."""
    for name in ("nodes", "ntasks", "ntasks_per_node", "cpus_per_task"):
        value = getattr(options, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if options.ntasks is not None and options.ntasks < options.nodes:
        raise UsageError(f"--ntasks {options.ntasks} is less than --nodes {options.nodes}")
    time_limit_seconds(options.time)
    lines = []
    for field in dataclasses.fields(options):
        value = getattr(options, field.name)
        if value is None:
            continue
        if field.name == "memory_per_rank":
            lines += memory_lines(value, options.cpus_per_task)
            continue
        option = field.name.replace("_", "-")
        if field.name == "cpus_per_task":
            lines.append("# Cores per rank: each rank runs this many numpy (OpenMP/BLAS) threads.")
        if field.name == "time":
            limit = describe_seconds(time_limit_seconds(value))
            lines.append(f"# time limit {value} = {limit}")
        if field.name == "array":
            lines.append("# One array task per line of the task file (1-4%2: at most 2 at a time).")
        lines.append(f"#SBATCH --{option}={_sbatch_value(option, str(value))}")
    return "\n".join(lines)


def memory_request(per_rank: int, cpus_per_task: int) -> int:
    """Return the bytes to ask per CPU for ranks that need ``per_rank`` bytes each."""
    per_cpu = per_rank * MEMORY_HEADROOM / cpus_per_task
    return math.ceil(per_cpu / MEMORY_STEP) * MEMORY_STEP


def memory_lines(per_rank: int, cpus_per_task: int) -> list[str]:
    """Return the comment and the ``#SBATCH --mem-per-cpu`` line for the estimate."""
    asked = memory_request(per_rank, cpus_per_task) >> 20
    value = f"{asked >> 10}G" if asked % 1024 == 0 else f"{asked}M"
    cores = f"{cpus_per_task} cores" if cpus_per_task > 1 else "1 core"
    text = (
        f"Memory: hpcapp estimates {per_rank / (1 << 20):,.0f} MiB per rank for this job (what "
        f"`run --memory-per-rank` checks); the request adds {MEMORY_HEADROOM - 1:.0%} headroom "
        f"and is per core ({cores} per rank). If SLURM ends the job OUT_OF_MEMORY, submit it "
        "with more: sbatch --mem-per-cpu=SIZE THIS_FILE."
    )
    return [f"# {line}" for line in textwrap.wrap(text, 96)] + [f"#SBATCH --mem-per-cpu={value}"]


def _fill(template: str, values: dict[str, str]) -> str:
    """Replace every {{name}} in ``template``; a slot without a value is a bug."""
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], template)


def render_script(
    options: BatchOptions, what: str, intro: str, python: str, launcher: str = "srun"
) -> str:
    """Return a batch script: ``what`` is the block that sets HPCAPP_ARGS."""
    if launcher not in LAUNCHERS:
        raise UsageError(f"--launcher must be one of {', '.join(LAUNCHERS)}, not {launcher!r}")
    log = "%x-%A_%a.out" if options.array else "%x-%j.out"
    return _fill(
        _TEMPLATE,
        {
            "intro": intro,
            "sbatch": _sbatch_lines(options),
            "lead": str(signal_lead(time_limit_seconds(options.time))),
            "log": log,
            "python": python,
            "launcher": launcher,
            "what": what,
            "max_requeues": str(MAX_REQUEUES),
        },
    )


def render_command_script(
    options: BatchOptions, command: list[str], python: str, launcher: str = "srun"
) -> str:
    """Return the batch script that runs ``hpcapp COMMAND...`` (what ``hpcapp slurm`` writes)."""
    what = _fill(_WHAT_COMMAND, {"command": " ".join(shlex.quote(word) for word in command)})
    return render_script(options, what, _INTRO_COMMAND, shlex.quote(python), launcher)


# The scripts in the repository's slurm/ directory: file name -> (options, what, intro).
EXAMPLES: dict[str, tuple[BatchOptions, str, str]] = {
    "job.sbatch": (
        BatchOptions(nodes=2, ntasks_per_node=32, time="01:00:00"),
        _WHAT_ARGUMENTS,
        _INTRO_JOB,
    ),
    "sweep.sbatch": (
        BatchOptions(nodes=1, ntasks=8, time="00:30:00", job_name="hpcapp-sweep", array="1-4"),
        _WHAT_TASK_FILE,
        _INTRO_SWEEP,
    ),
}


def example_scripts() -> dict[str, str]:
    """Return the text of every script in the repository's slurm/ directory, by file name."""
    return {
        name: render_script(options, what, intro, "python3")
        for name, (options, what, intro) in EXAMPLES.items()
    }


def write_examples(directory: str | os.PathLike[str]) -> list[Path]:
    """Write the example scripts into ``directory`` (the repository's slurm/); return them."""
    written = []
    for name, text in example_scripts().items():
        path = Path(directory) / name
        path.write_text(text)
        path.chmod(0o755)
        written.append(path)
    return written
