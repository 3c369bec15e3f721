"""``--shard I/N``: which part of a run a machine takes (see lab.util.sharded)."""

from __future__ import annotations


def parse_shard(text: str, option: str = "--shard") -> tuple[int, int]:
    """``"I/N"`` (1 <= I <= N) as ``(I, N)``; a usage error otherwise."""
    from lab.errors import UsageError

    i, sep, n = text.partition("/")
    if sep and i.isdigit() and n.isdigit() and 1 <= int(i) <= int(n):
        return int(i), int(n)
    raise UsageError(f"{option} {text}: give I/N with 1 <= I <= N (e.g. 2/4)")
