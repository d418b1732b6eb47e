"""Plan a job before any work: check params, input, output and checkpoint on rank 0.

Everything here runs before the first chunk. ``plan_job`` is rank 0's check (pure: no MPI, so
``hpcapp slurm`` runs it before writing a batch script); ``prepare_checkpoint`` and
``agree_on_code`` are the collective steps that follow it on every rank.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcapp.errors import UsageError
from hpcapp.io import checkpoint, space
from hpcapp.io.dims import plan_dims
from hpcapp.io.labels import in_group_order, plan_grouping
from hpcapp.io.memory import check_memory, estimate
from hpcapp.io.records import halo_chunk_rows, plan_records, with_grid
from hpcapp.io.regions import Zones, load_zones
from hpcapp.io.sources.base import Source
from hpcapp.io.sources.generated import generated
from hpcapp.io.sources.selected import select_source
from hpcapp.io.sources.specs import inspect_spec
from hpcapp.io.weights import Weights, load_weights
from hpcapp.io.writer import check_output, params_json
from hpcapp.jobs.config import JobConfig
from hpcapp.jobs.provenance import check_identity, digest_of, disagreement, holds_result
from hpcapp.jobs.series import plan_series_checkpoint, refuse_series, series_budget
from hpcapp.kernels.api import InputInfo, Kernel
from hpcapp.kernels.nd import bind_over, stats
from hpcapp.kernels.weighted import bind_weights
from hpcapp.kernels.zonal import bind_mask, bind_regions
from hpcapp.parallel.collective import on_all, on_root, raise_shared
from hpcapp.parallel.reduce import find_overlap, overlap_message
from hpcapp.parallel.rows import gathered_problem
from hpcapp.partition import count_chunks, cyclic_chunk_rows, subtract

# hpcapp.run without an output gathers per-row outputs in rank 0's memory: at most this much.
ROWS_GATHERED = 2**30

if TYPE_CHECKING:
    from mpi4py import MPI


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything rank 0 decided before the work starts (small and picklable)."""

    source: Source
    params: dict[str, Any]
    chunk_rows: int
    identity: dict[str, Any]
    checkpoint_dir: str | None  # None: no output file, so no checkpoint (hpcapp.run only)
    resume_generation: int | None = None  # None: start fresh
    resume_parts: tuple[str, ...] = ()
    finished: bool = False  # --resume, and the output already holds this job's result
    grouping: Any = None  # an hpcapp.io.labels.Grouping: --group-every / --group-by
    memory: dict[str, int] | None = (
        None  # a rank's memory estimate (plan_job(estimate_memory=True))
    )
    weights: Weights | None = None  # --weights: the weights of one record, and their method
    zones: Zones | None = None  # --mask, --regions
    records: Any = None  # an hpcapp.io.records.RecordNeeds: dates, halo (kernels declaring them)


@dataclasses.dataclass(frozen=True)
class Resolved:
    """What the data options make of a job: the input, the parameters, the kernel, the groups."""

    source: Source
    params: dict[str, Any]  # the kernel's, with ``over`` for a kernel declared over=True
    kernel: Kernel  # the kernel to run (bind_over: built-in stats over records, per row)
    grouping: Any  # an hpcapp.io.labels.Grouping, or None
    weights: Weights | None = None  # --weights
    zones: Zones | None = None  # --mask, --regions


def check_weighted(config: JobConfig, kernel: Kernel) -> None:
    """Refuse ``--weights``/``--mask``/``--regions`` with another kernel than the built-in stats.

    A kernel declaring ``coords=True`` takes ``--weights`` in its coordinates. Histograms
    (``-p bins``/``-p range``) are refused with ``--weights`` and ``--regions``.
    """
    given = [o for o, v in (("--weights", config.weights), ("--mask", config.mask),
                            ("--regions", config.regions)) if v]  # fmt: skip
    if not given or (kernel.coords and given == ["--weights"]):
        return
    if kernel.func is not stats.func:
        raise UsageError(
            f"{given[0]} works with the built-in stats kernel only, not {config.kernel!r}"
        )
    histogram = sorted(set(config.params) & {"bins", "range"})
    if histogram and config.weights:
        raise UsageError(f"--weights: -p {histogram[0]} (histograms) is not weighted: drop it")
    if histogram and config.regions:
        raise UsageError(f"--regions: -p {histogram[0]} (histograms) is not per region: drop it")


