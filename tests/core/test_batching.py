"""batching.split_batches: ordered, greedy, within the count and byte limits."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracking_adapter.batching import split_batches


def request_size(sizes, batch, envelope_bytes, separator_bytes):
    items = [sizes[i] for i in batch]
    return envelope_bytes + sum(items) + separator_bytes * max(0, len(items) - 1)


def test_empty_input_gives_no_batches():
    assert split_batches([], max_items=10, max_bytes=100) == []


def test_everything_fits_in_one_batch():
    assert split_batches([10, 10, 10], max_items=10, max_bytes=100) == [range(0, 3)]


def test_splits_by_count():
    batches = split_batches([1] * 2500, max_items=1000, max_bytes=10**9)
    assert batches == [range(0, 1000), range(1000, 2000), range(2000, 2500)]


def test_splits_by_bytes_with_envelope_and_separators():
    # [a,b] with a, b of 4 bytes: 2 + 4 + 1 + 4 = 11 bytes.
    assert split_batches([4, 4], max_items=10, max_bytes=11) == [range(0, 2)]
    assert split_batches([4, 4], max_items=10, max_bytes=10) == [range(0, 1), range(1, 2)]
    # Separator of 2 (", ") and an envelope of 10.
    assert split_batches(
        [5, 5, 5], max_items=10, max_bytes=22, envelope_bytes=10, separator_bytes=2
    ) == [
        range(0, 2),
        range(2, 3),
    ]


def test_whichever_limit_comes_first():
    # Count limit first.
    assert split_batches([1] * 5, max_items=2, max_bytes=1000) == [
        range(0, 2),
        range(2, 4),
        range(4, 5),
    ]
    # Byte limit first: 2 + 3*10 + 2 = 34 bytes for three items.
    assert split_batches([10] * 5, max_items=100, max_bytes=34) == [range(0, 3), range(3, 5)]


def test_oversize_item_gets_a_request_of_its_own_and_is_not_lost():
    batches = split_batches([5, 500, 5], max_items=10, max_bytes=100)
    assert batches == [range(0, 1), range(1, 2), range(2, 3)]
    assert split_batches([500], max_items=10, max_bytes=100) == [range(0, 1)]


def test_greedy_is_not_fooled_by_small_items_after_a_big_one():
    # Order is kept: 10 is not moved up beside 50, though both would fit together.
    assert split_batches([50, 60, 10], max_items=10, max_bytes=75) == [range(0, 1), range(1, 3)]


@pytest.mark.parametrize(("max_items", "max_bytes"), [(0, 10), (1, 0), (-1, -1)])
def test_non_positive_limits_are_refused(max_items, max_bytes):
    with pytest.raises(ValueError, match="at least 1"):
        split_batches([1], max_items=max_items, max_bytes=max_bytes)


limits = st.fixed_dictionaries(
    {
        "max_items": st.integers(1, 12),
        "max_bytes": st.integers(1, 400),
        "envelope_bytes": st.integers(0, 8),
        "separator_bytes": st.integers(0, 3),
    }
)


@settings(max_examples=300, deadline=None)
@given(sizes=st.lists(st.integers(0, 150), max_size=80), limits=limits)
def test_split_batches_properties(sizes, limits):
    batches = split_batches(sizes, **limits)
    envelope, separator = limits["envelope_bytes"], limits["separator_bytes"]

    # Every item lands in exactly one batch, in order: consecutive ranges covering 0..n.
    flat = [index for batch in batches for index in batch]
    assert flat == list(range(len(sizes)))
    for batch in batches:
        assert isinstance(batch, range)
        assert batch.step == 1
        assert len(batch) >= 1
    for previous, following in itertools.pairwise(batches):
        assert previous.stop == following.start

    for batch in batches:
        # Never more than max_items.
        assert len(batch) <= limits["max_items"]
        # A batch of more than one item never exceeds max_bytes.
        if len(batch) > 1:
            assert request_size(sizes, batch, envelope, separator) <= limits["max_bytes"]

    # Greedy minimality: the first item of each next batch would not have fit in the
    # previous one (by count or by bytes).
    for previous, following in itertools.pairwise(batches):
        extended = range(previous.start, following.start + 1)
        assert (
            len(extended) > limits["max_items"]
            or request_size(sizes, extended, envelope, separator) > limits["max_bytes"]
        )


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 50), min_size=1, max_size=60),
    max_items=st.integers(1, 10),
)
def test_count_only_splits_are_ceil_division(sizes, max_items):
    batches = split_batches(sizes, max_items=max_items, max_bytes=10**9)
    assert len(batches) == -(-len(sizes) // max_items)
