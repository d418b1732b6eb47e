"""Inputs: right or refused. Compressed, linked, virtual and externally stored datasets.

End-to-end tests run the command line (in this process, or under mpiexec where a process's
environment or several ranks matter) and compare ``stats`` with numpy on the whole array, or
check exit code 2 and one ``hpcapp: error`` line that names the file and dataset.
"""

import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
from helpers import REPO, sample_data, write_dataset
from input_helpers import assert_matches_numpy, bits, refused, stats

from hpcapp.errors import UsageError
from hpcapp.io.names import locate
from hpcapp.io.reader import ChunkReadError, read_chunks
from hpcapp.io.sources.checks import inspect_input
from hpcapp.io.sources.hdf5 import Hdf5Source

PRIVATE_FILTER = 65000  # in the range HDF5 leaves unregistered: no plugin provides it


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
    """Write ``data`` compressed with Zstd and LZ4 in a process that has hdf5plugin."""
    np.save(path.with_suffix(".npy"), data)
    for name, filter_call in (("zstd", "Zstd"), ("lz4", "LZ4")):
        script = textwrap.dedent(
            f"""
            import h5py, hdf5plugin, numpy as np
            data = np.load({str(path.with_suffix(".npy"))!r})
            with h5py.File({str(path)!r}, "a") as h5:
                h5.create_dataset({name!r}, data=data, chunks=(100,), **hdf5plugin.{filter_call}())
            """
        )
        # Not Blosc: in two CI runs (never when run alone) hdf5plugin 7.1's Blosc writer failed
        # in its set_local callback with an error from another HDF5 (2.2.0, the one netCDF4's
        # wheel bundles) than h5py's (2.0.0): a fault in writing this input, not in reading it.
        done = subprocess.run([sys.executable, "-c", script], timeout=60, capture_output=True)
        assert done.returncode == 0, done.stderr.decode()


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
    for name in ("zstd", "lz4"):
        got = stats(f"{tmp_path}/z.h5:/{name}", tmp_path / f"{name}.h5", 2, 150)
        assert bits(got) == bits(plain), name
    scatter = ("--distribute", "scatter")  # rank 0 reads for all: it loads the plugin too
    got = stats(f"{tmp_path}/z.h5:/zstd", tmp_path / "scatter.h5", 3, 150, env={}, extra=scatter)
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
    source = Hdf5Source(200, (), "<f8", path=str(tmp_path / "private.h5"), dataset="/x")
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
