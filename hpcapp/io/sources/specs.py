"""Turn what the user named (``FILE:/dataset``, a glob, an ``@list``) into a source, in one process.

``hpcapp run`` inspects many files on every rank (:func:`hpcapp.jobs.inspect.inspect_many`);
here one process does it all, for the planner on rank 0 and for ``hpcapp check``.
"""

from __future__ import annotations

from hpcapp.io.dims import refuse_netcdf3
from hpcapp.io.files import assemble, inspect_share, is_many, make_listing
from hpcapp.io.sources.checks import inspect_input
from hpcapp.io.sources.hdf5 import Hdf5Source


def inspect_spec(
    spec: str, group_by: str | None = None, sort_files: bool = False, mask_valid_range: bool = False
) -> Hdf5Source:
    """Inspect the input ``spec`` names (refusing bad input with one line); return its source.

    The options are those of ``hpcapp run`` that many files must agree on (``--group-by``,
    ``--sort-files``, ``--mask-valid-range``: see :func:`hpcapp.jobs.inspect.inspect_many`).
    """
    if is_many(spec):
        listing = make_listing(spec, group_by, mask_valid_range)
        found = inspect_share(listing, 0, len(listing.paths))
        return assemble(spec, listing, [found], sort_files)
    refuse_netcdf3(spec)
    return inspect_input(spec)
