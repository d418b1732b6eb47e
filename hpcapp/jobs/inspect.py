"""Many files inspected by all ranks at once: each a block of the list, rank 0 checks they agree.

The per-file work (:func:`hpcapp.io.files.inspect_share`) and the agreement check
(:func:`hpcapp.io.files.assemble`) are plain I/O; this module spreads them over a communicator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, overload

from hpcapp.errors import UsageError
from hpcapp.io.files import assemble, inspect_share, make_listing
from hpcapp.io.sources.many import FilesSource
from hpcapp.io.sources.specs import inspect_spec
from hpcapp.parallel.collective import on_root, raise_shared
from hpcapp.partition import block

if TYPE_CHECKING:
    from mpi4py import MPI


@overload
def inspect_many(
    comm: None,
    spec: str,
    group_by: str | None = ...,
    sort_files: bool = ...,
    mask_valid_range: bool = ...,
) -> FilesSource: ...


@overload
def inspect_many(
    comm: MPI.Comm,
    spec: str,
    group_by: str | None = ...,
    sort_files: bool = ...,
    mask_valid_range: bool = ...,
) -> FilesSource | None: ...


def inspect_many(
    comm: MPI.Comm | None,
    spec: str,
    group_by: str | None = None,
    sort_files: bool = False,
    mask_valid_range: bool = False,
) -> FilesSource | None:
    """Inspect every file that ``spec`` names, spread over the ranks; collective (or comm None).

    Returns the source on rank 0 (``None`` elsewhere); raises the same UsageError on every rank
    for an empty match, an unreadable file or a file that does not agree with the first.
    ``group_by`` (``--group-by``) names a label dataset every file must have alike, with one
    value per record (times may be encoded differently in each file). ``sort_files``
    (``--sort-files``) takes the files in the order of their first time instead.
    ``mask_valid_range`` (``--mask-valid-range``): the files must agree on valid_* too.
    """
    if comm is None:
        alone = inspect_spec(spec, group_by, sort_files, mask_valid_range)
        assert isinstance(alone, FilesSource)  # spec names many files
        return alone
    rank, size = comm.Get_rank(), comm.Get_size()
    listing = on_root(comm, lambda: make_listing(spec, group_by, mask_valid_range))
    count, first = block(len(listing.paths), size, rank)
    gathered = comm.gather(inspect_share(listing, first, count), root=0)
    source: FilesSource | None = None
    error: UsageError | None = None
    if gathered is not None:  # rank 0
        try:
            source = assemble(spec, listing, gathered, sort_files)
        except UsageError as exc:
            error = exc
    error = comm.bcast(error, root=0)
    if error is not None:
        raise_shared(error)
    return source
