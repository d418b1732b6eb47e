"""Combine per-chunk partials in a fixed binary tree over chunk indices.

The tree does not depend on which rank computed which chunk: node ``(level, index)`` covers
chunks ``[index * 2**level, (index + 1) * 2**level)`` and its value is always
``combine(left child, right child)``. So the result is bitwise identical for any number of
ranks and any schedule. Each rank keeps only completed nodes that have no completed sibling yet
(O(log n_chunks) of them for a contiguous share), and ranks merge their node lists along a
binomial tree, so rank 0 receives log2(size) messages of O(log n_chunks) partials each.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcapp.errors import KernelError
from hpcapp.parallel.collective import quiet_probe
from hpcapp.parallel.tags import Tag
from hpcapp.partition import Node, Partial, node_chunks

if TYPE_CHECKING:
    from mpi4py import MPI

Failure = tuple[int, int, str]  # (chunk index, rank, message): ordered to pick one to report


class FragmentTree:
    """Completed tree nodes of one rank, merged with their siblings as soon as both exist.

    A node that covers a chunk some held node already covers is refused: counting a chunk twice
    (a checkpoint loaded beside a stale one, a chunk computed twice) would give a wrong result
    that nothing else could notice.
    """

    def __init__(self, combine: Callable[[Partial, Partial], Partial]) -> None:
        self._combine = combine
        self.nodes: dict[Node, Partial] = {}
        self._starts: list[int] = []  # first chunk of every held node, sorted (nodes are disjoint)
        self._at: dict[int, Node] = {}

    def add(self, node: Node, partial: Partial) -> None:
        """Insert a completed node, then merge it upwards while its sibling is complete."""
        held = self._overlapping(node)
        if held is not None:
            raise KernelError(overlap_message(held, node))
        level, index = node
        while (level, index ^ 1) in self.nodes:
            sibling = self.nodes.pop((level, index ^ 1))
            self._forget((level, index ^ 1))
            left, right = (sibling, partial) if index & 1 else (partial, sibling)
            partial = self._merge(left, right, (level, index & ~1), (level, index | 1))
            level, index = level + 1, index >> 1
        self.nodes[(level, index)] = partial
        start = index << level
        bisect.insort(self._starts, start)
        self._at[start] = (level, index)

    def clear(self) -> None:
        """Drop every held node (after sending them to another rank)."""
        self.nodes.clear()
        self._starts.clear()
        self._at.clear()

    def _overlapping(self, node: Node) -> Node | None:
        """Return a held node sharing a chunk with ``node``, or None."""
        chunks = node_chunks(node)
        # Held nodes are disjoint, so only the last one starting before ``node`` ends can overlap.
        position = bisect.bisect_left(self._starts, chunks.stop)
        if position == 0:
            return None
        held = self._at[self._starts[position - 1]]
        return held if node_chunks(held).stop > chunks.start else None

    def _forget(self, node: Node) -> None:
        start = node[1] << node[0]
        del self._starts[bisect.bisect_left(self._starts, start)]
        del self._at[start]

    def fold(self) -> Partial | None:
        """Combine the remaining nodes left to right (on rank 0, once all chunks are in).

        The tree is empty after: each node is let go once merged, so nothing keeps alive what
        it holds (received nodes are views of one receive buffer) while the result is finished.
        """
        ordered = sorted(self.nodes, key=lambda node: node[1] << node[0])
        partials = [self.nodes[node] for node in ordered]
        self.clear()
        if not ordered:
            return None
        result, first = partials[0], ordered[0]
        for position, node in enumerate(ordered[1:], start=1):
            right, partials[position] = partials[position], {}
            result = self._merge(result, right, first, node)
            del right
        return result

    def _merge(self, left: Partial, right: Partial, left_node: Node, right_node: Node) -> Partial:
        """Combine two partials, naming the chunks involved if they do not fit together."""
        try:
            return self._combine(left, right)
        except Exception as exc:
            detail = str(exc) if isinstance(exc, KernelError) else f"{type(exc).__name__}: {exc}"
            raise KernelError(
                f"cannot combine the partials of chunks {_span(left_node)} and "
                f"{_span(right_node)}: {detail}"
            ) from None


def find_overlap(nodes: Iterable[Node]) -> tuple[Node, Node] | None:
    """Return two of ``nodes`` that share a chunk, or None if they are disjoint."""
    ordered = sorted(nodes, key=lambda node: (node[1] << node[0], -node[0]))
    for before, after in itertools.pairwise(ordered):
        if node_chunks(before).stop > node_chunks(after).start:
            return before, after
    return None


def overlap_message(first: Node, second: Node) -> str:
    """Say which chunks two overlapping nodes would count twice."""
    a, b = node_chunks(first), node_chunks(second)
    both = range(max(a.start, b.start), min(a.stop, b.stop))
    if first == second:
        return f"chunks {_span_of(both)} would be counted twice: their partial is there twice"
    return (
        f"chunks {_span_of(both)} would be counted twice: the partial of chunks {_span(first)} "
        f"and that of chunks {_span(second)} both cover them"
    )


def _span(node: Node) -> str:
    return _span_of(node_chunks(node))


def _span_of(chunks: range) -> str:
    return f"{chunks.start}" if len(chunks) == 1 else f"{chunks.start}-{chunks.stop - 1}"


def pieces(nodes: dict[Node, Partial]) -> tuple[list[Any], list[np.ndarray]]:
    """Return the nodes' small metadata and their arrays as byte views (no copy if C-ordered)."""
    meta: list[Any] = []
    views: list[np.ndarray] = []
    for node, partial in nodes.items():
        fields = []
        for key, value in partial.items():
            array = np.asarray(value, order="C")
            fields.append((key, array.dtype.str, array.shape))
            views.append(array.reshape(-1).view(np.uint8))
        meta.append((node, fields))
    return meta, views


