"""The default --chunk-rows of a chunked input: whole HDF5 chunks, so none is decompressed twice."""

import h5py
import numpy as np
import pytest
from helpers import cli_here, read_results, write_dataset

from hpcapp.partition import DEFAULT_CHUNK_BYTES

KERNEL = """
import numpy as np

def total(chunk):
    return {"s": np.asarray(chunk, np.float64).sum(axis=0), "n": np.int64(len(chunk))}
"""


@pytest.mark.parametrize(
    "rows,cols,storage,compression",
    [
        (20_000, None, (1000,), "gzip"),  # awkward: the default is not a multiple of 1000
        (20_000, None, (3,), None),  # tiny and odd
        (4_000, 8, (1000, 8), "lzf"),
        (3_000, 8, (4096, 8), "gzip"),  # larger than the dataset (resizable)
        (1_500, 1024, (700, 1024), "gzip"),  # 700 rows of 8 KiB: more than the default 512 rows
        (20_000, 4, None, None),  # contiguous: the plain default
    ],
)
def test_default_chunk_rows_are_whole_storage_chunks(tmp_path, rows, cols, storage, compression):
    shape = (rows,) if cols is None else (rows, cols)
    data = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    options = {"chunks": storage, "compression": compression}
    if storage is not None and storage[0] > rows:
        options["maxshape"] = (None, *shape[1:])
    spec = write_dataset(tmp_path / "in.h5", data, **options)
    with h5py.File(tmp_path / "in.h5") as h5:
        assert h5["x"].chunks == storage
    kernel_file = tmp_path / "total.py"
    kernel_file.write_text(KERNEL)
    out = tmp_path / "out.h5"
    done = cli_here(["run", f"{kernel_file}:total", spec, "-o", str(out), "-q"])
    assert done.returncode == 0, done.stderr
    with h5py.File(out) as h5:
        chunk_rows = int(h5.attrs["chunk_rows"])
    total = read_results(out)["s"]
    np.testing.assert_array_equal(total, data.sum(axis=0))
    row_bytes = 8 * (cols or 1)
    if storage is None:
        assert chunk_rows == DEFAULT_CHUNK_BYTES // row_bytes
        return
    # Every chunk starts on an HDF5 chunk boundary, and is still about the default size.
    assert chunk_rows % storage[0] == 0, (chunk_rows, storage)
    assert chunk_rows * row_bytes <= max(DEFAULT_CHUNK_BYTES, storage[0] * row_bytes)
    assert chunk_rows * row_bytes > DEFAULT_CHUNK_BYTES // 2 or chunk_rows == storage[0]
