"""The commands: validate on rank 0, run the engine on all ranks, write and report on rank 0."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from hpcapp import checkpoint
from hpcapp.collective import count_hosts, on_all, on_root
from hpcapp.config import JobConfig
from hpcapp.engine import TIMING_COLUMNS, CheckpointPlan, EngineResult, run_engine
from hpcapp.errors import UsageError
from hpcapp.interrupt import Interrupts
from hpcapp.io.dims import identity as dims_identity
from hpcapp.io.dims import plan_dims, refuse_netcdf3
from hpcapp.io.memory import check_memory
from hpcapp.io.output import make_layout
from hpcapp.kernels.api import Kernel
from hpcapp.kernels.nd import bind_over
from hpcapp.kernels.registry import load_kernel
from hpcapp.launch import thread_warning
from hpcapp.partition import count_chunks, default_chunk_rows, subtract
from hpcapp.slurm import slurm_context
from hpcapp.source import Source, generated, inspect_input
from hpcapp.writer import DEMO_ATTR, check_output, iso_utc, params_json, write_output

DEMO_OUTPUT = "hpcapp-result.h5"
DEMO_ROWS, DEMO_COLS = 12_500_000, 8  # 10**8 float64 values, 800 MB
DEMO_RANGE = [-5.0, 5.0]
GENERATED_CHUNK_ROWS = 1 << 20
SUMMARY_CELLS = 20  # results with more cells (N-D) print the first few


def say(comm: Any, text: str, stream: Any = None) -> None:
    """Print on rank 0 only."""
    if comm.Get_rank() == 0:
        print(text, file=stream or sys.stdout, flush=True)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything rank 0 decided before the work starts (small and picklable)."""

    source: Source
    params: dict[str, Any]
    chunk_rows: int
    identity: dict[str, Any]
    checkpoint_dir: str
    resume_generation: int | None = None  # None: start fresh
    resume_parts: tuple[str, ...] = ()
    finished: bool = False  # --resume, and the output already holds this job's result


def _plan(config: JobConfig, kernel: Kernel) -> Plan:
    """Check everything about a run before any work (rank 0): params, input, output."""
    params = kernel.check_params(config.params)
    if kernel.generates:
        if config.input:
            raise UsageError(f"kernel {config.kernel!r} generates its data: it takes no INPUT")
        n_rows = params.get(kernel.rows_param) if kernel.rows_param else None
        if not isinstance(n_rows, int) or isinstance(n_rows, bool):
            raise UsageError(f"kernel {config.kernel!r}: -p {kernel.rows_param} must be an integer")
        source = generated(n_rows)
    else:
        if not config.input:
            raise UsageError(f"kernel {config.kernel!r} needs an INPUT: FILE.h5:/path/to/dataset")
        refuse_netcdf3(config.input)
        source = inspect_input(config.input)
    source, params, kernel = plan_dims(config, kernel, source, params)  # N-D: names, --over
    if kernel.per_row and config.distribute == "scatter":
        raise UsageError(
            f"kernel {config.kernel!r} has per-row outputs, which need every rank to read its "
            "own chunks: drop --distribute scatter"
        )
    if config.chunk_rows is not None:
        chunk_rows = config.chunk_rows
    elif kernel.generates:
        chunk_rows = GENERATED_CHUNK_ROWS
    else:
        chunk_rows = default_chunk_rows(source.row_bytes, source.storage_chunk_rows)
    identity = checkpoint.job_identity(config.kernel, params_json(params), source, chunk_rows)
    identity.update(dims_identity(source))
    n_chunks = count_chunks(source.n_rows, chunk_rows)
    check_memory(config.memory_per_rank, kernel, source, params, chunk_rows, n_chunks)
    directory = config.checkpoint or checkpoint.default_path(config.output)
    plan = Plan(source, params, chunk_rows, identity, directory)
    if config.resume and _holds_result(config.output, identity):
        return dataclasses.replace(plan, finished=True)
    manifest = checkpoint.read_manifest(directory)
    if manifest is not None and not config.resume:
        if not config.overwrite:
            raise UsageError(
                f"a checkpoint of an unfinished run is in {directory}: add --resume to continue "
                "it, or --overwrite to discard it and start over"
            )
        checkpoint.remove(directory)
        manifest = None
    check_output(config.output, config.overwrite, source.path)
    if manifest is None:
        return plan
    checkpoint.check_identity(directory, manifest["job"], identity)
    if kernel.per_row and not Path(checkpoint.rows_path(directory)).is_file():
        raise UsageError(
            f"checkpoint {directory!r} has lost its per-row outputs (rows.h5): "
            "run with --overwrite instead of --resume to start over"
        )
    generation = int(manifest["generation"])
    parts = tuple(checkpoint.list_parts(directory, generation))
    return dataclasses.replace(plan, resume_generation=generation, resume_parts=parts)


