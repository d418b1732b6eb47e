"""CF coding: how stored values become the values a kernel (or a group label) means.

Two coders, each a small frozen description read once from a variable's attributes, then
applied by every rank to the values it reads:

- :mod:`~hpcapp.io.coding.variables`: a data variable's ``_Unsigned``, ``_FillValue`` /
  ``missing_value`` (and ``valid_*`` with ``--mask-valid-range``), ``scale_factor`` /
  ``add_offset``: :func:`~hpcapp.io.coding.variables.decoding_of` reads them into a
  ``CFDecoding``, a ``Decoder`` applies it to chunks;
- :mod:`~hpcapp.io.coding.times`: a time variable's fill values, packing, ``units`` and
  ``calendar``: :func:`~hpcapp.io.coding.times.encoding_of` reads them into a ``TimeEncoding``,
  whose ``dates`` (and ``numbers``) decode raw values.

Every stored source decodes its rows with the first (:mod:`hpcapp.io.sources.stored`), for
``run`` and ``check`` alike; group labels and the output's time axis use the second.
"""
