"""Grouped partials: the in-place merge and the vectorised stats give today's bits exactly."""

import numpy as np
import pytest
from helpers import run_here, write_dataset

from hpcapp.io import memory_groups
from hpcapp.kernels import grouped_merge as grouped_module
from hpcapp.kernels import grouped_stats, nd
from hpcapp.kernels.grouped import NO_GROUP, Labelled, consuming_finish, group_kernel
from hpcapp.kernels.grouped_merge import GROUP_KEY, consuming_merge
from hpcapp.kernels.grouped_stats import by_record, by_size
from hpcapp.kernels.packed import LinearUnpack, Packed
from hpcapp.kernels.stats_select import trim_partial

PARAMS = {"bins": 64, "range": None, "over": (0,)}


def awkward(shape, dtype, seed=0):
    """Values with NaN, +-inf, -0.0 and a spread of magnitudes."""
    rng = np.random.default_rng(seed)
    data = (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4, shape)).astype(dtype)
    flat = data.reshape(-1)
    picks = rng.choice(flat.size, size=min(flat.size, 40), replace=False)
    specials = np.array([np.nan, np.inf, -np.inf, -0.0], dtype)
    flat[picks] = specials[np.arange(len(picks)) % 4]
    return data


def per_group(data, labels):
    """The grouped partial made one kernel call per group, as before the vectorised path."""
    present = np.unique(labels)
    parts = [nd.stats(data[labels == label], **PARAMS) for label in present]
    return {GROUP_KEY: present, **{key: np.stack([p[key] for p in parts]) for key in parts[0]}}


def assert_same_bits(got, expected):
    assert got.keys() == expected.keys()
    for key in expected:
        a, b = np.asarray(got[key]), np.asarray(expected[key])
        assert a.dtype == b.dtype and a.shape == b.shape, key
        assert a.tobytes() == b.tobytes(), key


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("row_shape", [(), (5,), (3, 4)])
def test_one_record_per_group_is_vectorised_with_the_same_bits(dtype, row_shape):
    data = awkward((23, *row_shape), dtype)
    labels = np.random.default_rng(1).permutation(100)[:23].astype(np.int64)  # unsorted
    kern = group_kernel(nd.stats)
    assert by_record(nd.stats, data, labels, np.unique(labels), PARAMS) is not None
    assert_same_bits(kern.func(Labelled(data, labels), **PARAMS), per_group(data, labels))


def test_groups_of_several_records_go_group_by_group():
    data = awkward((12, 4), "float64")
    labels = np.repeat(np.arange(6), 2)
    assert by_record(nd.stats, data, labels, np.unique(labels), PARAMS) is None
    kern = group_kernel(nd.stats)
    assert_same_bits(kern.func(Labelled(data, labels), **PARAMS), per_group(data, labels))


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("row_shape", [(), (5,), (3, 4)])
@pytest.mark.parametrize("fused_min", [1 << 17, 30])  # 30: the larger groups are compiled
def test_groups_of_several_records_side_by_side_have_the_same_bits(
    monkeypatch, dtype, row_shape, fused_min
):
    monkeypatch.setattr(grouped_stats.column_stats, "FUSED_MIN_VALUES", fused_min)
    monkeypatch.setattr(grouped_stats, "SIDE_BYTES", 64)  # batches of a few groups
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 9, 40).astype(np.int64)  # groups of 1 to ~10 records, interleaved
    data = awkward((40, *row_shape), dtype, seed=6)
    present = np.unique(labels)
    assert by_size(nd.stats, data, labels, present, PARAMS) is not None
    got = group_kernel(nd.stats).func(Labelled(data, labels), **PARAMS)
    assert_same_bits(got, per_group(data, labels))


@pytest.mark.parametrize("asked", [None, "mean", "std", "min,max"])
@pytest.mark.parametrize("fused_min", [1 << 17, 40])
def test_packed_groups_side_by_side_have_the_same_bits(monkeypatch, asked, fused_min):
    monkeypatch.setattr(grouped_stats.column_stats, "FUSED_MIN_VALUES", fused_min)
    rng = np.random.default_rng(7)
    stored = rng.integers(-3000, 3000, (30, 4, 5)).astype(np.int16)
    stored[rng.random(stored.shape) < 0.1] = -32767
    unpack = LinearUnpack("i2", "float32", fills=(-32767,), keep_lo=-32767, keep_hi=32767,
                          scale=0.01, offset=273.15)  # fmt: skip
    labels = np.repeat(np.arange(10), 3)[rng.permutation(30)].astype(np.int64)
    params = {**PARAMS, "stats": asked} if asked else PARAMS
    kern = group_kernel(nd.stats)
    got = kern.func(Labelled(Packed(stored, unpack), labels), **params)
    parts = [nd.stats(Packed(stored[labels == label], unpack), **params) for label in range(10)]
    expected = {GROUP_KEY: np.arange(10), **{k: np.stack([p[k] for p in parts]) for k in parts[0]}}
    assert_same_bits(got, expected)


