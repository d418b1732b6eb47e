"""Checkpoints: the completed reduction-tree nodes of every rank, saved so a job can resume.

A checkpoint is a directory (default ``OUT.h5.checkpoint``) with ``manifest.json`` (what job it
belongs to, and which generation of part files is current) and one HDF5 part file per rank of
that generation. Each rank writes only its own part, atomically, whenever it likes: no
communication, no rank-0 bottleneck, and no stall of the others. A part holds tree nodes, each
a partial over a dyadic run of chunks; parts never overlap, so their union is a valid state even
though they were written at different moments. Because a node's value is fixed by the tree
(``combine(left, right)``), resuming on any number of ranks gives the same bits as a run that
was never interrupted.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcapp.errors import UsageError
from hpcapp.io import space
from hpcapp.partition import Node, Partial

if TYPE_CHECKING:
    from hpcapp.io.sources.base import Source

MANIFEST = "manifest.json"
FORMAT = 1


def default_path(output: str) -> str:
    """Return the checkpoint directory used when ``--checkpoint`` is not given."""
    return f"{output}.checkpoint"


def job_identity(
    kernel: str, params_json: str, source: Source, chunk_rows: int, code: dict[str, Any]
) -> dict[str, Any]:
    """Return what must match for a checkpoint (or a finished output) to belong to a job.

    ``code`` is the identity of the code that computes the result
    (see :mod:`hpcapp.jobs.provenance`); ``source`` says its own part (its rows, files, stamps,
    dimension names and CF decoding: :meth:`hpcapp.io.sources.base.Source.identity`).
    """
    identity: dict[str, Any] = {
        "kernel": kernel,
        "code": code,
        "params": params_json,
        "chunk_rows": chunk_rows,
    }
    identity.update(source.identity())
    return identity


def remove_finished(directory: str, identity: dict[str, Any]) -> None:
    """Remove the checkpoint of a job whose output was written just before a crash."""
    manifest = read_manifest(directory)
    if manifest is not None and manifest.get("job") == identity:
        remove(directory)


def rows_path(directory: str) -> str:
    """Return the working file where rank 0 writes per-row outputs until the job ends."""
    return str(Path(directory) / "rows.h5")


def part_path(directory: str, generation: int, rank: int) -> Path:
    """Return the part file of ``rank`` in ``generation``."""
    return Path(directory) / f"gen{generation:04d}-rank{rank:06d}.h5"


def read_manifest(directory: str) -> dict[str, Any] | None:
    """Return the manifest of a checkpoint directory, or None when there is no checkpoint."""
    path = Path(directory) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"checkpoint {directory!r} is unreadable ({exc}); remove it") from None
    if manifest.get("format") != FORMAT:
        raise UsageError(f"checkpoint {directory!r} has an unknown format; remove it")
    return manifest


def write_manifest(directory: str, identity: dict[str, Any], generation: int) -> None:
    """Write the manifest atomically: this is the moment a new generation becomes current."""
    Path(directory).mkdir(exist_ok=True)
    text = json.dumps({"format": FORMAT, "generation": generation, "job": identity}, indent=1)
    _replace_with(Path(directory) / MANIFEST, text.encode())


def write_part(directory: str, generation: int, rank: int, nodes: dict[Node, Partial]) -> None:
    """Save one rank's nodes to its part file, atomically (temporary file, then rename).

    The file's room is reserved first (see :mod:`hpcapp.io.space`): a disk that is full raises
    OSError before HDF5 writes, and the previous part stays as it was.
    """
    import h5py

    final = part_path(directory, generation, rank)
    temporary = final.with_name(f".{final.name}.tmp")
    try:
        space.new_h5(temporary, part_bytes(nodes))
        with h5py.File(temporary, "a") as h5:
            h5.attrs["generation"] = generation
            h5.attrs["rank"] = rank
            for (level, index), partial in nodes.items():
                group = h5.create_group(f"node_{level}_{index}")
                group.attrs["level"] = level
                group.attrs["index"] = index
                for key, value in partial.items():
                    group.create_dataset(key, data=np.asarray(value))
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)


def link_part(source: str, directory: str, generation: int, rank: int) -> bool:
    """Make part file ``source`` the part of ``rank`` in ``generation`` by a hard link.

    Returns False where the file system has no hard links (the caller writes the part).
    """
    target = part_path(directory, generation, rank)
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS):
            return False
        raise
    return True


def part_bytes(nodes: dict[Node, Partial]) -> int:
    """Return the bytes a part file of ``nodes`` may take (its arrays, headers, groups)."""
    arrays = [value for partial in nodes.values() for value in partial.values()]
    return space.arrays_bytes(arrays) + space.PER_OBJECT * (len(nodes) + 4)


def keep_result(
    directory: str, identity: dict[str, Any], generation: int, n_chunks: int, partial: Partial
) -> None:
    """Keep a job's combined partial as the one node of the next generation (rank 0).

    Called before the output is written: a job whose output cannot be written resumes from
    here and computes no chunk. The node is the tree's root over ``[0, 2**level)``, which
    covers every chunk; nothing ever combines with it. The commit is the one of
    :func:`hpcapp.jobs.plan.prepare_checkpoint`: until the manifest names the new generation the
    old one is current, and a resume removes whichever parts the manifest does not name.
    """
    level = max(n_chunks - 1, 0).bit_length()
    write_part(directory, generation + 1, 0, {(level, 0): partial})
    write_manifest(directory, identity, generation + 1)
    remove_generation(directory, generation)


class ResultKeeper:
    """Keeps the combined partial in the checkpoint (rank 0, before the output is written).

    The engine calls it; a failure (the checkpoint's disk is full too) is remembered in
    ``failure`` for the message, never raised: the output may still be written.
    """

    def __init__(
        self, directory: str | None, identity: dict[str, Any], generation: int, n_chunks: int
    ) -> None:
        self.directory = directory
        self.identity = identity
        self.generation = generation
        self.n_chunks = n_chunks
        self.failure = ""  # why the partial could not be kept, and the bytes it needed

    def __call__(self, partial: Partial) -> None:
        assert self.directory is not None
        try:
            keep_result(self.directory, self.identity, self.generation, self.n_chunks, partial)
        except Exception as exc:  # the engine's contract: never raise here
            needed = part_bytes({(0, 0): partial})
            why = space.reason(exc) if isinstance(exc, OSError) else repr(exc)
            self.failure = f"{why}, needs ~{space.megabytes(needed)}"


def read_part(path: Path) -> dict[Node, Partial]:
    """Load the nodes of one part file."""
    import h5py

    nodes: dict[Node, Partial] = {}
    with h5py.File(path, "r", locking=False) as h5:
        for group in h5.values():
            node = (int(group.attrs["level"]), int(group.attrs["index"]))
            nodes[node] = {key: dataset[()] for key, dataset in group.items()}
    return nodes


def holds_work(directory: str, generation: int) -> bool:
    """Return whether a checkpoint holds finished work: a node in a part of ``generation``."""
    import h5py

    for path in list_parts(directory, generation):
        try:
            with h5py.File(path, "r", locking=False) as h5:
                if len(h5):
                    return True
        except OSError:
            return True  # unreadable: not ours to judge empty; --resume or --overwrite decides
    return False


def list_parts(directory: str, generation: int) -> list[str]:
    """Return the part files of one generation, sorted."""
    return sorted(str(p) for p in Path(directory).glob(f"gen{generation:04d}-rank*.h5"))


def remove_generation(directory: str, generation: int) -> None:
    """Delete the part files of a generation that is no longer current."""
    for path in list_parts(directory, generation):
        Path(path).unlink(missing_ok=True)


def remove_strays(directory: str, keep: int | None) -> None:
    """Delete every part file not of generation ``keep`` (None: all), and unfinished writes.

    A job killed between writing a new generation's parts and committing the manifest leaves
    parts the manifest does not name; a later run on fewer ranks would not overwrite them all,
    and once it commits that generation they would be loaded beside its own nodes. Older
    generations are left when a job dies just after a commit. Neither may ever be read.
    """
    folder = Path(directory)
    if not folder.is_dir():
        return
    kept = None if keep is None else f"gen{keep:04d}-"
    for path in [*folder.glob("gen*-rank*.h5"), *folder.glob(".gen*-rank*.h5.tmp")]:
        if kept is None or not path.name.startswith(kept):
            path.unlink(missing_ok=True)


def remove(directory: str) -> None:
    """Delete a checkpoint directory (after the job's result was written)."""
    shutil.rmtree(directory, ignore_errors=True)


def node_intervals(nodes: Iterable[Node]) -> list[tuple[int, int]]:
    """Return the chunk runs ``[start, stop)`` that nodes cover."""
    return [(index << level, (index + 1) << level) for level, index in nodes]


def _replace_with(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
