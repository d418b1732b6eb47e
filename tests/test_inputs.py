"""Inputs: right or refused. Every kind of HDF5 input gives numpy's numbers or exit code 2.

End-to-end tests run the real CLI (``run_cli``) and compare ``stats`` with numpy on the whole
array, or check exit code 2 and one ``hpcapp: error`` line that names the file and dataset.
"""

import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
from conftest import REPO, read_results, run_cli, sample_data, write_dataset

from hpcapp.errors import UsageError
from hpcapp.io.names import locate
from hpcapp.partition import count_chunks
from hpcapp.reader import ChunkReadError, read_chunks
from hpcapp.source import Source, inspect_input

PRIVATE_FILTER = 65000  # in the range HDF5 leaves unregistered: no plugin provides it


def stats(spec, out, n_ranks=2, chunk_rows=None, env=None, extra=()):
    """Run ``stats`` and return its results, failing the test if it did not exit 0."""
    args = ["run", "stats", spec, "-o", str(out), "-q", *extra]
    if chunk_rows is not None:
        args += ["--chunk-rows", str(chunk_rows)]
    done = run_cli(args, n_ranks, env=env)
    assert done.returncode == 0, done.stderr
    return read_results(out)


def assert_matches_numpy(got, data):
    columns = data.reshape(len(data), -1).astype(np.float64)
    np.testing.assert_array_equal(np.atleast_1d(got["count"]), np.sum(~np.isnan(columns), 0))
    np.testing.assert_allclose(np.atleast_1d(got["mean"]), np.nanmean(columns, 0), rtol=1e-12)
    np.testing.assert_allclose(np.atleast_1d(got["var"]), np.nanvar(columns, 0), rtol=1e-9)
    np.testing.assert_array_equal(np.atleast_1d(got["min"]), np.nanmin(columns, 0))
    np.testing.assert_array_equal(np.atleast_1d(got["max"]), np.nanmax(columns, 0))


def bits(results):
    return {key: np.asarray(value).tobytes() for key, value in results.items()}


