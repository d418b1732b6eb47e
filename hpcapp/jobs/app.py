"""The commands: validate on rank 0, run the engine on all ranks, write and report on rank 0."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from hpcapp.errors import UsageError, WriteError
from hpcapp.io import checkpoint
from hpcapp.io.files import is_many
from hpcapp.io.labels import with_group_coordinates
from hpcapp.io.output import make_layout
from hpcapp.io.records import with_grid
from hpcapp.io.results import read_results, read_within
from hpcapp.io.sources.hdf5 import preload
from hpcapp.io.variables import split_variables
from hpcapp.io.writer import DEMO_ATTR, OutputError, iso_utc, params_json, write_output
from hpcapp.jobs.config import JobConfig
from hpcapp.jobs.inspect import inspect_many
from hpcapp.jobs.multivar import execute_several, several_summary
from hpcapp.jobs.plan import (
    ROWS_GATHERED,
    Plan,
    agree_on_code,
    bind_data,
    plan_job,
    prepare_checkpoint,
)
from hpcapp.jobs.provenance import load_with_code
from hpcapp.jobs.report import summary
from hpcapp.jobs.series import series_engine, series_line, series_notes
from hpcapp.jobs.twopass import climatology_first, wants_climatology
from hpcapp.kernels.api import Kernel
from hpcapp.kernels.grouped import group_kernel
from hpcapp.parallel.collective import count_hosts, duplicate, on_all, on_root
from hpcapp.parallel.engine import TIMING_COLUMNS, CheckpointPlan, EngineResult, run_engine
from hpcapp.parallel.interrupt import Interrupts
from hpcapp.parallel.launch import Startup, slurm_context, thread_warning
from hpcapp.partition import count_chunks
from hpcapp.text import plural

if TYPE_CHECKING:
    from mpi4py import MPI

DEMO_OUTPUT = "hpcapp-result.h5"
DEMO_ROWS, DEMO_COLS = 12_500_000, 8  # 10**8 float64 values, 800 MB
DEMO_RANGE = [-5.0, 5.0]


def say(comm: MPI.Comm, text: str, stream: TextIO | None = None) -> None:
    """Print on rank 0 only."""
    if comm.Get_rank() == 0:
        print(text, file=stream or sys.stdout, flush=True)


@dataclasses.dataclass
class Outcome:
    """What :func:`execute` hands back: rank 0 has the results, the others ``None``."""

    plan: Plan
    results: dict[str, Any] | None
    engine: EngineResult | None  # None when --resume found the job already finished
    started: float
    finished_already: bool = False
    labelled: Any = None  # rank 0: what ``execute(opener=...)`` made of the written file


def execute(
    comm: MPI.Comm,
    config: JobConfig,
    extra_attrs: dict[str, Any] | None = None,
    kernel_and_code: tuple[Kernel, dict[str, Any]] | None = None,
    warn_threads: bool = True,
    startup: Startup | None = None,
    read_back: bool = False,
    opener: Callable[[str], Any] | None = None,
) -> Outcome:
    """Run a whole job, collective over ``comm``: plan, compute, and write unless no output.

    Errors are raised on every rank alike (``collective``). ``kernel_and_code`` gives a kernel
    already loaded (``hpcapp.run`` with a function); by default every rank imports
    ``config.kernel``. ``startup`` is what the entry point recorded (the start-up column then
    counts from the process's start). The job communicates on a duplicate of ``comm``, freed at
    the end: its fixed tags and ``ANY_SOURCE`` probes never meet the caller's own messages.

    ``read_back`` (``hpcapp.run``): rank 0's results include the per-row outputs, read back from
    the file (at most ``ROWS_GATHERED`` bytes of them; beyond, a warning says they stay in the
    output). Without an output they then go through rank 0 to a scratch file on its own disk
    (``ROWS_GATHERED`` at most, else the job is refused), deleted at the end. ``opener`` is
    called on rank 0 with the written file (the output, or the scratch file written for it) and
    its value is ``Outcome.labelled``.
    """
    specs = split_variables(config.input)
    if len(specs) > 1:  # FILE:/tas,/pr: a pass per variable, one output (jobs/multivar.py)
        return execute_several(
            comm, config, specs, (execute, _provenance, Outcome), extra_attrs, kernel_and_code,
            warn_threads, startup, opener,
        )  # fmt: skip
    with duplicate(comm) as comm, Interrupts() as interrupts, ExitStack() as cleanup:
        # One clock for the report and the file's wall_seconds: from the process's start, when
        # the entry point recorded it (start-up is counted from there too).
        began = startup.process_started if startup is not None else None
        started = on_root(comm, lambda: began or time.time())
        # Every rank imports the kernel once; a failure anywhere is reported by the lowest rank.
        kernel, code = kernel_and_code or on_all(comm, lambda: load_with_code(config.kernel))
        agree_on_code(comm, code)
        if wants_climatology(config, kernel):  # --group-by: the climatology first (issue 22)
            config = climatology_first(comm, config, kernel, execute)
        if config.input and not kernel.generates and comm.Get_rank() != 0:
            preload()  # while rank 0 opens the input
        source = None
        if is_many(config.input) and not kernel.generates:
            # Every rank inspects some of the files (and their --group-by labels).
            source = inspect_many(
                comm, config.input, config.group_by, config.sort_files, config.mask_valid_range
            )
        size = comm.Get_size()
        plan = on_root(comm, lambda: plan_job(config, kernel, code, source, ranks=size))
        # Over records per row, --weights, --mask, --regions: the kernel with its fields bound.
        kernel = bind_data(kernel, plan.params, plan.weights, plan.zones)
        kernel = with_grid(kernel, plan.records)  # coords=True: what its chunks' coords share
        described = kernel  # the output describes the kernel's own results
        if plan.grouping is not None:
            # Results lead with a group axis; no count exceeds the input's records.
            kernel = group_kernel(kernel, plan.grouping.key, plan.source.n_rows)
        if plan.finished:
            finished = config.output
            assert finished is not None  # only a job with an output can be found finished
            results = on_root(comm, lambda: read_results(finished))
            labelled = on_root(comm, lambda: opener(finished)) if opener else None
            return Outcome(plan, results, None, started, True, labelled)
        scratch = None
        if config.output is None and ((read_back and kernel.per_row) or opener is not None):
            scratch = on_root(comm, lambda: tempfile.mkdtemp(prefix="hpcapp-run-"))
        if scratch is not None and comm.Get_rank() == 0:
            cleanup.callback(shutil.rmtree, scratch, ignore_errors=True)
        hosts, ranks_per_node = count_hosts(comm)
        warning = thread_warning(ranks_per_node) if warn_threads else None
        if warning:
            say(comm, f"hpcapp: {warning}", sys.stderr)
        n_chunks = count_chunks(plan.source.n_rows, plan.chunk_rows)
        nodes: dict = {}
        todo: Any = None
        generation = 0
        if not kernel.series:  # a series job keeps its batches of cells (jobs/series.py)
            nodes, todo, generation = prepare_checkpoint(comm, plan, n_chunks)
        if plan.resume_generation is not None and not config.quiet and not kernel.series:
            left = sum(stop - start for start, stop in todo)
            say(
                comm,
                f"hpcapp: resuming from {plan.checkpoint_dir}: {n_chunks - left} of "
                f"{n_chunks} chunks were done",
            )
        directory = plan.checkpoint_dir
        rows_path = directory and checkpoint.rows_path(directory)
        if scratch is not None:  # hpcapp.run, no output: rows go through rank 0 to its disk
            rows_path = os.path.join(scratch, "rows.h5")
        target = config.output or (scratch and os.path.join(scratch, "result.nc"))
        kept = checkpoint.ResultKeeper(directory, plan.identity, generation, n_chunks)
        # A series kernel's whole series come from record chunks by a transpose.
        engine = series_engine(config, plan) if kernel.series else run_engine
        result = engine(
            comm,
            kernel,
            plan.params,
            plan.source,
            plan.chunk_rows,
            config.distribute,
            todo=todo,
            grouping=plan.grouping,
            records=plan.records,
            preloaded=nodes,
            interrupts=interrupts,
            checkpoint=(
                CheckpointPlan(directory, generation, config.checkpoint_every)
                if directory
                else None
            ),
            schedule=config.schedule,
            rows_path=rows_path,
            rows_limit=ROWS_GATHERED if scratch is not None else None,
            compression=config.compression,
            progress_every=None if config.quiet else config.progress_every,
            # Nothing to keep when nothing was computed: the checkpoint holds it all already.
            keep=kept if directory and config.output and todo != [] else None,
            process_started=None if startup is None else startup.process_started,
        )
        if plan.grouping is not None and result.results is not None:
            result.results = with_group_coordinates(result.results, plan.grouping)
        if target:
            attrs = _provenance(comm, config, plan, result, hosts, started, extra_attrs)

            def write() -> None:
                assert result.results is not None and result.timing is not None
                assert target
                try:
                    seconds = write_output(
                        target,
                        result.results,
                        attrs,
                        result.timing,
                        TIMING_COLUMNS,
                        TIMING_COLUMNS.index("write"),
                        started,
                        base=rows_path if kernel.per_row else None,
                        layout=make_layout(
                            plan.source, plan.params, described, plan.grouping, plan.zones
                        ),
                    )
                except OutputError as exc:
                    raise WriteError(exc.describe(directory or target, kept.failure)) from None
                result.timing[0, TIMING_COLUMNS.index("write")] += seconds  # for the report
                if directory:
                    checkpoint.remove(directory)

            on_root(comm, write)
        if read_back and kernel.per_row and target:
            on_root(comm, lambda: _read_rows(result.results, target, kernel.per_row))
        labelled = on_root(comm, lambda: opener(target)) if opener and target else None
    return Outcome(plan, result.results, result, started, labelled=labelled)


def _read_rows(results: dict[str, Any] | None, path: str, keys: tuple[str, ...]) -> None:
    """Rank 0: add the per-row outputs of ``path`` to ``results``, as many as fit in memory."""
    assert results is not None
    found, left = read_within(path, keys, ROWS_GATHERED)
    results.update(found)
    if left:
        warnings.warn(
            f"per-row results {', '.join(left)} are larger than {ROWS_GATHERED / 2**20:,.0f} "
            f"MiB: not returned, read them from {path} (as_xarray=True opens it lazily)",
            stacklevel=4,
        )


def _provenance(
    comm: MPI.Comm,
    config: JobConfig,
    plan: Plan,
    result: EngineResult,
    hosts: int,
    started: float,
    extra_attrs: dict[str, Any] | None,
) -> dict[str, Any]:
    """Return the root attributes of the output file: what ran, on what, how, where."""
    from mpi4py import MPI

    from hpcapp import __version__

    source = plan.source
    return {
        "hpcapp_version": __version__,
        "kernel": config.kernel,
        "params": params_json(plan.params),
        **source.provenance(),  # input, input_file_count, input_shape, input_dtype, cf_decoding
        "chunk_rows": plan.chunk_rows,
        "n_chunks": result.n_chunks,
        "n_ranks": comm.Get_size(),
        "distribute": config.distribute,
        "schedule": config.schedule,
        "mpi_library": MPI.Get_library_version().splitlines()[0].strip(),
        "hosts": hosts,
        "started": iso_utc(started),
        "command": " ".join(["hpcapp", *sys.argv[1:]]),
        "resumed": plan.resume_generation is not None,
        "job_identity": json.dumps(plan.identity, sort_keys=True),
        **({"grouping": plan.grouping.option} if plan.grouping is not None else {}),
        **({"weights": plan.weights.method} if plan.weights is not None else {}),
        **({"mask": config.mask} if config.mask else {}),
        **({"regions": config.regions} if config.regions else {}),
        **slurm_context(),
        **series_notes(result),  # a series job: its batches and bytes read
        **(extra_attrs or {}),
    }


def run_job(
    comm: MPI.Comm,
    config: JobConfig,
    extra_attrs: dict[str, Any] | None = None,
    startup: Startup | None = None,
) -> int:
    """``hpcapp run``: the whole job, collective over ``comm``; rank 0 prints the summary."""
    outcome = execute(comm, config, extra_attrs, startup=startup, warn_threads=not config.quiet)
    if config.quiet:  # -q: errors only
        return 0
    if outcome.finished_already:
        say(
            comm, f"hpcapp: {config.output} already holds the result of this job: nothing to resume"
        )
        return 0
    if comm.Get_rank() == 0:
        assert outcome.engine is not None
        wall = time.time() - outcome.started
        plan = outcome.plan
        note = None if startup is None else startup.thread_note
        size = comm.Get_size()
        known = startup is not None and startup.process_started is not None
        report = summary(
            config,
            plan.source,
            plan.chunk_rows,
            outcome.engine,
            wall,
            size,
            note,
            known,
            weights=plan.weights.method if plan.weights is not None else None,
            regions=plan.zones.regions.describe() if plan.zones and plan.zones.regions else None,
        )
        if config.input and len(split_variables(config.input)) > 1:
            report = several_summary(report, plan.source, config.input)
        print(report + series_line(outcome.engine))
    return 0


def run_generate_command(comm: MPI.Comm, config: Any) -> int:
    """``hpcapp generate``: write a synthetic dataset; collective."""
    from hpcapp.jobs.generate import run_generate

    clock = time.time()
    path = run_generate(comm, config)
    say(
        comm,
        f"hpcapp: wrote {config.target} {config.shape} {config.dtype} "
        f"({config.dist}, seed {config.seed}) in {time.time() - clock:.2f} s",
    )
    return 0 if path else 1


def run_demo(comm: MPI.Comm, startup: Startup | None = None) -> int:
    """The no-argument job: statistics of 10**8 generated values, written to hpcapp-result.h5."""
    from hpcapp.jobs.generate import GenerateConfig, run_generate

    def check_demo_output() -> None:
        out = Path(DEMO_OUTPUT)
        if out.exists() and not _is_demo_result(out):
            raise UsageError(
                f"{DEMO_OUTPUT} exists and was not written by the demo: "
                "move it away, or run the demo in another directory"
            )

    on_root(comm, check_demo_output)
    scratch = on_root(comm, lambda: f".hpcapp-demo-input-{os.getpid()}.h5")
    say(
        comm,
        f"hpcapp demo: generating {DEMO_ROWS:,} x {DEMO_COLS} normal float64 values "
        f"on {plural(comm.Get_size(), 'rank')}, then computing per-column statistics",
    )
    try:
        generating = time.time()
        run_generate(
            comm,
            GenerateConfig(
                target=f"{scratch}:/demo",
                rows=DEMO_ROWS,
                cols=DEMO_COLS,
                dist="normal",
                seed=2026,
            ),
        )
        if startup is not None and startup.process_started is not None:
            # Making the demo's input is not the stats job's start-up: leave it out.
            began = startup.process_started + time.time() - generating
            startup = dataclasses.replace(startup, process_started=began)
        config = JobConfig(
            kernel="stats",
            input=f"{scratch}:/demo",
            output=DEMO_OUTPUT,
            overwrite=True,
            params={"bins": 50, "range": DEMO_RANGE},
        )
        return run_job(comm, config, extra_attrs={DEMO_ATTR: True}, startup=startup)
    finally:
        comm.Barrier()
        if comm.Get_rank() == 0 and os.path.exists(scratch):
            os.unlink(scratch)


def _is_demo_result(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            return bool(h5.attrs.get(DEMO_ATTR, False))
    except OSError:
        return False
