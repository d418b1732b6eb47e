"""Many HDF5 files as one dataset along its first axis: a glob or an ``@list`` of files.

:func:`hpcapp.io.files.assemble` makes a :class:`FilesSource` once every file was inspected and
found to agree with the first, whose attributes (dimensions, CF coder, coordinates) describe
them all. Its rows are read file by file (:class:`hpcapp.io.series.FileSeries`); its identity
names every file, its rows and its stamp.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from contextlib import AbstractContextManager
from typing import Any

from hpcapp.io.series import FileSeries, Member
from hpcapp.io.sources.base import Rows
from hpcapp.io.sources.hdf5 import Hdf5Source
from hpcapp.text import plural

FILES_PER_CHUNK = 32  # on average, at most, in a default chunk (see default_chunk_rows)


@dataclasses.dataclass(frozen=True)
class FilesSource(Hdf5Source):
    """The files in the order their rows are concatenated; ``path`` is the first of them."""

    members: tuple[Member, ...] = ()
    pattern: str = ""  # the glob or @list that named them

    @property
    def spec(self) -> str:
        """Return ``PATTERN:DATASET``."""
        return f"{self.pattern}:{self.dataset}"

    @property
    def input_paths(self) -> tuple[str, ...]:
        """Return every file."""
        return tuple(member.path for member in self.members)

    def default_chunk_rows(self) -> int:
        """Return one file's default, capped at ~FILES_PER_CHUNK files on average.

        Opening a file costs about as much as reading a megabyte, so a chunk of many tiny files
        is mostly opening them: capping the files per chunk keeps chunks many enough to share.
        """
        mean_rows = self.n_rows / max(1, len(self.members))
        return min(super().default_chunk_rows(), max(1, math.ceil(mean_rows * FILES_PER_CHUNK)))

    def summary(self) -> str:
        """Return how many files the rows come from."""
        return f" of {plural(len(self.members), 'file')}"

    def _identity(self) -> dict[str, Any]:
        listing = [[m.path, m.n_rows, m.file_id[2], m.file_id[3]] for m in self.members]
        digest = hashlib.sha256(json.dumps(listing).encode()).hexdigest()
        return {**super()._identity(), "input_files": {"count": len(listing), "sha256": digest}}

    def provenance(self) -> dict[str, Any]:
        """Return the output file's attributes that describe the input, with the file count."""
        found = super().provenance()
        return {"input": found.pop("input"), "input_file_count": len(self.members), **found}

    def open(self) -> AbstractContextManager[Rows]:
        """Open the series on this rank: one file at a time, as rows need them."""
        return FileSeries(self)
