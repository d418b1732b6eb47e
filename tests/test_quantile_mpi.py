"""quantile gives one rank's bits at any rank count and batch size (mpiexec -n 2 or 3)."""

import warnings

import numpy as np
import pytest
from helpers import root_attrs, spy_on_exchange
from mpi4py import MPI
from ncdata import write_netcdf

import hpcapp
from hpcapp.errors import HpcappError, KernelError
from hpcapp.kernels import quantile as quantile_module
from hpcapp.parallel import transpose

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(120)]
Q = [0.1, 0.5, 0.9]


def packed_input(shared_dir, zlib=False):
    """Rank 0 writes a packed field with gaps (time 37, lat 5, lon 7); every rank gets the spec.

    Contiguous, ranks read their own slabs of every record; deflated (``zlib``), in chunks of
    every cell, they exchange record chunks (transpose.reads_tiles).
    """
    comm = MPI.COMM_WORLD
    path = shared_dir / ("in-z.nc" if zlib else "in.nc")
    if comm.rank == 0:
        rng = np.random.default_rng(7)
        stored = rng.integers(-3000, 3000, size=(37, 5, 7)).astype(np.int16)
        stored[rng.random(stored.shape) < 0.25] = -32767
        stored[:, 1, 2] = -32767
        attrs = {"scale_factor": 0.01, "add_offset": 280.0, "units": "K"}
        write_netcdf(path, stored, attrs=attrs, fill_value=-32767, zlib=zlib)
    comm.Barrier()
    return f"{path}:/tas"


def decoded(spec):
    xr = pytest.importorskip("xarray")
    with xr.open_dataset(spec.split(":")[0]) as ds:
        return ds["tas"].astype("float64").values


def nanquantile(values, q, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the all-missing cell
        return np.nanquantile(values, q, **options)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"chunk_rows": 3},
        {"chunk_rows": 4, "memory_per_rank": "200.003MiB"},  # a few slabs of lat a batch
        {"chunk_rows": 2, "memory_per_rank": "200.002MiB"},
    ],
)
@pytest.mark.parametrize("method", ["linear", "nearest"])
@pytest.mark.parametrize("zlib", [False, True])  # own slabs read, or record chunks exchanged
def test_per_cell_bits_do_not_depend_on_ranks_or_batches(shared_dir, options, method, zlib):
    spec = packed_input(shared_dir, zlib)
    params = {"q": Q, "method": method}
    out = shared_dir / f"out-{method}-{zlib}.nc"
    world = hpcapp.run("quantile", spec, params=params, root=None, output=str(out), **options)
    if MPI.COMM_WORLD.rank == 0 and "memory_per_rank" in options:
        assert root_attrs(out)["series_batches"] > 1  # the budget did cut the cells
    alone = hpcapp.run("quantile", spec, params=params, comm=MPI.COMM_SELF)
    want = nanquantile(decoded(spec), Q, axis=0, method=method)
    assert world["quantile"].tobytes() == alone["quantile"].tobytes() == want.tobytes()


