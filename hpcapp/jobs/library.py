"""``hpcapp.run``: a whole job from Python, on any communicator; the CLI is a layer over it.

    import hpcapp
    results = hpcapp.run("stats", "data.h5:/temperature", params={"bins": 32, "range": [0, 40]})

Collective: every rank of ``comm`` calls it with the same arguments. Rank 0 gets the results
(``root=None``: every rank does). A failure on any rank raises the same exception on every rank
(:class:`hpcapp.errors.UsageError` for bad input, before any work; ``KernelError`` for a kernel
that fails); nothing aborts the process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hpcapp.errors import UsageError

if TYPE_CHECKING:
    from mpi4py import MPI

# hpcapp.run's arguments that say where and how the results come back, not what the job is.
DELIVERY = ("comm", "root", "as_xarray")


def run(
    kernel: str | Callable[..., Any],
    input: Any = None,
    *,
    comm: MPI.Comm | None = None,
    params: Mapping[str, Any] | None = None,
    output: str | None = None,
    chunk_rows: int | None = None,
    over: str | Sequence[str | int] | None = None,
    dims: str | Sequence[str] | None = None,
    raw: bool = False,
    mask_valid_range: bool = False,
    sort_files: bool = False,
    sel: Mapping[str, Any] | str | None = None,
    isel: Mapping[str, Any] | str | None = None,
    weights: str | None = None,
    mask: str | None = None,
    regions: str | None = None,
    memory_per_rank: str | None = None,
    group_every: int | None = None,
    group_by: str | None = None,
    resample: str | None = None,
    schedule: str = "static",
    distribute: str = "read",
    checkpoint: str | None = None,
    checkpoint_every: float = 300.0,
    resume: bool = False,
    overwrite: bool = False,
    compression: str | None = None,
    quiet: bool = True,
    progress_every: float = 60.0,
    root: int | None = 0,
    as_xarray: bool = False,
) -> Any:
    """Run ``kernel`` over ``input`` on every rank of ``comm``; return the results on ``root``.

    ``kernel`` is a built-in name (``"stats"``), ``"package.module:function"``,
    ``"path/file.py:function"`` or a function (decorated with :func:`hpcapp.kernel` or not).
    ``input`` is ``"FILE.h5:/dataset"`` or an ``h5py.Dataset`` (its file must be readable by
    every rank; flush it first if you wrote it); ``None`` for a generating kernel. ``comm``
    defaults to ``MPI.COMM_WORLD`` (a 1-rank world in a plain ``python`` or Jupyter process) and
    may be any sub-communicator. ``output=None`` writes nothing (and keeps no checkpoint); with
    an output, the file is the one ``hpcapp run`` writes, and ``checkpoint``/``resume`` work as
    its options do. ``group_every``/``group_by`` are ``--group-every``/``--group-by``: results
    then lead with a group axis, its labels named as xarray names them: ``results["month"]``
    for ``group_by="time.month"`` (``season``, ``dayofyear``, ``year``), else
    ``results["group"]``. ``resample`` is ``--resample`` (``"time=1M"``): one result per
    period, ``results["time"]`` their starts and ``results["time_bnds"]`` their bounds, in the
    input's time units and calendar. ``sel``/``isel`` are
    ``--sel``/``--isel``: ``"time=1992-01-01:1992-12-31,lat=-30:30"`` or a dict such as
    ``{"time": ("1992-01-01", "1992-12-31"), "lat": slice(-30, 30)}``. ``weights`` is
    ``--weights`` (``"area"`` or ``"FILE:/VAR"``): the built-in stats, weighted (a kernel
    declaring ``coords=True`` gets them in its ``coords.weights`` instead); ``mask`` and
    ``regions`` (``"FILE:/VAR"``) are ``--mask`` and ``--regions``. The other
    options are those of ``hpcapp run``: the fields of ``JobConfig``, where each is declared
    (a test keeps the two equal, names and defaults). ``over`` and ``dims`` are a comma list or
    a sequence: ``over=("lat", "lon")``, ``["lat", "lon"]`` and ``"lat,lon"`` are one job (axis
    numbers: ``over=(1, 2)``).

    The results are a dict keyed as the kernel returns them (``results["mean"]``), per-row
    results included (``over="lat,lon"``: the series, one row per record). Those are read back
    from the output; with ``output=None`` they are gathered on rank 0 through a scratch file on
    its disk, deleted at the end: at most 1 GiB of them (``ROWS_GATHERED``), else the job is
    refused before any work (a built-in kernel) or after its first chunk (a user kernel) with
    one line saying to give an output. With an output, per-row results over 1 GiB stay in the
    file, and a warning says so. Several variables (``"f.nc:/tas,/pr"``) are keyed
    ``"VARIABLE/KEY"`` (``results["tas/mean"]``, ``results["pr/mean"]``).

    ``as_xarray=True`` returns an ``xarray.Dataset`` instead (xarray must be installed): the
    output file as ``xr.open_dataset`` opens it (lazily; close it when done), or without an
    output the same file written to rank 0's scratch and loaded into memory. Its variables are
    named as in the file (``tas_mean`` for ``mean`` of input ``tas``; attribute
    ``hpcapp_result`` holds the key), with their dimensions and coordinates (``time``, ``lat``,
    ``lon``, ``month``) and the per-rank timing.
    """
    given = dict(locals())  # first: the arguments only
    from mpi4py import MPI

    from hpcapp.jobs import app
    from hpcapp.jobs.config import make_job_config
    from hpcapp.parallel.collective import duplicate
    from hpcapp.parallel.tags import Tag

    comm = MPI.COMM_WORLD if comm is None else comm
    opener = _opener(output) if as_xarray else None
    spec, loaded = _kernel(kernel)
    values = {name: value for name, value in given.items() if name not in DELIVERY}
    values.update(kernel=spec, input=_input_spec(input), params=dict(params or {}))
    config = make_job_config(values, {}, output_required=False)
    # A program of the user's sets its own threads; warn only when asked to talk.
    outcome = app.execute(
        comm,
        config,
        kernel_and_code=loaded,
        warn_threads=not quiet,
        read_back=True,
        opener=opener,
    )
    results = (outcome.labelled if as_xarray else outcome.results) if comm.Get_rank() == 0 else None
    if root is None:
        return comm.bcast(results, root=0)
    if root == 0:
        return results
    with duplicate(comm) as private:  # the caller's own messages on comm stay theirs
        if private.Get_rank() == 0:
            private.send(results, dest=root, tag=Tag.RESULT)
        return private.recv(source=0, tag=Tag.RESULT) if private.Get_rank() == root else None


def _opener(output: str | None) -> Callable[[str], Any]:
    """Return how to open the written file as an ``xarray.Dataset`` (lazily when it stays)."""
    try:
        import xarray
    except ImportError:
        raise ImportError("hpcapp.run(as_xarray=True) needs xarray: pip install xarray") from None
    return xarray.open_dataset if output else xarray.load_dataset


def _kernel(kernel: Any) -> tuple[str, Any]:
    """Return the kernel's name for provenance, and (Kernel, code identity) for a function."""
    if isinstance(kernel, str):
        return kernel, None
    if not callable(kernel):
        raise UsageError(f"kernel must be a name, 'module:function' or a function: {kernel!r}")
    from hpcapp.jobs.provenance import code_identity
    from hpcapp.kernels.api import from_function

    func = getattr(kernel, "func", kernel)  # a Kernel is named after its function
    name = f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', '?')}"
    loaded = from_function(kernel, name)
    return name, (loaded, code_identity(name, loaded, []))


def _input_spec(input: Any) -> str | None:
    """Return ``FILE.h5:/dataset`` for a spec or an ``h5py.Dataset``."""
    if input is None or isinstance(input, str):
        return input
    file = getattr(input, "file", None)
    name = getattr(input, "name", None)
    if file is None or name is None:
        raise UsageError(f"input must be 'FILE.h5:/dataset' or an h5py.Dataset, not {input!r}")
    return f"{file.filename}:{name}"
