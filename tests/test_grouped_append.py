"""Later groups appended in place (periods in time order): the union's bits, no foreign rows."""

import numpy as np
import pytest
from test_grouped_merge import assert_same_bits, copied, grouped

from hpcapp.kernels import grouped_append, nd
from hpcapp.kernels.grouped import GROUP_KEY, consuming_merge, group_kernel


def test_a_chain_of_appends_has_the_copying_merges_bits_and_grows_in_place():
    kern = group_kernel(nd.stats)
    merge = consuming_merge(kern)
    parts = [grouped([2 * i, 2 * i + 1, 2 * i + 2], seed=i) for i in range(8)]  # boundary shared
    expected = copied(parts[0])
    for part in parts[1:]:
        expected = kern.merge(expected, copied(part))
    got = parts[0]
    buffers = set()
    for part in parts[1:]:
        got = merge(got, part)
        buffers.add(got["m2"].base.__array_interface__["data"][0])
    assert_same_bits(got, expected)
    assert list(got[GROUP_KEY]) == list(range(17))
    assert len(buffers) < len(parts) - 1  # some appends wrote into the buffer they had


@pytest.mark.parametrize("shared", [0, 1])
def test_spare_rows_of_someone_elses_array_are_never_written(shared):
    """A partial whose arrays are leading views of a larger array (not a buffer made here)."""
    kern = group_kernel(nd.stats)
    whole = copied(grouped([1, 2, 3, 4, 5, 6], seed=1))  # arrays owning their rows
    keep = copied(whole)
    left = {key: value[:3] for key, value in whole.items()}  # groups 1, 2, 3; rows 4-6 beside
    right = grouped([3 if shared else 4, 7], seed=2)
    expected = kern.merge(copied(left), copied(right))
    got = consuming_merge(kern)(left, right)
    assert_same_bits(got, expected)
    assert_same_bits(whole, keep)  # the rows after the view are untouched


@pytest.mark.parametrize(
    "left_labels,right_labels",
    [([1, 5], [3, 7]), ([1, 2, 3], [2, 3, 4]), ([4, 5], [1, 2])],  # interleaved, 2 shared, before
)
def test_groups_that_do_not_follow_are_not_appended(left_labels, right_labels):
    kern = group_kernel(nd.stats)
    left, right = grouped(left_labels, 1), grouped(right_labels, 2)
    assert grouped_append.append_after(left, right, list(nd.stats(np.zeros((1, 1)))), 0) is None
    expected = kern.merge(copied(left), copied(right))
    assert_same_bits(consuming_merge(kern)(left, right), expected)
