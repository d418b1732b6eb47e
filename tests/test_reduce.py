"""The fixed reduction tree: packing for messages, and independence from how chunks are split."""

import numpy as np

from hpcapp.parallel.reduce import FragmentTree, node_chunks, pack, unpack


def concat(left, right):
    return {"seq": np.concatenate([left["seq"], right["seq"]])}


def leaf(index):
    return {"seq": np.array([index], dtype=np.int64)}


def test_tree_keeps_chunk_order_and_few_nodes():
    tree = FragmentTree(concat)
    for index in range(1000):
        tree.add((0, index), leaf(index))
        # A contiguous prefix is kept as at most log2(n) + 1 nodes.
        assert len(tree.nodes) <= index.bit_length() + 1
    assert tree.fold()["seq"].tolist() == list(range(1000))


def test_float_sums_identical_for_any_split_of_chunks():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(103, 5)) * 10.0 ** rng.integers(-8, 8, size=(103, 1))

    def add(a, b):
        return {"s": a["s"] + b["s"]}

    def reduce_split(n_parts):
        # Each part plays one rank: contiguous chunks, merged into part 0 in binomial order.
        bounds = np.linspace(0, len(values), n_parts + 1).astype(int)
        trees = []
        for part in range(n_parts):
            tree = FragmentTree(add)
            for index in range(bounds[part], bounds[part + 1]):
                tree.add((0, index), {"s": values[index]})
            trees.append(tree)
        step = 1
        while step < n_parts:
            for part in range(0, n_parts, 2 * step):
                if part + step < n_parts:
                    other = unpack(*roundtrip(trees[part + step].nodes))
                    for node in sorted(other, key=lambda n: n[1] << n[0]):
                        trees[part].add(node, other[node])
            step *= 2
        return trees[0].fold()["s"].tobytes()

    reference = reduce_split(1)
    for n_parts in (2, 3, 4, 7, 16, 103, 150):
        assert reduce_split(n_parts) == reference, n_parts


def roundtrip(nodes):
    meta, payload = pack(nodes)
    return meta, payload.copy()


def test_pack_unpack_roundtrip_keeps_dtypes_and_shapes():
    nodes = {
        (0, 3): {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array(7)},
        (2, 1): {"a": np.ones((2, 3), np.float32), "b": np.array(-1, np.int64)},
    }
    back = unpack(*roundtrip(nodes))
    assert back.keys() == nodes.keys()
    for node, partial in nodes.items():
        for key, value in partial.items():
            assert back[node][key].dtype == np.asarray(value).dtype
            assert back[node][key].shape == np.asarray(value).shape
            np.testing.assert_array_equal(back[node][key], value)


def test_node_chunks():
    assert node_chunks((0, 5)) == range(5, 6)
    assert node_chunks((3, 2)) == range(16, 24)