def refused(spec, *fragments, n_ranks=1, env=None, tmp_path=None):
    """Run ``stats`` on a bad input: exit 2, one error line holding every fragment."""
    out = tmp_path / "refused.h5"
    done = run_cli(["run", "stats", spec, "-o", str(out)], n_ranks, env=env)
    assert done.returncode == 2, (spec, done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("hpcapp: error: "), (spec, done.stderr)
    for fragment in fragments:
        assert fragment in lines[0], (spec, fragment, lines[0])
    assert not out.exists()
    return lines[0]


# 1. Compression filters ---------------------------------------------------------------------


FILTERS = {
    "gzip+shuffle+fletcher32": dict(compression="gzip", shuffle=True, fletcher32=True),
    "lzf": dict(compression="lzf"),
    "lzf+shuffle": dict(compression="lzf", shuffle=True),
    "fletcher32": dict(fletcher32=True),
}


@pytest.mark.parametrize("chunk_rows", [256, 100])  # a multiple of the HDF5 chunk, and not
def test_filtered_datasets_equal_an_uncompressed_copy_bit_for_bit(tmp_path, chunk_rows):
    data = sample_data(2000, 3, "float64", nan=0.01)
    plain = stats(write_dataset(tmp_path / "plain.h5", data), tmp_path / "p.h5", 2, chunk_rows)
    assert_matches_numpy(plain, data)
    for name, options in FILTERS.items():
        spec = write_dataset(tmp_path / f"{name}.h5", data, chunks=(128, 3), **options)
        got = stats(spec, tmp_path / f"{name}-out.h5", 2, chunk_rows)
        assert bits(got) == bits(plain), name


# 2. Filter plugins ---------------------------------------------------------------------------


def write_with_hdf5plugin(path, data):
    """Write ``data`` compressed with Zstd, Blosc and LZ4 in a process that has hdf5plugin."""
    np.save(path.with_suffix(".npy"), data)
    script = textwrap.dedent(
        f"""
        import h5py, hdf5plugin, numpy as np
        data = np.load({str(path.with_suffix(".npy"))!r})
        with h5py.File({str(path)!r}, "w") as h5:
            h5.create_dataset("zstd", data=data, chunks=(100,), **hdf5plugin.Zstd())
            h5.create_dataset("blosc", data=data, chunks=(100,), **hdf5plugin.Blosc())
            h5.create_dataset("lz4", data=data, chunks=(100,), **hdf5plugin.LZ4())
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def hide_hdf5plugin(tmp_path):
    """Return an environment in which ``import hdf5plugin`` fails, as if it were absent."""
    stub = tmp_path / "no_hdf5plugin"
    stub.mkdir()
    (stub / "hdf5plugin.py").write_text("raise ImportError('hidden by the test')\n")
    return {"PYTHONPATH": f"{stub}{os.pathsep}{REPO}", "HDF5_PLUGIN_PATH": str(tmp_path / "no")}


def test_hdf5plugin_filters_read_when_installed_and_are_named_when_not(tmp_path):
    pytest.importorskip("hdf5plugin")  # the `test` extra installs it
    data = sample_data(1000, None, "float64", nan=0.02)
    write_with_hdf5plugin(tmp_path / "z.h5", data)
    plain = stats(write_dataset(tmp_path / "plain.h5", data), tmp_path / "p.h5", 2, 150)
    for name in ("zstd", "blosc", "lz4"):
        got = stats(f"{tmp_path}/z.h5:/{name}", tmp_path / f"{name}.h5", 2, 150)
        assert bits(got) == bits(plain), name
    scatter = ("--distribute", "scatter")  # rank 0 reads for all: it loads the plugin too
    got = stats(f"{tmp_path}/z.h5:/zstd", tmp_path / "scatter.h5", 3, 150, extra=scatter)
    assert bits(got) == bits(plain)
    refused(
        f"{tmp_path}/z.h5:/zstd",
        "z.h5:/zstd",
        "filter 32015 (zstd)",
        "pip install hdf5plugin",
        "HDF5_PLUGIN_PATH",
        env=hide_hdf5plugin(tmp_path),
        tmp_path=tmp_path,
    )


def write_private_filter(path):
    """A dataset whose chunks need filter PRIVATE_FILTER, which no plugin provides."""
    with h5py.File(path, "w") as h5:
        dataset = h5.create_dataset(
            "x",
            shape=(200,),
            dtype="f8",
            chunks=(100,),
            compression=PRIVATE_FILTER,
            allow_unknown_filter=True,
        )
        for chunk in range(2):
            dataset.id.write_direct_chunk((chunk * 100,), np.arange(100.0).tobytes())
    return f"{path}:/x"


def test_unavailable_filter_is_refused_before_any_work(tmp_path):
    spec = write_private_filter(tmp_path / "private.h5")
    refused(
        spec, "private.h5:/x", f"filter {PRIVATE_FILTER}", "HDF5_PLUGIN_PATH", tmp_path=tmp_path
    )


def test_a_read_failing_for_a_missing_filter_names_the_filter(tmp_path):
    # A rank whose node lacks the plugin that rank 0 had: the read error says which filter.
    write_private_filter(tmp_path / "private.h5")
    source = Source(200, (), "<f8", path=str(tmp_path / "private.h5"), dataset="/x")
    items = list(read_chunks(source, [0, 1], 100, lambda: False))
    assert [index for index, _ in items] == [0, 1]
    for _, item in items:
        assert isinstance(item, ChunkReadError)
        assert f"filter {PRIVATE_FILTER}" in str(item) and "private.h5:/x" in str(item)


def test_a_file_replaced_after_inspection_fails_the_read_not_the_numbers(tmp_path):
    spec = write_dataset(tmp_path / "in.h5", np.arange(100.0))
    source = inspect_input(spec)
    (tmp_path / "in.h5").unlink()
    write_dataset(tmp_path / "in.h5", np.arange(60.0))
    items = list(read_chunks(source, [0, 1], 50, lambda: False))
    assert all(isinstance(item, ChunkReadError) for _, item in items)
    assert "now has shape (60,)" in str(items[0][1])


# 3. External links ---------------------------------------------------------------------------


def test_external_links_read_their_target_or_name_the_missing_file(tmp_path):
    data = sample_data(700, 2, "float32")
    write_dataset(tmp_path / "target.h5", data, name="inner/x")
    with h5py.File(tmp_path / "links.h5", "w") as h5:
        h5["ok"] = h5py.ExternalLink("target.h5", "/inner/x")  # relative: beside links.h5
        h5["gone"] = h5py.ExternalLink("missing.h5", "/x")
        h5["wrong"] = h5py.ExternalLink("target.h5", "/nothing")
        h5["via"] = h5py.ExternalLink("target.h5", "/inner")  # a group in the other file
    assert_matches_numpy(stats(f"{tmp_path}/links.h5:/ok", tmp_path / "ok.h5", 2, 64), data)
    assert_matches_numpy(stats(f"{tmp_path}/links.h5:/via/x", tmp_path / "via.h5", 1), data)
    refused(f"{tmp_path}/links.h5:/gone", "links.h5:/gone", "'missing.h5'", tmp_path=tmp_path)
    refused(f"{tmp_path}/links.h5:/wrong", "links.h5:/wrong", "/nothing", tmp_path=tmp_path)


def test_external_raw_storage_is_found_as_hdf5_finds_it_or_refused(tmp_path, monkeypatch):
    data = np.arange(300.0).reshape(100, 3)
    data.tofile(tmp_path / "raw.bin")
    with h5py.File(tmp_path / "e.h5", "w") as h5:
        h5.create_dataset("x", shape=(100, 3), dtype="f8", external=[("raw.bin", 0, 2400)])
    spec = f"{tmp_path}/e.h5:/x"
    # HDF5 resolves raw files from the current directory, not the HDF5 file's.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    refused(spec, "e.h5:/x", "'raw.bin'", "not found", "HDF5_EXTFILE_PREFIX", tmp_path=tmp_path)
    origin = {"HDF5_EXTFILE_PREFIX": "${ORIGIN}"}
    assert_matches_numpy(stats(spec, tmp_path / "o.h5", 2, 30, env=origin), data)
    monkeypatch.chdir(tmp_path)
    assert inspect_input(spec).n_rows == 100
    (tmp_path / "raw.bin").write_bytes(data.tobytes()[:1000])  # HDF5 would read zeros
    with pytest.raises(UsageError, match=r"raw\.bin.*shorter"):
        inspect_input(spec)


# 4. Virtual datasets -------------------------------------------------------------------------


def write_vds(directory, parts):
    """A VDS ``v.h5:/v`` concatenating ``src{i}.h5:/d`` (relative names, like most writers)."""
    rows = sum(len(part) for part in parts)
    layout = h5py.VirtualLayout(shape=(rows, parts[0].shape[1]), dtype=parts[0].dtype)
    start = 0
    for index, part in enumerate(parts):
        write_dataset(directory / f"src{index}.h5", part, name="d")
        layout[start : start + len(part)] = h5py.VirtualSource(
            f"src{index}.h5", "d", shape=part.shape
        )
        start += len(part)
    with h5py.File(directory / "v.h5", "w") as h5:
        h5.create_virtual_dataset("v", layout, fillvalue=-1.0)
    return f"{directory}/v.h5:/v"


def test_virtual_dataset_equals_the_concatenation_or_names_the_missing_source(tmp_path):
    parts = [sample_data(rows, 2, "float64", seed=rows) for rows in (300, 250, 410)]
    spec = write_vds(tmp_path, parts)
    assert_matches_numpy(stats(spec, tmp_path / "ok.h5", 2, 128), np.concatenate(parts))
    (tmp_path / "src1.h5").unlink()  # HDF5 would now read fill values for rows 300-549
    refused(spec, "v.h5:/v", "'src1.h5'", "fill values", tmp_path=tmp_path)


def test_virtual_source_without_its_dataset_is_refused(tmp_path):
    parts = [sample_data(50, 2, "float64")] * 2
    spec = write_vds(tmp_path, parts)
    with h5py.File(tmp_path / "src0.h5", "a") as h5:
        del h5["d"]
    with pytest.raises(UsageError, match=r"v\.h5:/v .*src0\.h5:d"):
        inspect_input(spec)


def test_virtual_source_shorter_than_its_mapping_is_refused(tmp_path):
    write_dataset(tmp_path / "s.h5", np.arange(10.0), name="d")
    layout = h5py.VirtualLayout(shape=(20,), dtype="f8")
    layout[:] = h5py.VirtualSource("s.h5", "d", shape=(20,))  # the writer's idea of its size
    with h5py.File(tmp_path / "v.h5", "w") as h5:
        h5.create_virtual_dataset("v", layout)
    with pytest.raises(UsageError, match=r"v\.h5:/v .*maps 20 values from .*s\.h5:d.*\(10,\)"):
        inspect_input(f"{tmp_path}/v.h5:/v")
    layout = h5py.VirtualLayout(shape=(8,), dtype="f8")
    layout[:] = h5py.VirtualSource("s.h5", "d", shape=(20,))[12:]  # a hyperslab past its end
    with h5py.File(tmp_path / "v.h5", "w") as h5:
        h5.create_virtual_dataset("v", layout)
    with pytest.raises(UsageError, match=r"up to \(20,\) of .*s\.h5:d.*\(10,\)"):
        inspect_input(f"{tmp_path}/v.h5:/v")


def test_locate_searches_like_hdf5(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "s.h5").write_bytes(b"")
    parent = str(tmp_path / "a" / "v.h5")
    assert locate("s.h5", parent, "HDF5_VDS_PREFIX") is None
    monkeypatch.setenv("HDF5_VDS_PREFIX", "${ORIGIN}/../b")
    assert locate("s.h5", parent, "HDF5_VDS_PREFIX").samefile(tmp_path / "b" / "s.h5")
    # An absolute name that moved is looked for by its base name, as HDF5 does.
    assert locate("/elsewhere/s.h5", parent, "HDF5_VDS_PREFIX") is not None
    monkeypatch.delenv("HDF5_VDS_PREFIX")
    (tmp_path / "a" / "s.h5").write_bytes(b"")
    assert locate("s.h5", parent, "HDF5_VDS_PREFIX").samefile(tmp_path / "a" / "s.h5")


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
    h5["cube"] = np.zeros((2, 2, 2))
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
        "cube": "3 dimensions",
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


def test_refused_shapes_and_dtypes_exit_2_with_one_line_each(tmp_path):
    with h5py.File(tmp_path / "bad.h5", "w") as h5:
        expected = bad_datasets(h5)
    for name, fragment in expected.items():
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
