"""Split a sequence of encoded items into requests that respect count and byte limits."""

from __future__ import annotations

from collections.abc import Sequence


def split_batches(
    sizes: Sequence[int],
    *,
    max_items: int,
    max_bytes: int,
    envelope_bytes: int = 2,
    separator_bytes: int = 1,
) -> list[range]:
    """Group consecutive items, in order, into as few requests as the limits allow.

    ``sizes[i]`` is the encoded size of item ``i``; a request's size is
    ``envelope_bytes + sum(sizes) + separator_bytes * (count - 1)`` (``[a,b]`` has a
    2-byte envelope and 1-byte separators). Greedy filling is optimal for ordered
    items. An item that cannot fit even alone still gets a request of its own: callers
    reject such items before splitting, and a lone oversize item must not be lost here.
    """
    if max_items < 1 or max_bytes < 1:
        raise ValueError("max_items and max_bytes must be at least 1")
    batches: list[range] = []
    start = 0
    used = envelope_bytes
    for index, size in enumerate(sizes):
        count = index - start
        added = size + (separator_bytes if count else 0)
        if count and (count >= max_items or used + added > max_bytes):
            batches.append(range(start, index))
            start, used, added = index, envelope_bytes, size
        used += added
    if start < len(sizes):
        batches.append(range(start, len(sizes)))
    return batches
