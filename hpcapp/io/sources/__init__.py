"""Where rows come from, behind one interface (:class:`hpcapp.io.sources.base.Source`).

- :mod:`~hpcapp.io.sources.base`: the interface (row plan, identity, chunks) and ``Rows``;
- :mod:`~hpcapp.io.sources.stored`: stored rows, read into a buffer then CF-decoded;
- :mod:`~hpcapp.io.sources.hdf5`: one HDF5/netCDF-4 dataset; :mod:`~hpcapp.io.sources.checks`
  inspects it; :mod:`~hpcapp.io.sources.many`: many files as one dataset;
- :mod:`~hpcapp.io.sources.generated`: the samples of a generating kernel;
- :mod:`~hpcapp.io.sources.specs`: a spec the user typed to a source, in one process.
"""