@pytest.mark.parametrize("asked", ["count", "nan_count", "sum", "mean", "std", "min", "max,sum"])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_numpy_stats_of_some_parts_have_the_bits_of_all_parts(asked, dtype):
    from hpcapp.kernels import stats as column_stats
    from hpcapp.kernels.stats_select import needed_parts

    chunk = awkward((7, 30), dtype, seed=9)
    needed = needed_parts({"stats": asked})
    some = column_stats._numpy_chunk_stats(chunk, needed)
    everything = column_stats._numpy_chunk_stats(chunk)
    assert set(some) == needed & set(everything)
    assert_same_bits(some, {key: everything[key] for key in some})


def grouped(labels, seed):
    data = awkward((len(labels), 3, 2), "float64", seed)
    return group_kernel(nd.stats).func(Labelled(data, np.asarray(labels, np.int64)), **PARAMS)


def copied(partial):
    return {key: np.array(value, copy=True) for key, value in partial.items()}


@pytest.mark.parametrize(
    "left_labels,right_labels",
    [
        ([1, 3, 5, 7, 9, 11], [3, 7]),  # right within left: left takes them in place
        ([3, 7], [1, 3, 5, 7, 9, 11]),  # left within right: right does
        ([1, 2, 3], [4, 5]),  # disjoint, left earlier: left grows in place
        ([1, 2, 3], [3, 4, 5]),  # sharing the boundary period: left grows, merged there
        ([4, 5], [1, 2, 3]),  # disjoint, right earlier: the union
        ([1, 2, 3, 8], [2, 4, 8, 9]),  # overlapping: the union
        ([1, 2, 3], [1, 2, 3]),  # the same groups
    ],
)
def test_consuming_merge_has_the_bits_of_the_copying_merge(left_labels, right_labels):
    kern = group_kernel(nd.stats)
    left, right = grouped(left_labels, 1), grouped(right_labels, 2)
    before = copied(left), copied(right)
    expected = kern.merge(left, right)
    assert_same_bits(left, before[0])  # the copying merge leaves both sides alone
    assert_same_bits(right, before[1])
    got = consuming_merge(kern)(left, right)
    assert_same_bits(got, expected)
    if set(right_labels) <= set(left_labels):
        assert np.shares_memory(got["m2"], left["m2"])  # in place: no new arrays
    elif set(left_labels) <= set(right_labels):
        assert np.shares_memory(got["m2"], right["m2"])


def test_earlier_side_grows_only_when_nothing_else_holds_its_arrays(monkeypatch):
    kern = group_kernel(nd.stats)
    grown, grow = {}, grouped_module._grown

    def spy(left, key, *args):
        array = grow(left, key, *args)
        grown[key] = array is not None
        return array

    monkeypatch.setattr(grouped_module, "_grown", spy)
    left, right = copied(grouped([1, 2, 3], 1)), copied(grouped([3, 4, 5], 2))
    expected = kern.merge(copied(left), copied(right))
    view = left["m2"][:2]  # a view elsewhere: growing would free the memory it reads
    kept = view.copy()
    assert_same_bits(consuming_merge(kern)(left, right), expected)
    assert view.tobytes() == kept.tobytes()
    assert grown["m2"] is False and grown["sum"] is True  # the held key was copied
    grown.clear()
    left, right = copied(grouped([1, 2, 3], 1)), copied(grouped([3, 4, 5], 2))
    assert_same_bits(consuming_merge(kern)(left, right), expected)
    assert len(grown) > 2 and all(grown.values())  # nothing else held them: every key grew in place


def test_read_only_partials_are_merged_into_new_arrays():
    kern = group_kernel(nd.stats)
    left, right = grouped([1, 2, 3], 1), grouped([2], 2)
    for value in left.values():
        value.flags.writeable = False
    expected = kern.merge(copied(left), copied(right))
    held = left["m2"]
    got = consuming_merge(kern)(left, right)
    assert_same_bits(got, expected)
    assert not np.shares_memory(got["m2"], held)
    assert GROUP_KEY in left and "m2" not in left  # consumed: each key dropped once laid out