def bind_data(
    kernel: Kernel, params: dict[str, Any], weights: Weights | None, zones: Zones | None
) -> Kernel:
    """Return the kernel a job runs: over records per row, weighted, masked or per region."""
    kernel = bind_over(kernel, params)  # built-in stats over records: per-row outputs
    # A kernel declaring coords gets the weights in its chunks' coordinates instead.
    values = weights.values if weights is not None and not kernel.coords else None
    if zones is not None and zones.regions is not None:  # the mask is in the regions' index
        found = zones.regions
        return bind_regions(kernel, found.index, found.ids, values, params)
    kernel = bind_weights(kernel, values, params)
    return bind_mask(kernel, zones.mask if zones is not None else None)


def resolve_data(config: JobConfig, kernel: Kernel, source: Source | None = None) -> Resolved:
    """Resolve the data options of ``config`` as a job runs them (rank 0; ``hpcapp check``).

    Checks the parameters, inspects the input (unless ``source`` is given), names its
    dimensions, resolves ``--over`` and the grouping; refuses what does not fit with one line.
    """
    check_weighted(config, kernel)
    params = kernel.check_params(config.params)
    if kernel.generates:
        if config.input:
            raise UsageError(f"kernel {config.kernel!r} generates its data: it takes no INPUT")
        n_rows = params.get(kernel.rows_param) if kernel.rows_param else None
        if not isinstance(n_rows, int) or isinstance(n_rows, bool):
            raise UsageError(f"kernel {config.kernel!r}: -p {kernel.rows_param} must be an integer")
        source = generated(n_rows, int(kernel.seed(params)))  # seeds each chunk's generator
    else:
        if not config.input:
            raise UsageError(f"kernel {config.kernel!r} needs an INPUT: FILE.h5:/path/to/dataset")
        if source is None:
            source = inspect_spec(
                config.input, config.group_by, config.sort_files, config.mask_valid_range
            )
    source, over = plan_dims(config, kernel, source)  # N-D: names, --over
    source = select_source(source, config.sel, config.isel)  # --sel/--isel: a box of it
    if not kernel.generates:
        # Again with the axes to reduce, the dtype the kernel will see (after CF decoding) and
        # the row shape: a kernel may refuse what the data cannot take.
        data = InputInfo(source.values_dtype, tuple(source.row_shape))
        params = kernel.check_params(config.params, data, over=over)
    weights = None
    if config.weights:  # a kernel declaring coords: weights over every dim but the records'
        every = tuple(range(1, 1 + len(source.row_shape)))
        reduced = every if kernel.coords else params["over"]
        weights = load_weights(source, config.weights, reduced)
    over = tuple(params.get("over", ()))
    zones = load_zones(source, config.mask, config.regions, over, config.mask_valid_range)
    kernel = bind_data(kernel, params, weights, zones)
    grouping = plan_grouping(config, kernel, source)  # after --over: per-row kernels refused
    return Resolved(source, params, kernel, grouping, weights, zones)