def _holds_result(output: str, identity: dict[str, Any]) -> bool:
    """Return True if ``output`` is the finished result of the job described by ``identity``."""
    import h5py

    if not Path(output).is_file():
        return False
    try:
        with h5py.File(output, "r", locking=False) as h5:
            return json.loads(h5.attrs.get("job_identity", "{}")) == identity
    except (OSError, ValueError):
        return False


def _prepare_checkpoint(comm: Any, plan: Plan, n_chunks: int) -> tuple[dict, Any, int]:
    """Start a checkpoint, or load one: returns (this rank's nodes, chunks to do, generation).

    On resume every rank loads a share of the saved parts, then all write them again as a new
    generation, which becomes current only when rank 0 rewrites the manifest: an interruption
    at any point leaves one complete generation to resume from.
    """
    directory = plan.checkpoint_dir
    if plan.resume_generation is None:
        on_root(comm, lambda: checkpoint.write_manifest(directory, plan.identity, 0))
        return {}, None, 0
    rank, size = comm.Get_rank(), comm.Get_size()
    mine = plan.resume_parts[rank::size]

    def load() -> dict:
        nodes: dict = {}
        for path in mine:
            nodes.update(checkpoint.read_part(Path(path)))
        return nodes

    nodes = on_all(comm, load)
    all_nodes = [node for rank_nodes in comm.allgather(list(nodes)) for node in rank_nodes]
    todo = subtract(n_chunks, checkpoint.node_intervals(all_nodes))
    generation = plan.resume_generation + 1
    on_all(comm, lambda: checkpoint.write_part(directory, generation, rank, nodes))

    def commit() -> None:
        checkpoint.write_manifest(directory, plan.identity, generation)
        checkpoint.remove_generation(directory, generation - 1)

    on_root(comm, commit)
    return nodes, todo, generation


def run_job(comm: Any, config: JobConfig, extra_attrs: dict[str, Any] | None = None) -> int:
    """``hpcapp run``: the whole job, collective over ``comm``. Returns the exit code."""
    from mpi4py import MPI

    with Interrupts() as interrupts:
        started = on_root(comm, time.time)
        # Every rank imports the kernel once; a failure anywhere is reported by the lowest rank.
        kernel: Kernel = on_all(comm, lambda: load_kernel(config.kernel))
        plan = on_root(comm, lambda: _plan(config, kernel))
        kernel = bind_over(kernel, plan.params)  # built-in stats over records: per-row outputs
        if plan.finished:
            say(
                comm,
                f"hpcapp: {config.output} already holds the result of this job: nothing to resume",
            )
            return 0
        hosts, ranks_per_node = count_hosts(comm)
        warning = thread_warning(ranks_per_node)
        if warning:
            say(comm, f"hpcapp: {warning}", sys.stderr)
        n_chunks = count_chunks(plan.source.n_rows, plan.chunk_rows)
        nodes, todo, generation = _prepare_checkpoint(comm, plan, n_chunks)
        if plan.resume_generation is not None:
            left = sum(stop - start for start, stop in todo)
            say(
                comm,
                f"hpcapp: resuming from {plan.checkpoint_dir}: {n_chunks - left} of "
                f"{n_chunks} chunks were done",
            )
        result = run_engine(
            comm,
            kernel,
            plan.params,
            plan.source,
            plan.chunk_rows,
            config.distribute,
            todo=todo,
            preloaded=nodes,
            interrupts=interrupts,
            checkpoint=CheckpointPlan(plan.checkpoint_dir, generation, config.checkpoint_every),
            schedule=config.schedule,
            rows_path=checkpoint.rows_path(plan.checkpoint_dir),
            compression=config.compression,
            progress_every=None if config.quiet else config.progress_every,
        )

        def write() -> None:
            from hpcapp import __version__

            source = plan.source
            attrs = {
                "hpcapp_version": __version__,
                "kernel": config.kernel,
                "params": params_json(plan.params),
                "input": source.spec,
                "input_shape": [source.n_rows, *source.row_shape] if source.path else [],
                "input_dtype": source.dtype if source.path else "none",
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
                **slurm_context(),
                **(extra_attrs or {}),
            }
            assert result.results is not None and result.timing is not None
            write_output(
                config.output,
                result.results,
                attrs,
                result.timing,
                TIMING_COLUMNS,
                TIMING_COLUMNS.index("write"),
                started,
                base=checkpoint.rows_path(plan.checkpoint_dir) if kernel.per_row else None,
                layout=make_layout(plan.source, plan.params, kernel),
            )
            checkpoint.remove(plan.checkpoint_dir)

        on_root(comm, write)
    if comm.Get_rank() == 0:
        print(
            summary(
                config, plan.source, plan.chunk_rows, result, time.time() - started, comm.Get_size()
            )
        )
    return 0


