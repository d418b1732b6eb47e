"""Inputs: right or refused. Files being written, dtypes and shapes, huge row counts, naming.

End-to-end tests run the real CLI (``run_cli``) and compare ``stats`` with numpy on the whole
array, or check exit code 2 and one ``hpcapp: error`` line that names the file and dataset.
"""

import subprocess
import sys

import h5py
import numpy as np
import pytest
from helpers import write_dataset
from input_helpers import assert_matches_numpy, refused, stats

from hpcapp.errors import UsageError
from hpcapp.io.reader import read_chunks
from hpcapp.io.sources.checks import inspect_input
from hpcapp.partition import count_chunks

# 5. Files being written (SWMR) ---------------------------------------------------------------

SWMR_WRITER = """
import sys, h5py, numpy as np
# A plain writer keeps the default format, whose superblock cannot say "being written".
h5 = h5py.File(sys.argv[1], "w", libver=None if sys.argv[2] == "plain" else "latest")
x = h5.create_dataset("x", shape=(0, 2), maxshape=(None, 2), chunks=(64, 2), dtype="f8")
if sys.argv[2] == "swmr":
    h5.swmr_mode = True
for step in range(2):
    x.resize((1000 * (step + 1), 2))
    x[1000 * step :] = np.arange(2000.0 * step, 2000.0 * (step + 1)).reshape(1000, 2)
    x.flush()
    h5.flush()
    print("rows", x.shape[0], flush=True)
    sys.stdin.readline()
h5.close()
"""