def plan_job(
    config: JobConfig,
    kernel: Kernel,
    code: dict[str, Any],
    source: Source | None = None,
    estimate_memory: bool = False,
    ranks: int = 1,
) -> Plan:
    """Check everything about a run before any work (rank 0): params, input, output.

    ``source`` is the input already inspected (many files, by every rank: see
    :func:`hpcapp.jobs.inspect.inspect_many`); by default rank 0 inspects it here.
    ``estimate_memory`` puts a rank's memory estimate in ``Plan.memory`` (``hpcapp slurm``);
    it runs the kernel on one row, so a job does it only for ``--memory-per-rank``. ``ranks``:
    how many ranks the job runs on (a grouped job's rank 0 also holds the others' nodes).
    """
    if kernel.series:
        refuse_series(config)
        series_budget(config)  # refuses a --memory-per-rank below the base
    resolved = resolve_data(config, kernel, source)
    source, params, grouping = resolved.source, resolved.params, resolved.grouping
    kernel = resolved.kernel
    if kernel.per_row and config.distribute == "scatter":
        raise UsageError(
            f"kernel {config.kernel!r} has per-row outputs, which need every rank to read its "
            "own chunks: drop --distribute scatter"
        )
    if config.compression and not kernel.per_row:  # it would be silently ignored
        raise UsageError(
            f"--compression compresses per-row outputs, and kernel {config.kernel!r} has none "
            "here: drop --compression"
        )
    if kernel.generates and config.distribute == "scatter":
        raise UsageError(
            f"kernel {config.kernel!r} generates its data on every rank: there is nothing to "
            "scatter: drop --distribute scatter"
        )
    chunk_rows = source.default_chunk_rows() if config.chunk_rows is None else config.chunk_rows
    records = plan_records(config, kernel, source, params, resolved.weights)  # dates, halo, coords
    kernel = with_grid(kernel, records)
    if grouping is not None and grouping.cycle is not None:  # a climatology
        # In group order: chunks of whole groups (not for a kernel reading records around its
        # chunk or their dates, which need them in record order).
        ordered = in_group_order(grouping, source, config.chunk_rows) if records is None else None
        if ordered is not None:
            grouping, chunk_rows = ordered
        elif config.chunk_rows is None:
            chunk_rows = cyclic_chunk_rows(
                chunk_rows, grouping.cycle, source.row_bytes, source.storage_chunk_rows
            )
    if records is not None and config.chunk_rows is None:
        chunk_rows = halo_chunk_rows(source.n_rows, chunk_rows, records.before + records.after)
    identity = checkpoint.job_identity(config.kernel, params_json(params), source, chunk_rows, code)
    if grouping is not None:
        identity["grouping"] = grouping.identity()
    if resolved.weights is not None:
        identity["weights"] = resolved.weights.identity()
    if resolved.zones is not None:
        identity.update(resolved.zones.identity())
    n_chunks = count_chunks(source.n_rows, chunk_rows)
    sizing = (kernel, source, params, chunk_rows, n_chunks, grouping, ranks)
    if not kernel.series:  # a series job sizes its batches to --memory-per-rank instead
        check_memory(config.memory_per_rank, *sizing)
    memory = None
    if estimate_memory and not kernel.generates:  # generated data: the kernel takes no rows
        memory = estimate(*sizing)
    if config.output is None:
        # hpcapp.run(output=None): results are returned, nothing is written or resumed.
        if kernel.per_row:  # gathered on rank 0: refused now when the estimate says too big
            problem = gathered_problem(
                1, space.estimate(kernel, source, params, grouping).rows, ROWS_GATHERED
            )
            if problem is not None:
                raise UsageError(f"kernel {config.kernel!r}: {problem}")
        if config.resume or config.checkpoint:
            raise UsageError("resume and checkpoint need an output file: give an output")
        return Plan(
            source,
            params,
            chunk_rows,
            identity,
            None,
            grouping=grouping,
            memory=memory,
            weights=resolved.weights,
            zones=resolved.zones,
            records=records,
        )
    directory = config.checkpoint or checkpoint.default_path(config.output)
    plan = Plan(
        source,
        params,
        chunk_rows,
        identity,
        directory,
        grouping=grouping,
        memory=memory,
        weights=resolved.weights,
        zones=resolved.zones,
        records=records,
    )
    if kernel.series:  # its checkpoint keeps finished batches of cells (jobs/series.py)
        finished, kept = plan_series_checkpoint(config, source, identity, directory)
        if kept is None:
            return dataclasses.replace(plan, finished=finished)
        return dataclasses.replace(plan, resume_generation=0, resume_parts=kept)
    if config.resume and holds_result(config.output, identity):
        checkpoint.remove_finished(directory, identity)
        return dataclasses.replace(plan, finished=True)
    manifest = checkpoint.read_manifest(directory)
    if manifest is not None and not config.resume:
        # A run that failed before saving any work leaves nothing worth keeping: replace it.
        if not config.overwrite and checkpoint.holds_work(directory, int(manifest["generation"])):
            raise UsageError(
                f"a checkpoint of an unfinished run is in {directory}: add --resume to continue "
                "it, or --overwrite to discard it and start over"
            )
        checkpoint.remove(directory)
        manifest = None
    for input_path in source.input_paths or (None,):
        check_output(config.output, config.overwrite, input_path)
    if manifest is not None:
        check_identity(directory, manifest["job"], identity)
        if kernel.per_row and not Path(checkpoint.rows_path(directory)).is_file():
            raise UsageError(
                f"checkpoint {directory!r} has lost its per-row outputs (rows.h5): "
                "run with --overwrite instead of --resume to start over"
            )
    needs = space.estimate(kernel, source, params, grouping)
    if config.compression:
        needs = dataclasses.replace(needs, rows=0)  # their compressed size is not known
    space.check_space(config.output, directory, needs, resuming=manifest is not None)
    if manifest is None:
        return plan
    generation = int(manifest["generation"])
    parts = tuple(checkpoint.list_parts(directory, generation))
    return dataclasses.replace(plan, resume_generation=generation, resume_parts=parts)


