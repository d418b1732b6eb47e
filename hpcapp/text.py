"""Words for messages: counts with their nouns (used by every layer, imports nothing)."""

from __future__ import annotations


def plural(count: int, noun: str) -> str:
    """Return ``1 rank``, ``2 ranks``, ``1,000 rows``: a count and its noun, agreeing."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"