class Writer:
    """A writer process holding an HDF5 file open; ``grow()`` appends 1000 rows."""

    def __init__(self, path, mode):
        self.process = subprocess.Popen(
            [sys.executable, "-c", SWMR_WRITER, str(path), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def __enter__(self):
        try:
            assert self.process.stdout.readline().strip() == "rows 1000"
        except BaseException:
            self.__exit__()
            raise
        return self

    def grow(self):
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline().strip() == "rows 2000"

    def __exit__(self, *exc_info):
        try:
            self.process.communicate("\n\n", timeout=30)
        except (subprocess.TimeoutExpired, BrokenPipeError, ValueError):
            self.process.kill()
            self.process.communicate()


def test_swmr_file_being_written_reads_the_rows_present_at_inspection(tmp_path):
    path = tmp_path / "live.h5"
    with Writer(path, "swmr") as writer:
        first = np.arange(2000.0).reshape(1000, 2)
        assert_matches_numpy(stats(f"{path}:/x", tmp_path / "o.h5", 2, 100), first)
        source = inspect_input(f"{path}:/x")
        assert source.swmr and source.n_rows == 1000
        writer.grow()  # rows appended after the plan are not read
        chunks = read_chunks(source, range(count_chunks(1000, 300)), 300, lambda: False)
        got = np.concatenate([data.copy() for _, data in chunks])  # the buffer is reused
        np.testing.assert_array_equal(got, first)
    assert writer.process.returncode == 0


@pytest.mark.parametrize("mode", ["plain", "plain-latest"])  # file lock; superblock flags
def test_file_held_open_by_a_writer_without_swmr_is_refused(tmp_path, mode):
    path = tmp_path / "busy.h5"
    with Writer(path, mode) as writer:
        refused(f"{path}:/x", "busy.h5", "open for writing", tmp_path=tmp_path)
    assert writer.process.returncode == 0


# 6. Shapes and dtypes ------------------------------------------------------------------------


def bad_datasets(h5):
    """Write one dataset of each refused kind; return {name: what the message must say}."""
    h5["scalar"] = 1.5
    h5.create_dataset("null", data=h5py.Empty("f8"))
    h5["no_rows"] = np.zeros((0,))
    h5["no_rows_2d"] = np.zeros((0, 3))
    h5["no_columns"] = np.zeros((5, 0))
    h5["empty_cells"] = np.zeros((2, 3, 0))
    h5["complex"] = np.ones(4, np.complex128)
    h5["fixed_string"] = np.array([b"ab", b"cd"])
    h5.create_dataset("vlen_string", data=["a", "bc"], dtype=h5py.string_dtype())
    h5["compound"] = np.zeros(3, dtype=[("a", "f8"), ("b", "i4")])
    h5.create_dataset("enum", data=np.arange(3, dtype="i1"), dtype=h5py.enum_dtype({"a": 0}, "i1"))
    h5["opaque"] = np.zeros(3, dtype="V4")
    h5.create_dataset("reference", shape=(2,), dtype=h5py.ref_dtype)
    h5.create_dataset("array", shape=(4,), dtype=np.dtype(("f8", (3,))))
    h5.create_dataset("ragged", shape=(2,), dtype=h5py.vlen_dtype("f8"))
    return {
        "scalar": "scalar (shape ())",
        "null": "null",
        "no_rows": "0 rows",
        "no_rows_2d": "0 rows",
        "no_columns": "0 columns",
        "empty_cells": "0 columns",
        "complex": "complex",
        "fixed_string": "fixed-length string",
        "vlen_string": "variable-length string",
        "compound": "compound",
        "enum": "enum",
        "opaque": "opaque",
        "reference": "reference",
        "array": "array",
        "ragged": "variable-length sequence",
    }


def test_refused_shapes_and_dtypes_are_named_in_one_line(tmp_path):
    with h5py.File(tmp_path / "bad.h5", "w") as h5:
        expected = bad_datasets(h5)
    for name, fragment in expected.items():
        with pytest.raises(UsageError) as error:
            inspect_input(f"{tmp_path}/bad.h5:/{name}")
        message = str(error.value)
        assert f"bad.h5:/{name} " in message and fragment in message, (name, message)
        assert "\n" not in message


@pytest.mark.parametrize("name", ["scalar", "null", "no_columns", "vlen_string", "enum"])
def test_refused_shapes_and_dtypes_exit_2_from_the_cli(tmp_path, name):
    with h5py.File(tmp_path / "bad.h5", "w") as h5:
        fragment = bad_datasets(h5)[name]
    refused(f"{tmp_path}/bad.h5:/{name}", f"bad.h5:/{name}", fragment, tmp_path=tmp_path)


def test_bool_datasets_are_accepted(tmp_path):
    spec = write_dataset(tmp_path / "b.h5", np.array([True, False, True]))
    source = inspect_input(spec)
    assert np.dtype(source.dtype) == np.bool_ and source.n_rows == 3


# 7. Over 2**31 rows --------------------------------------------------------------------------


def test_reading_near_the_end_of_a_dataset_over_2_31_rows(tmp_path):
    # Chunked, filled with a fill value, nothing written but the last rows: tiny on disk.
    n_rows = 2**31 + 5
    with h5py.File(tmp_path / "huge.h5", "w") as h5:
        x = h5.create_dataset("x", shape=(n_rows,), dtype="i1", chunks=(2**16,), fillvalue=3)
        x[n_rows - 7 :] = np.arange(7, dtype="i1")
    source = inspect_input(f"{tmp_path}/huge.h5:/x")
    assert source.n_rows == n_rows
    chunk_rows = 2**20
    n_chunks = count_chunks(source.n_rows, chunk_rows)
    chunks = {
        index: data.copy()
        for index, data in read_chunks(source, [n_chunks - 2, n_chunks - 1], chunk_rows, bool)
    }
    assert len(chunks[n_chunks - 1]) == 5 and len(chunks[n_chunks - 2]) == chunk_rows
    tail = np.concatenate([chunks[n_chunks - 2], chunks[n_chunks - 1]])[-8:]
    np.testing.assert_array_equal(tail, [3, 0, 1, 2, 3, 4, 5, 6])


# 8. Naming the dataset -----------------------------------------------------------------------


def test_input_without_a_dataset_lists_the_datasets(tmp_path):
    write_dataset(tmp_path / "d.h5", np.zeros((10, 3), np.float32), name="temperature")
    write_dataset(tmp_path / "d.h5", np.zeros(4, np.int16), name="grid/pressure")
    line = refused(str(tmp_path / "d.h5"), "d.h5", "names no dataset", tmp_path=tmp_path)
    assert "/grid/pressure (4,) int16" in line and "/temperature (10, 3) float32" in line
    line = refused(f"{tmp_path}/d.h5:/temprature", "did you mean '/temperature'", tmp_path=tmp_path)
    assert "/grid/pressure (4,) int16" in line


def test_a_misspelt_file_name_gets_a_suggestion(tmp_path):
    write_dataset(tmp_path / "data.h5", np.zeros(3))
    with pytest.raises(UsageError, match=r"'.*dta\.h5' does not exist \(did you mean '.*data\.h5'"):
        inspect_input(f"{tmp_path}/dta.h5:/x")


def test_the_listing_stops_after_twenty_datasets(tmp_path):
    with h5py.File(tmp_path / "many.h5", "w") as h5:
        for index in range(25):
            h5[f"d{index:02d}"] = np.zeros(2)
    with pytest.raises(UsageError) as error:
        inspect_input(str(tmp_path / "many.h5"))
    assert "/d19 (2,) float64" in str(error.value) and "/d20" not in str(error.value)
    assert "(5 more)" in str(error.value)


# 9. netCDF-3 ---------------------------------------------------------------------------------


def test_netcdf3_file_gets_the_nccopy_hint(tmp_path):
    (tmp_path / "classic.nc").write_bytes(b"CDF\x01" + bytes(60))
    refused(
        f"{tmp_path}/classic.nc:/t", "classic.nc", "netCDF-3", "nccopy -k nc4", tmp_path=tmp_path
    )