def test_day_of_year_job_has_the_bits_of_the_copying_tree(tmp_path):
    """The engine's in-place merges give the bits the copying merge gives (16 chunks)."""
    data = awkward((64, 2, 3), "float32")
    labels = (np.arange(64) % 7).astype(np.int64)  # a group recurs every 7 records
    path = tmp_path / "in.h5"
    spec = write_dataset(path, data)
    write_dataset(path, labels, "day")
    results = run_here("stats", spec, chunk_rows=4, group_by="day")
    kern = group_kernel(nd.stats)
    partials = [
        kern.func(Labelled(data[i : i + 4], labels[i : i + 4]), **PARAMS) for i in range(0, 64, 4)
    ]
    while len(partials) > 1:  # the fixed tree over 16 chunks, merged by copying
        partials = [kern.merge(a, b) for a, b in zip(partials[::2], partials[1::2], strict=True)]
    expected = kern.finish(partials[0], PARAMS)
    assert results is not None
    for key in ("mean", "var", "min", "max", "count", "sum"):
        assert np.asarray(results[key]).tobytes() == np.asarray(expected[key]).tobytes(), key


@pytest.mark.parametrize("block_bytes", [1, 200, 1 << 24])
def test_finishing_in_blocks_has_the_bits_of_finishing_each_group(monkeypatch, block_bytes):
    monkeypatch.setattr(grouped_stats, "FINISH_BLOCK_BYTES", block_bytes)
    data = awkward((40, 3, 2), "float32")
    data[:, 0, 0] = np.nan  # a cell no group has a value in: NaN results
    labels = np.arange(40) % 9
    kern = group_kernel(nd.stats)
    partial = kern.func(Labelled(data, labels), **PARAMS)
    kept = {key: value for key, value in partial.items() if key != GROUP_KEY}
    assert grouped_stats.finish_in_blocks(nd.stats, kept, PARAMS, 9) is not None
    each = [nd.stats.finish({k: v[i] for k, v in kept.items()}, PARAMS) for i in range(9)]
    expected = {"group": np.arange(9), **{k: np.stack([e[k] for e in each]) for k in each[0]}}
    assert_same_bits(kern.finish(partial, PARAMS), expected)


@pytest.mark.parametrize("asked", ["mean", "mean,sum", "mean,std", None])
@pytest.mark.parametrize("block_bytes", [200, 1 << 24])
def test_the_engines_finish_writes_results_over_the_partial_with_the_same_bits(
    monkeypatch, asked, block_bytes
):
    monkeypatch.setattr(grouped_stats, "FINISH_BLOCK_BYTES", block_bytes)
    params = {**PARAMS, **({"stats": asked} if asked else {})}
    kern = group_kernel(nd.stats)
    data = awkward((40, 3, 2), "float64")
    data[:, 0, 0] = np.nan
    partial = kern.func(Labelled(data, np.arange(40) % 9), **params)
    expected = kern.finish(copied(partial), params)
    before = {key: value for key, value in partial.items()}  # the partial's own arrays
    got = consuming_finish(kern)(partial, params)
    assert_same_bits(got, expected)
    # A result no part of the partial is may take a part no result is (the mean, the sum's).
    reused = {
        key
        for key, value in got.items()
        if any(np.shares_memory(value, part) for part in before.values())
    }
    if asked == "mean":
        assert "mean" in reused and np.shares_memory(got["mean"], before["sum"])
    if asked is None:  # each over its own part, the variance over m2
        for key in ("sum", "mean", "min", "max"):
            assert np.shares_memory(got[key], before[key]), key
        assert np.shares_memory(got["var"], before["m2"])
    for key in reused - {"mean", "var", "std"}:  # results that are parts: kept as they were
        assert np.asarray(got[key]).tobytes() == np.asarray(expected[key]).tobytes()


def test_a_result_is_never_written_over_another_results_part():
    # finalize_stats's "sum" is a view of the partial's: the mean written there first would
    # change it, whatever order the results come in.
    part = {"count": np.zeros((4, 2), np.int64), "sum": np.zeros((4, 2)), "m2": np.zeros((4, 2))}
    block = {"mean": np.zeros((2, 2)), "sum": part["sum"][:2]}
    assert grouped_stats._spare(part, block, set(), block["mean"], 4, "mean") == "m2"
    assert grouped_stats._spare(part, block, {"m2"}, block["mean"], 4, "mean") is None
    # A result over its own part: each block's results are computed before any is written.
    assert grouped_stats._spare(part, block, {"m2"}, block["sum"], 4, "sum") == "sum"