@pytest.mark.parametrize("decoded_first", [False, True])  # int16 or float64 exchanged
def test_records_sent_in_pieces_give_the_same_bits(shared_dir, monkeypatch, decoded_first):
    spec = packed_input(shared_dir, zlib=True)  # chunked storage: the exchange
    exchanged = []
    spy_on_exchange(monkeypatch, lambda send: exchanged.append(send.size))
    monkeypatch.setattr(transpose, "PIECE_BYTES", 64)  # every chunk of a rank a piece
    kernel = quantile_module.quantile
    if decoded_first:
        import dataclasses

        kernel = dataclasses.replace(kernel, packed=False)
    world = hpcapp.run(kernel, spec, params={"q": Q}, root=None, chunk_rows=3)
    size = MPI.COMM_WORLD.size
    assert len(exchanged) == -(-13 // size)  # 13 chunks of 3 records: a piece each
    want = nanquantile(decoded(spec), Q, axis=0)
    assert world["quantile"].tobytes() == want.tobytes()


def test_ranks_read_their_own_slabs_of_a_contiguous_input(shared_dir, monkeypatch):
    spec = packed_input(shared_dir)  # contiguous: 5 slabs of lat, at most 4 ranks
    exchanged, tiles = [], []
    read_tile = transpose.read_tile
    spy_on_exchange(monkeypatch, lambda send: exchanged.append(1))
    monkeypatch.setattr(transpose, "read_tile", lambda *a: tiles.append(a[3]) or read_tile(*a))
    world = hpcapp.run("quantile", spec, params={"q": Q}, root=None, chunk_rows=3)
    assert exchanged == [] and len(tiles) == 1
    size, (n, start) = MPI.COMM_WORLD.size, tiles[0]
    assert n % 7 == 0 and start % 7 == 0  # whole slabs of lat (7 cells of lon each)
    assert sum(MPI.COMM_WORLD.allgather(n)) == 5 * 7 and size <= 5
    want = nanquantile(decoded(spec), Q, axis=0)
    assert world["quantile"].tobytes() == want.tobytes()


@pytest.mark.parametrize(("code", "fill"), [("u1", 255), ("i1", -128), ("u2", 65535)])
def test_packed_bytes_travel_as_stored_at_any_rank_count(shared_dir, code, fill):
    comm = MPI.COMM_WORLD
    path = shared_dir / f"small-{code}.nc"
    if comm.rank == 0:
        rng = np.random.default_rng(3)
        info = np.iinfo(code)
        stored = rng.integers(info.min, info.max, size=(29, 4, 5), endpoint=True).astype(code)
        stored[rng.random(stored.shape) < 0.2] = fill
        attrs = {"scale_factor": np.float32(-0.5), "add_offset": np.float32(10.0)}
        write_netcdf(path, stored, attrs=attrs, fill_value=np.array(fill, code))
    comm.Barrier()
    spec, params = f"{path}:/tas", {"q": Q, "method": "median_unbiased"}
    world = hpcapp.run("quantile", spec, params=params, root=None, chunk_rows=3)
    alone = hpcapp.run("quantile", spec, params=params, comm=MPI.COMM_SELF)
    want = nanquantile(decoded(spec), Q, axis=0, method="median_unbiased")
    assert world["quantile"].tobytes() == alone["quantile"].tobytes() == want.tobytes()


@pytest.mark.parametrize("method", ["linear", "higher", "weibull"])
def test_whole_field_bits_do_not_depend_on_ranks(shared_dir, method):
    spec = packed_input(shared_dir)
    params = {"q": [0.0, *Q, 1.0], "method": method}
    world = hpcapp.run("quantile", spec, over="time,lat,lon", params=params, root=None)
    want = nanquantile(decoded(spec), params["q"], method=method)
    assert world["quantile"].tobytes() == want.tobytes()
    median = hpcapp.run("median", spec, over="time,lat,lon", root=None, chunk_rows=5)
    assert median["median"].tobytes() == nanquantile(decoded(spec), 0.5).tobytes()


def test_a_kernel_failure_on_one_rank_fails_every_rank(shared_dir, monkeypatch):
    spec = packed_input(shared_dir)

    def broken(*args, **kwargs):
        raise ValueError("broken on purpose")

    if MPI.COMM_WORLD.rank == 1:
        monkeypatch.setattr(quantile_module, "cell_quantiles", broken)
    with pytest.raises(KernelError, match=r"rank 1.*broken on purpose"):
        hpcapp.run("quantile", spec, params={"q": Q}, root=None)


def test_a_read_failure_on_one_rank_fails_every_rank(shared_dir, monkeypatch):
    spec = packed_input(shared_dir)

    def unreadable(*args, **kwargs):
        raise HpcappError("chunk 3 could not be read on purpose")

    if MPI.COMM_WORLD.rank == MPI.COMM_WORLD.size - 1:
        monkeypatch.setattr(transpose, "read_block", unreadable)
    with pytest.raises(HpcappError, match="on purpose"):
        hpcapp.run("quantile", spec, params={"q": Q}, root=None, memory_per_rank="200.01MiB")
