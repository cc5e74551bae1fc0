"""retry: parsing Retry-After and the one backoff policy."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracking_adapter.retry import MAX_RETRY_AFTER, RetryPolicy, parse_retry_after

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0.0), ("1", 1.0), ("120", 120.0), (" 30 ", 30.0), ("-5", 0.0)],
)
def test_delta_seconds(value, expected):
    assert parse_retry_after(value) == expected


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "1.5x", "tomorrow at noon", "Wed, 99"])
def test_missing_or_garbage_is_none(value):
    assert parse_retry_after(value) is None


def test_http_date_in_the_future():
    header = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    assert header.endswith("GMT")
    assert parse_retry_after(header, now=NOW) == pytest.approx(90.0)


def test_http_date_with_minus_0000_offset_is_utc():
    header = "Wed, 01 May 2024 12:01:00 -0000"
    assert parse_retry_after(header, now=NOW) == pytest.approx(60.0)


def test_http_date_in_the_past_is_zero():
    header = format_datetime(NOW - timedelta(hours=1), usegmt=True)
    assert parse_retry_after(header, now=NOW) == 0.0


def test_http_date_against_the_real_clock():
    header = format_datetime(datetime.now(UTC) + timedelta(seconds=300), usegmt=True)
    assert 295 <= parse_retry_after(header) <= 300


def test_rfc_example_date():
    # RFC 9110's own example.
    now = datetime(2015, 10, 21, 7, 27, 0, tzinfo=UTC)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 60.0


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    attempt=st.integers(1, 40),
    base=st.floats(0.01, 30),
    max_delay=st.floats(0.1, 1000),
)
def test_delay_is_within_full_jitter_bounds(seed, attempt, base, max_delay):
    policy = RetryPolicy(base_delay=base, max_delay=max_delay, rng=random.Random(seed))
    ceiling = min(max_delay, base * 2 ** (attempt - 1))
    delay = policy.delay(attempt)
    assert 0.0 <= delay <= ceiling


def test_delay_is_jittered_and_reproducible_with_a_seed():
    first = RetryPolicy(rng=random.Random(7))
    second = RetryPolicy(rng=random.Random(7))
    a = [first.delay(5) for _ in range(20)]
    b = [second.delay(5) for _ in range(20)]
    assert a == b
    assert len(set(a)) > 1  # jitter: not one fixed value
    assert all(0 <= value <= 2.0 * 2**4 for value in a)


def test_delay_grows_then_caps():
    policy = RetryPolicy(base_delay=1.0, max_delay=10.0, rng=random.Random(1))
    for attempt in range(1, 30):
        ceiling = min(10.0, 2.0 ** (attempt - 1))
        samples = [policy.delay(attempt) for _ in range(50)]
        assert max(samples) <= ceiling
    # Late attempts use the whole capped range, not a shrinking one.
    late = [policy.delay(50) for _ in range(200)]
    assert max(late) > 5.0


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    attempt=st.integers(1, 30),
    retry_after=st.floats(0, 10_000),
)
def test_delay_never_below_retry_after_capped(seed, attempt, retry_after):
    policy = RetryPolicy(
        base_delay=2.0, max_delay=600.0, max_retry_after=3600.0, rng=random.Random(seed)
    )
    delay = policy.delay(attempt, retry_after)
    assert delay >= min(retry_after, 3600.0)
    assert delay <= max(min(retry_after, 3600.0), min(600.0, 2.0 * 2 ** (attempt - 1)))


def test_absurd_retry_after_is_capped():
    policy = RetryPolicy(max_retry_after=60.0, max_delay=5.0, rng=random.Random(3))
    assert policy.delay(1, retry_after=10**9) == 60.0


def test_retry_after_zero_still_jitters():
    policy = RetryPolicy(base_delay=4.0, rng=random.Random(11))
    delays = [policy.delay(1, retry_after=0.0) for _ in range(20)]
    assert all(0 <= d <= 4.0 for d in delays)


def test_exhausted():
    policy = RetryPolicy(max_attempts=3)
    assert not policy.exhausted(0)
    assert not policy.exhausted(2)
    assert policy.exhausted(3)
    assert policy.exhausted(4)
    assert RetryPolicy().exhausted(25)
    assert not RetryPolicy().exhausted(24)


@settings(max_examples=300, deadline=None)
@given(
    value=st.one_of(
        st.text(max_size=40),
        st.integers().map(str),
        st.datetimes(timezones=st.just(UTC)).map(lambda d: format_datetime(d, usegmt=True)),
    )
)
def test_parse_retry_after_never_raises(value):
    result = parse_retry_after(value, now=NOW)
    assert result is None or result >= 0.0


def test_delay_stays_capped_for_very_late_attempts():
    policy = RetryPolicy(max_attempts=100_000, rng=random.Random(5))
    assert not policy.exhausted(1025)
    assert 0.0 <= policy.delay(1025) <= policy.max_delay


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("9" * 400, MAX_RETRY_AFTER),  # float(int(...)) raised OverflowError here
        ("9" * 5000, MAX_RETRY_AFTER),  # past int()'s digit limit: must not raise either
        ("-" + "9" * 400, 0.0),
        ("86401", MAX_RETRY_AFTER),
        ("86400", 86_400.0),
        ("0000000000000000000000042", 42.0),
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER),
        ("Mon, 01 Jan 0001 00:00:00 GMT", 0.0),
        ("Sat, 01 Jan 10000 00:00:00 GMT", None),
        ("Mon, 01 Jan 0001 00:00:00 +2359", 0.0),
        ("1_000", None),
        ("\u0661\u0662\u0663", None),
        ("+5", None),
        ("5.0", None),
        ("1e400", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_absurd_retry_after_values_are_capped_or_ignored(value, expected):
    assert parse_retry_after(value, now=NOW) == expected


def test_retry_after_that_is_not_a_string_is_ignored():
    assert parse_retry_after(b"120", now=NOW) is None  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    value=st.one_of(
        st.integers(min_value=-(10**600), max_value=10**600).map(str),
        st.text(alphabet="0123456789-+ _.eE:,GMTSunMonDec", max_size=60),
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
        .map(lambda d: d.replace(tzinfo=UTC))
        .map(lambda d: format_datetime(d, usegmt=True)),
    )
)
def test_parse_retry_after_is_always_none_or_within_the_cap(value):
    result = parse_retry_after(value, now=NOW)
    assert result is None or 0.0 <= result <= MAX_RETRY_AFTER
