"""The peak of a grouped job's partials, counted in groups (for :mod:`hpcapp.io.memory`).

A rank's chunk tree holds one node per set bit of the number of chunks it has done; a node
over ``2**l`` chunks holds at most ``min(most, rows << l)`` groups, or, read in group order
(:mod:`hpcapp.io.group_order`, ``per_group`` records a group), ``(rows << l) / per_group + 1``.
A new chunk's partial merges up while its sibling is there
(:mod:`hpcapp.kernels.grouped_merge`): in place when one side holds every group of the other,
else the shared groups are merged apart and both sides laid out in the union one key at a time.
The peak is the largest of those moments, over the chunk counts where a merge runs deepest, and
of the finish (the partial and the results of every group). On more ranks, rank 0 also holds
what the others send (their nodes, in one buffer until every node of it is merged) beside its
own; a sender sends its nodes' arrays as they are.
"""

from __future__ import annotations


class _Tree:
    """Group counts of the nodes of one rank's chunk tree."""

    def __init__(
        self, rows: int, n_rows: int, most: int, key_share: float, per_group: int = 1
    ) -> None:
        self.rows, self.n_rows, self.most, self.key_share = rows, n_rows, most, key_share
        self.per_group = per_group

    def groups(self, covered: int) -> int:
        if self.per_group > 1:  # group order: whole groups, and one cut at each end
            return min(self.most, -(-covered // self.per_group) + 1)
        return min(self.most, covered, self.n_rows)

    def merge(self, others: int, left: int, right: int, out: int) -> float:
        """Return the groups alive while ``left`` and ``right`` merge into ``out`` groups."""
        if out in (left, right):  # one side holds the other's groups: merged in place
            return others + left + right
        shared = max(0, left + right - out)
        if self.per_group > 1:  # group order: left's groups all come first, so left grows
            return others + left + right + shared + self.key_share * right
        return others + left + right + shared + self.key_share * out

    def chunk_done(self, done: int) -> float:
        """Return the peak while chunk ``done`` (``done`` chunks held) merges up the tree."""
        rows = self.rows
        held = {lv: self.groups(rows << lv) for lv in range(done.bit_length()) if done >> lv & 1}
        carry, covered, level = self.groups(rows), rows, 0
        peak: float = sum(held.values()) + carry
        while level in held:  # the new chunk's partial merges up with its siblings
            left = held.pop(level)
            covered += rows << level
            out = self.groups(covered)
            peak = max(peak, self.merge(sum(held.values()), left, carry, out))
            carry, level = out, level + 1
        return peak

    def receive(self, own: int, n_chunks: int) -> float:
        """Return rank 0's peak while the nodes of chunks ``[own, n_chunks)`` merge into its own.

        Counted as one buffer from all the other ranks, alive until the last node is merged.
        """
        held = {node: self.groups(self.rows << node[0]) for node in aligned(0, own)}
        sent = aligned(own, n_chunks)
        payload = sum(self.groups(self.rows << level) for level, _ in sent)
        peak: float = sum(held.values()) + payload
        for level, index in sent:
            carry = self.groups(self.rows << level)
            inside = carry  # a sent node is in the buffer: counted there, not twice
            while (level, index ^ 1) in held:
                sibling = held.pop((level, index ^ 1))
                out = self.groups(self.rows << (level + 1))
                others = sum(held.values()) + payload - inside
                peak = max(peak, self.merge(others, sibling, carry, out))
                carry, level, index, inside = out, level + 1, index >> 1, 0
            held[(level, index)] = carry
        return max(peak, self.fold(n_chunks) + payload)

    def fold(self, n_chunks: int) -> float:
        """Return the peak while the nodes left once every chunk is in fold from the first."""
        levels = [level for level in range(n_chunks.bit_length()) if n_chunks >> level & 1]
        held = {level: self.groups(self.rows << level) for level in levels}
        top = levels.pop() if levels else 0
        acc, covered, peak = held.pop(top, 0), self.rows << top, 0.0
        for level in reversed(levels):
            right = held.pop(level)
            covered += self.rows << level
            out = self.groups(covered)
            peak = max(peak, self.merge(sum(held.values()), acc, right, out))
            acc = out
        return peak


def aligned(start: int, stop: int) -> list[tuple[int, int]]:
    """Return the tree nodes ``(level, index)`` that exactly cover chunks ``[start, stop)``."""
    nodes = []
    while start < stop:
        level = 0
        while start % (2 << level) == 0 and start + (2 << level) <= stop:
            level += 1
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def rank_peak(
    n_chunks: int,
    ranks: int,
    rows: int,
    n_rows: int,
    most: int,
    key_share: float,
    per_group: int = 1,
) -> float:
    """Return the most group partials alive at once on any rank of ``ranks`` (static shares)."""
    if ranks <= 1 or n_chunks <= 1:
        return tree_peak(n_chunks, rows, n_rows, most, key_share, per_group)
    tree = _Tree(rows, n_rows, most, key_share, per_group)
    own = -(-n_chunks // ranks)  # rank 0's share (the first ranks take the remainder)
    sender = sum(tree.groups(rows << level) for level, _ in aligned(own, min(2 * own, n_chunks)))
    mine = tree_peak(own, rows, n_rows, most, key_share, per_group)
    peaks = [mine, tree.receive(own, n_chunks)]
    return max([*peaks, sender])  # a sender's nodes (sent as they are, not packed)


def tree_peak(
    n_chunks: int, rows: int, n_rows: int, most: int, key_share: float, per_group: int = 1
) -> float:
    """Return the most group partials alive at once while the chunk tree is built and folded.

    ``key_share`` is the largest key's share of a partial (a union is laid out key by key).
    Only the chunk counts ending in the most ones below each set bit need trying: any other
    holds a subset of one of their nodes.
    """
    tree = _Tree(rows, n_rows, most, key_share, per_group)
    candidates = {n_chunks - 1} | {(n_chunks >> m << m) - 1 for m in range(n_chunks.bit_length())}
    peaks = [tree.chunk_done(done) for done in candidates if done >= 0]
    return max([*peaks, tree.fold(n_chunks)])
