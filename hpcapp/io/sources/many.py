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

import numpy as np

from hpcapp.errors import UsageError
from hpcapp.io.coding.variables import POLICY_RAW, Decoder
from hpcapp.io.series import FileSeries, Member
from hpcapp.io.sources.base import Coder, Rows, Runs
from hpcapp.io.sources.hdf5 import Hdf5Source
from hpcapp.kernels.packed import LinearUnpack
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
        return f" of {plural(len(self.members), 'file')}{self.selection_summary()}"

    def _identity(self) -> dict[str, Any]:
        listing = [[m.path, m.n_rows, m.file_id[2], m.file_id[3]] for m in self.members]
        digest = hashlib.sha256(json.dumps(listing).encode()).hexdigest()
        found = {**super()._identity(), "input_files": {"count": len(listing), "sha256": digest}}
        if self._per_file():
            coders = [dataclasses.asdict(m.decoding) for m in self.members]
            found["cf_per_file"] = hashlib.sha256(json.dumps(coders).encode()).hexdigest()
        return found

    def _per_file(self) -> bool:
        """Return whether each file decodes its own way (packing or fill values differ)."""
        decoding = self.decoding
        return (
            decoding is not None
            and decoding.policy != POLICY_RAW
            and any(m.decoding is not None for m in self.members)
        )

    def describe(self, dims_option: str | None, raw: bool, mask_valid_range: bool) -> FilesSource:
        """Return this source described (:meth:`Hdf5Source.describe`, from its first file).

        ``--raw`` keeps values as stored: files packed differently are refused, since their
        stored numbers mean different things.
        """
        described = super().describe(dims_option, raw, mask_valid_range)
        assert isinstance(described, FilesSource)
        first = self.members[0].decoding
        for index, member in enumerate(self.members):
            other = member.decoding
            if raw and first is not None and other is not None:
                packing = (other.scale_factor, other.add_offset)
                if packing != (first.scale_factor, first.add_offset):
                    raise UsageError(
                        f"--raw: file {index + 1} of {len(self.members)} ({member.path}:"
                        f"{self.dataset}) has scale_factor {packing[0]}, add_offset "
                        f"{packing[1]}, the first file ({self.members[0].path}) "
                        f"{first.scale_factor}, {first.add_offset}: their stored values mean "
                        "different things; drop --raw"
                    )
        return described

    @property
    def linear_unpack(self) -> LinearUnpack | None:
        """Return the files' one linear unpack; None where files decode their own ways."""
        return None if self._per_file() else super().linear_unpack

    def decoder(self, chunk_rows: int, packed: bool = False) -> Coder:
        """Return the coder of chunks; each file's rows decode their own way where they differ.

        Files decoding their own ways are decoded here, ``packed`` or not.
        """
        decoding = self.decoding
        if decoding is None or not self._per_file():
            return super().decoder(chunk_rows, packed)
        coders = tuple(m.decoding for m in self.members)
        decode = Decoder(decoding, min(chunk_rows, self.n_rows), self.row_shape, coders)
        ends = np.cumsum([m.n_rows for m in self.members]) - (
            self.window.start[0] if self.window is not None else 0
        )

        def pieces(runs: Runs) -> list[Any]:
            found, at = [], 0  # at: where the run starts in the chunk
            for start, stop in runs:
                first = start
                for end, coder in zip(ends.tolist(), coders, strict=True):
                    if end > first and first < stop:
                        found.append((at + first - start, at + min(end, stop) - start, coder))
                        first = min(end, stop)
                at += stop - start
            return found

        return lambda item, runs: (
            decode(item, pieces(runs)) if isinstance(item, np.ndarray) else item
        )

    def provenance(self) -> dict[str, Any]:
        """Return the output file's attributes that describe the input, with the file count."""
        found = super().provenance()
        return {"input": found.pop("input"), "input_file_count": len(self.members), **found}

    def open(self) -> AbstractContextManager[Rows]:
        """Open the series on this rank: one file at a time, as rows need them."""
        return FileSeries(self)


def with_decodings(members: list[Member], coders: list[dict[str, Any]]) -> list[Member]:
    """Give each file its own CF coder (``coders``: as dicts) where packing or fills differ."""
    from hpcapp.io.coding.variables import CFDecoding

    if all(cf == coders[0] for cf in coders):
        return members  # one coder decodes them all (the source's)
    return [
        dataclasses.replace(
            member, decoding=CFDecoding(**{**cf, "missing": tuple(map(tuple, cf["missing"]))})
        )
        for member, cf in zip(members, coders, strict=True)
    ]