@pytest.mark.parametrize("n_chunks", [1, 2, 3, 9, 20, 37, 64, 115, 1000])
@pytest.mark.parametrize("rows,most", [(1, 366), (32, 366), (129, 366), (30, 12), (500, 366)])
def test_tree_peak_tries_the_chunk_counts_where_the_peak_is(n_chunks, rows, most):
    tree = memory_groups._Tree(rows, n_chunks * rows, most, 0.2)
    every = max([*(tree.chunk_done(done) for done in range(n_chunks)), tree.fold(n_chunks)])
    assert memory_groups.tree_peak(n_chunks, rows, n_chunks * rows, most, 0.2) == every


def test_vectorised_stats_in_column_blocks_have_the_same_bits(monkeypatch):
    monkeypatch.setattr(grouped_stats, "COLUMN_BLOCK", 7)  # blocks cut across records
    data = awkward((11, 3, 4), "float32", seed=3)
    labels = np.arange(11)[::-1].astype(np.int64)
    got = group_kernel(nd.stats).func(Labelled(data, labels), **PARAMS)
    assert_same_bits(got, per_group(data, labels))


@pytest.mark.parametrize("asked", ["mean", "std", "min,max", "count,nan_count", "sum,var"])
@pytest.mark.parametrize("ordered", [True, False])
def test_vectorised_stats_compute_only_the_asked_parts_with_the_same_bits(asked, ordered):
    data = awkward((13, 2, 5), "float32", seed=4)
    labels = np.arange(13, dtype=np.int64)
    labels = labels if ordered else labels[::-1].copy()
    params = {**PARAMS, "stats": asked}
    assert by_record(nd.stats, data, labels, np.unique(labels), params) is not None
    got = group_kernel(nd.stats).func(Labelled(data, labels), **params)
    everything = per_group(data, labels)
    expected = {GROUP_KEY: everything.pop(GROUP_KEY), **trim_partial(everything, params)}
    assert_same_bits(got, expected)
    assert set(got) < set(per_group(data, labels))  # fewer parts than every statistic's


@pytest.mark.parametrize("start,stop", [(0, 1), (0, 9), (5, 9), (58, 115), (3, 64), (7, 8)])
def test_aligned_nodes_cover_the_chunks_as_the_fragment_tree_holds_them(start, stop):
    from hpcapp.parallel.reduce import FragmentTree

    tree = FragmentTree(lambda left, right: {})
    for chunk in range(start, stop):  # the nodes a rank holds after computing these chunks
        tree.add((0, chunk), {})
    assert sorted(memory_groups.aligned(start, stop)) == sorted(tree.nodes)


def test_rank_zero_holds_more_on_two_ranks_than_its_share_alone():
    one = memory_groups.rank_peak(9, 1, 129, 1096, 366, 0.2)
    assert one == memory_groups.tree_peak(9, 129, 1096, 366, 0.2)
    two = memory_groups.rank_peak(9, 2, 129, 1096, 366, 0.2)
    assert two > memory_groups.tree_peak(5, 129, 1096, 366, 0.2)


def merged_by_hand(left, right):
    """The grouped merge made one ``nd.stats.merge`` per shared label: the reference."""
    labels = np.union1d(left[GROUP_KEY], right[GROUP_KEY])
    keys = [key for key in left if key != GROUP_KEY]
    rows = []
    for label in labels:
        sides = [
            {key: side[key][np.flatnonzero(side[GROUP_KEY] == label)[0]] for key in keys}
            for side in (left, right)
            if label in side[GROUP_KEY]
        ]
        rows.append(nd.stats.merge(*sides) if len(sides) == 2 else sides[0])
    return {GROUP_KEY: labels, **{key: np.stack([row[key] for row in rows]) for key in keys}}


@pytest.mark.parametrize(
    "left_labels,right_labels",
    [
        ([1, 2], [2, 3]),  # neighbours sharing the boundary group: one run a side
        ([9, 10, 11], [1, 11, 12]),  # round a year's end: the right side in two runs
        ([1, 2, 3, 4, 5, 6], [6, 7, 8, 9, 10, 11, 12]),
        ([2, 4, 6, 8, 10, 12, 14, 16, 18], [1, 3, 5, 7, 9, 11, 13, 15, 17]),  # too many runs
        ([1, 2, 3, 8], [2, 4, 8, 9]),
        ([], [4, 5]),  # a side in no group: the other taken as it is
        ([4, 5], []),
    ],
)
def test_merge_has_the_bits_of_merging_group_by_group(left_labels, right_labels):
    kern = group_kernel(nd.stats)
    empty = grouped([1], 3)
    left, right = (
        grouped(labels, seed) if labels else {k: v[:0] for k, v in empty.items()}
        for labels, seed in ((left_labels, 1), (right_labels, 2))
    )
    expected = merged_by_hand(left, right)
    assert_same_bits(kern.merge(copied(left), copied(right)), expected)
    assert_same_bits(consuming_merge(kern)(left, right), expected)


