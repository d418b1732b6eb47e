"""``hpcapp generate``: write a synthetic dataset in parallel, the same bytes for any rank count.

Rows are made in fixed blocks, each from a generator seeded by (seed, block index), so the data
does not depend on how many ranks made it. Rank 0 creates the file with the dataset's storage
allocated up front (contiguous, no filters); every rank then writes its blocks' raw bytes at
their file offsets with ``pwrite``: HDF5 itself is never opened for writing by two processes.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

import numpy as np

from hpcapp.errors import UsageError
from hpcapp.io.names import split_spec
from hpcapp.io.writer import check_output
from hpcapp.parallel.collective import on_all, on_root
from hpcapp.partition import rank_chunks

if TYPE_CHECKING:
    from mpi4py import MPI

BLOCK_ROWS = 1 << 16
DTYPES: tuple[str, ...] = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
DTYPES += ("float16", "float32", "float64")
DISTRIBUTIONS = ("uniform", "normal")


@dataclasses.dataclass(frozen=True)
class GenerateConfig:
    """What ``generate`` writes: where, how many rows and columns, which values."""

    target: str
    rows: int
    cols: int | None = None
    dtype: str = "float64"
    dist: str = "uniform"
    seed: int = 0
    nan_fraction: float = 0.0
    overwrite: bool = False

    def check(self) -> None:
        """Raise UsageError for values that cannot make a dataset."""
        split_spec(self.target)
        if self.rows < 1:
            raise UsageError(f"--rows must be >= 1, got {self.rows}")
        if self.cols is not None and self.cols < 1:
            raise UsageError(f"--cols must be >= 1, got {self.cols}")
        if self.dtype not in DTYPES:
            raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.dist not in DISTRIBUTIONS:
            raise UsageError(f"--dist must be one of {', '.join(DISTRIBUTIONS)}")
        if not 0.0 <= self.nan_fraction <= 1.0:
            raise UsageError(f"--nan-fraction must be between 0 and 1, got {self.nan_fraction}")
        if self.nan_fraction and np.dtype(self.dtype).kind != "f":
            raise UsageError("--nan-fraction needs a float --dtype (integers have no NaN)")

    @property
    def shape(self) -> tuple[int, ...]:
        """Return the dataset's shape."""
        return (self.rows,) if self.cols is None else (self.rows, self.cols)


def make_block(config: GenerateConfig, block_index: int) -> np.ndarray:
    """Return the rows of one block, from its own seeded generator."""
    start = block_index * BLOCK_ROWS
    n_rows = min(BLOCK_ROWS, config.rows - start)
    shape = (n_rows, *config.shape[1:])
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(block_index,)))
    dtype = np.dtype(config.dtype)
    if config.dist == "normal":
        values = rng.standard_normal(shape)
        if dtype.kind in "iu":
            values = np.rint(values * 100.0)
    else:
        values = rng.random(shape)
        if dtype.kind in "iu":
            values = np.floor(values * 1000.0)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = np.clip(values, info.min, info.max)
    block = values.astype(dtype)
    if config.nan_fraction:
        block[rng.random(shape) < config.nan_fraction] = np.nan
    return block


def _create(config: GenerateConfig, temporary: str) -> int:
    """Create the file with the dataset's storage allocated; return its byte offset."""
    import h5py

    _, dataset = split_spec(config.target)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    with h5py.File(temporary, "w") as h5:
        dset = h5.create_dataset(dataset, shape=config.shape, dtype=config.dtype, dcpl=dcpl)
        dset.attrs["generator"] = (
            f"hpcapp generate --dist {config.dist} --seed {config.seed} "
            f"--nan-fraction {config.nan_fraction}"
        )
        offset = dset.id.get_offset()
    if offset is None:
        raise RuntimeError("HDF5 did not allocate the dataset's storage")
    return int(offset)


def run_generate(comm: MPI.Comm, config: GenerateConfig) -> str:
    """Write the dataset on all ranks of ``comm``; collective. Returns the file path."""
    path, _ = split_spec(config.target)

    def prepare() -> tuple[str, int]:
        config.check()
        check_output(path, config.overwrite)
        temporary = os.path.join(
            os.path.dirname(path) or ".", f".{os.path.basename(path)}.tmp-{os.getpid()}"
        )
        return temporary, _create(config, temporary)

    temporary, offset = on_root(comm, prepare)
    row_bytes = int(np.prod(config.shape[1:], dtype=np.int64)) * np.dtype(config.dtype).itemsize
    n_blocks = -(-config.rows // BLOCK_ROWS)

    def write_blocks() -> None:
        fd = os.open(temporary, os.O_WRONLY)
        try:
            for block_index in rank_chunks(n_blocks, comm.Get_size(), comm.Get_rank()):
                data = make_block(config, block_index)
                position = offset + block_index * BLOCK_ROWS * row_bytes
                # numpy's stubs give ndarray __buffer__ only from Python 3.12.
                view = memoryview(np.ascontiguousarray(data)).cast("B")  # type: ignore[arg-type]
                while view:
                    written = os.pwrite(fd, view, position)
                    view, position = view[written:], position + written
        finally:
            os.close(fd)

    try:
        on_all(comm, write_blocks)
    except Exception:
        if comm.Get_rank() == 0:
            os.unlink(temporary)
        raise
    on_root(comm, lambda: os.replace(temporary, path))
    return path