def prepare_checkpoint(comm: MPI.Comm, plan: Plan, n_chunks: int) -> tuple[dict, Any, int]:
    """Start a checkpoint, or load one: returns (this rank's nodes, chunks to do, generation).

    On resume every rank loads a share of the saved parts, then all write them again as a new
    generation, which becomes current only when rank 0 rewrites the manifest: an interruption
    at any point leaves one complete generation to resume from. Where a job can die, and why
    resuming from there counts every chunk once:

    - before the commit (loading, or writing generation g+1): the manifest still names g, whose
      parts are intact; the next resume deletes the g+1 parts first;
    - after the commit, before generation g is deleted: g+1 is complete (every rank wrote its
      part before rank 0 committed); the next resume deletes what is left of g;
    - while running: each rank replaces only its own g+1 part, atomically, with all its nodes
      (loaded and computed), and the ranks' nodes never overlap, so any mix of their latest
      parts is a valid state.

    Overlapping nodes are refused all the same, here and in the reduction tree.
    """
    directory = plan.checkpoint_dir
    if directory is None:
        return {}, None, 0

    def start() -> None:
        try:
            checkpoint.remove_strays(directory, keep=None)
            checkpoint.write_manifest(directory, plan.identity, 0)
        except OSError as exc:
            raise UsageError(
                f"cannot start the checkpoint {directory}: {space.reason(exc)}"
            ) from None

    if plan.resume_generation is None:
        on_root(comm, start)
        return {}, None, 0
    rank, size = comm.Get_rank(), comm.Get_size()
    mine = plan.resume_parts[rank::size]
    # Parts of the next generation left by a run killed before its commit must go before any
    # rank writes that generation again (a run on fewer ranks would not overwrite them all).
    on_root(comm, lambda: checkpoint.remove_strays(directory, keep=plan.resume_generation))

    def load() -> tuple[dict, list]:
        nodes: dict = {}
        found: list = []  # every node read, a node saved twice included
        for path in mine:
            part = checkpoint.read_part(Path(path))
            found.extend(part)
            nodes.update(part)
        return nodes, found

    nodes, found = on_all(comm, load)
    all_nodes = [node for rank_nodes in comm.allgather(found) for node in rank_nodes]
    overlap = find_overlap(all_nodes)
    if overlap is not None:
        raise_shared(
            UsageError(
                f"checkpoint {directory!r} is inconsistent: {overlap_message(*overlap)}. "
                "Run with --overwrite instead of --resume to start over"
            )
        )
    todo = subtract(n_chunks, checkpoint.node_intervals(all_nodes))
    generation = plan.resume_generation + 1

    def rewrite() -> None:
        # A rank with one part takes it over as it is (a hard link): a resume on the disk that
        # was too full to write the output needs no room. Several parts are merged into one;
        # a rank with no node has nothing to save.
        try:
            if len(mine) == 1 and checkpoint.link_part(mine[0], directory, generation, rank):
                return
            if nodes:
                checkpoint.write_part(directory, generation, rank, nodes)
        except OSError as exc:
            raise UsageError(not_rewritten(directory, exc)) from None

    on_all(comm, rewrite)

    def commit() -> None:
        try:
            checkpoint.write_manifest(directory, plan.identity, generation)
        except OSError as exc:
            raise UsageError(not_rewritten(directory, exc)) from None
        checkpoint.remove_generation(directory, generation - 1)

    on_root(comm, commit)
    return nodes, todo, generation


def not_rewritten(directory: str, exc: OSError) -> str:
    """Say that a resume could not rewrite its checkpoint, which is left as it was."""
    return (
        f"cannot rewrite the checkpoint {directory} to resume ({space.reason(exc)}); it is left "
        "as it was: fix that and run again with --resume"
    )


def agree_on_code(comm: MPI.Comm, code: dict[str, Any]) -> None:
    """Refuse, on every rank, a launch whose ranks imported different kernel code; collective."""
    from mpi4py import MPI

    digest = digest_of(code)
    if not comm.allreduce(digest == comm.bcast(digest, root=0), op=MPI.LAND):
        problem = disagreement(comm.allgather(code))  # only on this error path: whole identities
        raise_shared(UsageError(problem or "the ranks imported different kernel code"))