def summary(
    config: JobConfig,
    source: Source,
    chunk_rows: int,
    result: EngineResult,
    wall: float,
    n_ranks: int,
) -> str:
    """Return the short report rank 0 prints at the end of a run."""
    import numpy as np

    assert result.results is not None and result.timing is not None
    rows = int(result.timing[:, TIMING_COLUMNS.index("rows")].sum())
    resumed = "" if rows == source.n_rows else f" ({rows:,} computed in this run)"
    lines = [
        f"hpcapp: {config.kernel} on {source.spec}: {source.n_rows:,} rows{resumed} in "
        f"{result.n_chunks} chunks "
        f"of {chunk_rows:,} rows, {n_ranks} ranks, {wall:.2f} s",
    ]
    results = result.results
    if {"mean", "std", "min", "max", "count"} <= results.keys():
        columns = np.size(results["mean"])
        shown = columns if columns <= SUMMARY_CELLS else SUMMARY_CELLS - 1  # N-D: a few cells
        lines.append(
            f"  {'column':>6} {'count':>12} {'mean':>12} {'std':>12} {'min':>12} {'max':>12}"
        )
        for col in range(shown):
            values = [np.ravel(results[key])[col] for key in ("count", "mean", "std", "min", "max")]
            lines.append(
                f"  {col:>6} {int(values[0]):>12,} "
                + " ".join(f"{float(v):>12.6g}" for v in values[1:])
            )
        if shown < columns:
            lines.append(f"  ... {columns:,} cells of shape {np.shape(results['mean'])}")
    else:
        with np.printoptions(threshold=8, precision=6):
            for key, value in results.items():
                lines.append(f"  {key} = {value}")
    busy = result.timing[:, 0] + result.timing[:, 1]
    lines.append(
        f"  busy seconds per rank (read+compute): min {busy.min():.3f} mean {busy.mean():.3f} "
        f"max {busy.max():.3f}"
    )
    lines.append(f"  wrote {config.output}")
    return "\n".join(lines)


def run_generate_command(comm: Any, config: Any) -> int:
    """``hpcapp generate``: write a synthetic dataset; collective."""
    from hpcapp.generate import run_generate

    clock = time.time()
    path = run_generate(comm, config)
    say(
        comm,
        f"hpcapp: wrote {config.target} {config.shape} {config.dtype} "
        f"({config.dist}, seed {config.seed}) in {time.time() - clock:.2f} s",
    )
    return 0 if path else 1


def run_demo(comm: Any) -> int:
    """The no-argument job: statistics of 10**8 generated values, written to hpcapp-result.h5."""
    from hpcapp.generate import GenerateConfig, run_generate

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
        f"on {comm.Get_size()} ranks, then computing per-column statistics",
    )
    try:
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
        config = JobConfig(
            kernel="stats",
            input=f"{scratch}:/demo",
            output=DEMO_OUTPUT,
            overwrite=True,
            params={"bins": 50, "range": DEMO_RANGE},
        )
        return run_job(comm, config, extra_attrs={DEMO_ATTR: True})
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
