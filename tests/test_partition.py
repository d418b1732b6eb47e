"""Partitioning is pure and total: shares cover every item once, for any n and size."""

import itertools

import numpy as np
import pytest

from hpcapp.partition import (
    block,
    chunk_bounds,
    count_chunks,
    cyclic_chunk_rows,
    default_chunk_rows,
    rank_chunks,
    share,
)


@pytest.mark.parametrize("n", [0, 1, 2, 5, 7, 64, 100, 1001])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 7, 64, 1000])
def test_block_covers_every_item_once(n, size):
    shares = [block(n, size, rank) for rank in range(size)]
    assert sum(count for count, _ in shares) == n
    position = 0
    for count, start in shares:
        assert start == position
        position += count
    counts = [count for count, _ in shares]
    assert max(counts) - min(counts) <= 1
    # The remainder goes to the first ranks.
    assert counts == sorted(counts, reverse=True)


def test_more_ranks_than_items_gives_empty_shares():
    assert [block(3, 5, rank) for rank in range(5)] == [(1, 0), (1, 1), (1, 2), (0, 3), (0, 3)]
    assert list(rank_chunks(3, 5, 4)) == []


def test_block_rejects_nonsense():
    with pytest.raises(ValueError):
        block(10, 0, 0)
    with pytest.raises(ValueError):
        block(10, 2, 2)


@pytest.mark.parametrize("n_rows,chunk_rows", [(1, 1), (10, 3), (10, 10), (10, 100), (1000, 7)])
def test_chunks_tile_the_rows(n_rows, chunk_rows):
    n_chunks = count_chunks(n_rows, chunk_rows)
    bounds = [chunk_bounds(i, n_rows, chunk_rows) for i in range(n_chunks)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n_rows
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert all(stop - start <= chunk_rows for start, stop in bounds)
    with pytest.raises(IndexError):
        chunk_bounds(n_chunks, n_rows, chunk_rows)


def test_count_chunks_rejects_zero_rows_per_chunk():
    with pytest.raises(ValueError):
        count_chunks(10, 0)


def test_default_chunk_rows_targets_a_few_mib_and_storage_chunks():
    assert default_chunk_rows(8) == 4 * 1024 * 1024 // 8
    assert default_chunk_rows(8, storage_chunk_rows=1000) % 1000 == 0
    assert default_chunk_rows(10**9) == 1
    assert default_chunk_rows(10**9, storage_chunk_rows=16) == 16


@pytest.mark.parametrize("n_rows", [2**31 - 1, 2**31, 2**31 + 5, 2**32 + 3, 2**40, 2**40 + 7])
@pytest.mark.parametrize("chunk_rows", [1, 2**20, 3 * 2**20 + 1])
def test_plan_arithmetic_past_2_31_rows(n_rows, chunk_rows):
    n_chunks = count_chunks(n_rows, chunk_rows)
    assert n_chunks == -(-n_rows // chunk_rows)
    last = chunk_bounds(n_chunks - 1, n_rows, chunk_rows)
    assert last[1] == n_rows and 0 < last[1] - last[0] <= chunk_rows
    assert chunk_bounds(n_chunks - 2, n_rows, chunk_rows)[1] == last[0]
    # The same from numpy integers (an h5py shape, an MPI buffer): no int32 wrap-around.
    for kind in (np.int64, np.uint64):
        assert count_chunks(kind(n_rows), np.int32(chunk_rows)) == n_chunks
        assert chunk_bounds(kind(n_chunks - 1), kind(n_rows), np.int32(chunk_rows)) == last
        assert all(type(value) is int for value in last)
    assert chunk_bounds(np.int32(2**31 - 1), 2**62, np.int32(2**20))[0] == (2**31 - 1) * 2**20
    for size in (1, 3, 1000):
        ranges = [r for rank in range(size) for r in share([(0, n_chunks)], np.int32(size), rank)]
        assert ranges[0].start == 0 and ranges[-1].stop == n_chunks
        assert all(a.stop == b.start for a, b in itertools.pairwise(ranges))
    count, start = block(np.int64(n_chunks), 7, np.int32(6))
    assert start + count == n_chunks and type(start) is int


def test_default_chunk_rows_for_wide_rows_and_numpy_sizes():
    assert default_chunk_rows(np.int64(8), np.int32(2**20)) == 2**20
    assert type(default_chunk_rows(np.int64(3), np.uint64(7))) is int


@pytest.mark.parametrize(
    "groups,row_bytes,storage,expected",
    [
        (366, 90 * 180 * 2, None, 4 * 366),  # 4 cycles of 32 KB rows fit in 128 MiB
        (366, 180 * 360 * 2, None, 2 * 366),  # 127 KB rows: two cycles fit, three do not
        (366, 90 * 180 * 2, 16, 1472),  # rounded up to whole storage chunks
        (366, 360 * 720 * 2, None, 10),  # not one cycle fits: the default stays
        (12, 1000, None, 100),  # never fewer rows than the default
    ],
)
def test_cyclic_chunks_hold_whole_cycles_within_their_bytes(groups, row_bytes, storage, expected):
    rows = cyclic_chunk_rows(100 if groups == 12 else 10, groups, row_bytes, storage)
    assert rows == expected
    if rows > 100:
        assert rows * row_bytes <= 128 * 1024 * 1024