@pytest.mark.parametrize(
    "labels",
    [
        [5, 1, 4, 2, 3, 0],  # one record per group: the vectorised path, on decoded values
        [0, 0, 0, 1, 1, 2],  # group by group, each group's stored rows
        [NO_GROUP, 0, 0, NO_GROUP, 1, 1],  # records in no group left out
        [NO_GROUP] * 6,  # no group at all: the keys and dtypes only
        [3] * 6,  # one group
    ],
)
@pytest.mark.parametrize("cells", [(4,), (150, 150)])  # numpy path, compiled path (one group)
def test_packed_chunks_give_the_bits_of_decoded_ones(labels, cells):
    unpack = LinearUnpack("i2", "float32", fills=(-32767,), keep_lo=-32767, keep_hi=32767,
                          scale=0.01, offset=273.15)  # fmt: skip
    rng = np.random.default_rng(5)
    stored = rng.integers(-3000, 3000, (6, *cells), dtype=np.int16)
    stored[rng.random(stored.shape) < 0.1] = -32767
    labels = np.asarray(labels, np.int64)
    kern = group_kernel(nd.stats)
    assert kern.packed
    got = kern.func(Labelled(Packed(stored, unpack), labels), **PARAMS)
    assert_same_bits(got, kern.func(Labelled(unpack.decode(stored), labels), **PARAMS))


def test_nodes_in_group_order_hold_the_groups_of_their_records_only():
    # 10 records a group: a node over 30 rows holds 3 groups and a cut one at each end at most.
    tree = memory_groups._Tree(30, 3653, 366, 0.5, per_group=10)
    assert tree.groups(30) == 4 and tree.groups(30 << 4) == 49 and tree.groups(1 << 20) == 366
    in_order = memory_groups.rank_peak(122, 1, 30, 3653, 366, 0.5, per_group=10)
    by_record = memory_groups.rank_peak(122, 1, 30, 3653, 366, 0.5)
    assert 366 <= in_order < by_record  # the whole result at the end, and little before


def test_count_dtype_is_the_narrowest_that_holds_the_records():
    assert grouped_stats.count_dtype(None) == np.int64
    assert grouped_stats.count_dtype(3653) == np.int16
    assert grouped_stats.count_dtype(32768) == np.int32
    assert grouped_stats.count_dtype(3 << 31) == np.int64


@pytest.mark.parametrize("asked", [None, "mean", "count,mean,std"])
def test_narrow_counts_merge_and_finish_to_the_bits_of_int64_ones(asked, tmp_path):
    params = {**PARAMS, **({"stats": asked} if asked else {})}
    data = awkward((60, 3, 2), "float32")
    data[::7, 0, 0] = np.nan
    labels = np.arange(60) % 7
    wide, narrow = group_kernel(nd.stats), group_kernel(nd.stats, most=len(data))
    halves = [slice(0, 31), slice(31, 60)]
    parts = {
        kern: [kern.func(Labelled(data[h], labels[h]), **params) for h in halves]
        for kern in (wide, narrow)
    }
    assert all(p["count"].dtype == np.int16 for p in parts[narrow])
    assert all(p["count"].dtype == np.int64 for p in parts[wide])
    merged = {kern: consuming_merge(kern)(*copied_all(parts[kern])) for kern in parts}
    assert merged[narrow]["count"].dtype == np.int16
    expected = wide.finish(merged[wide], params)
    got = consuming_finish(narrow)(merged[narrow], params)
    assert_same_bits(got, expected)
    assert all(np.asarray(got[key]).dtype == np.asarray(expected[key]).dtype for key in expected)
    # A run's counts: int64 in its results, as without grouping.
    spec = write_dataset(tmp_path / "in.h5", data.reshape(60, 6))
    write_dataset(tmp_path / "in.h5", labels, "g")
    asked_params = {"stats": asked} if asked else {}
    done = run_here("stats", spec, group_by="g", chunk_rows=9, params=asked_params)
    assert ("count" in done) == (asked != "mean")
    assert all(done[key].dtype == np.int64 for key in ("count", "nan_count") if key in done)


def copied_all(partials):
    return [copied(partial) for partial in partials]