def pack(nodes: dict[Node, Partial]) -> tuple[list[Any], np.ndarray]:
    """Flatten nodes into small metadata and one byte buffer (sent without pickling)."""
    meta, views = pieces(nodes)
    payload = np.concatenate(views) if views else np.empty(0, np.uint8)
    return meta, payload


def unpack(meta: list[Any], payload: np.ndarray) -> dict[Node, Partial]:
    """Rebuild the nodes that :func:`pack` flattened."""
    nodes: dict[Node, Partial] = {}
    offset = 0
    for node, fields in meta:
        partial: Partial = {}
        for key, dtype_str, shape in fields:
            dtype = np.dtype(dtype_str)
            nbytes = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
            partial[key] = payload[offset : offset + nbytes].view(dtype).reshape(shape)
            offset += nbytes
        nodes[tuple(node)] = partial
    return nodes


def first_failure(a: Failure | None, b: Failure | None) -> Failure | None:
    """Return the failure to report: the one at the lowest chunk index, then lowest rank."""
    if a is None or b is None:
        return a if b is None else b
    return min(a, b)


def tree_reduce(comm: MPI.Comm, tree: FragmentTree) -> tuple[Partial | None, Failure | None]:
    """Merge every rank's nodes into rank 0 along a binomial tree; collective.

    Returns ``(result, failure)`` on rank 0 and ``(None, None)`` elsewhere. Ranks own
    contiguous, increasing runs of chunks, so rank r only ever merges in the nodes of ranks
    above it, which keeps every list short. Partials that do not combine (a kernel's bug) make
    a failure, which a rank passes up instead of its nodes while still receiving from all its
    partners, so no rank waits for a message that will never come.
    """
    rank, size = comm.Get_rank(), comm.Get_size()
    failure: Failure | None = None
    step = 1
    while step < size:
        if rank % (2 * step) == step:
            # Each array sent as it is, in order (MPI keeps the order of one sender's messages):
            # no packed copy of the nodes, which for a climatology is as large as the result.
            meta, views = pieces(tree.nodes) if failure is None else ([], [])
            sizes = [view.size for view in views]
            comm.send((failure, meta, sizes), dest=rank - step, tag=Tag.REDUCE_META)
            for view in views:
                comm.Send(view, dest=rank - step, tag=Tag.REDUCE_DATA)
            del views
            tree.clear()
            return None, None
        if rank % (2 * step) == 0 and rank + step < size:
            quiet_probe(comm, rank + step, Tag.REDUCE_META)  # while the child packs its nodes
            child_failure, meta, sizes = comm.recv(source=rank + step, tag=Tag.REDUCE_META)
            payload = np.empty(sum(sizes), np.uint8)
            offset = 0
            for n_bytes in sizes:  # into one buffer, as pack lays them out
                comm.Recv(
                    payload[offset : offset + n_bytes], source=rank + step, tag=Tag.REDUCE_DATA
                )
                offset += n_bytes
            failure = first_failure(failure, child_failure)
            if failure is None:
                try:
                    for node, partial in sorted(unpack(meta, payload).items(), key=_node_start):
                        tree.add(node, partial)
                except KernelError as exc:
                    failure = (_first_chunk(meta), rank, str(exc))
            del payload  # the held nodes keep what they still need of it
        step *= 2
    if failure is None:
        try:
            return tree.fold(), None
        except KernelError as exc:
            failure = (0, rank, str(exc))
    return None, failure


def _first_chunk(meta: list[Any]) -> int:
    return min((index << level for (level, index), _ in meta), default=0)


def _node_start(item: tuple[Node, Partial]) -> int:
    (level, index), _ = item
    return index << level
