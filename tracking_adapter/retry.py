"""The one retry policy: capped exponential backoff with full jitter, honouring Retry-After.

Sinks never sleep or retry; they report how long the server asked them to wait, and the
caller (the Django dispatcher, a script) asks this policy when to try again.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# The longest wait a Retry-After header can ask for, one day: a server's header is input
# like any other, and 400 digits of it must give a number the rest of the code can add to
# a datetime (RetryPolicy caps it again, at max_retry_after).
MAX_RETRY_AFTER = 86_400.0
_DELTA_SECONDS = re.compile(r"-?[0-9]+", re.ASCII)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None.

    Never raises: a past date or a negative number is 0, anything over ``MAX_RETRY_AFTER``
    (a huge number, a date in the year 9999) is ``MAX_RETRY_AFTER``, garbage is None.
    """
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value:
        return None
    # Only plain ASCII digits: int() would also take "1_000" and other scripts' digits, and
    # converting thousands of digits is slow (or refused) before any cap could apply.
    if _DELTA_SECONDS.fullmatch(value):
        if value.startswith("-"):
            return 0.0
        digits = value.lstrip("0")
        if len(digits) > len(str(int(MAX_RETRY_AFTER))):
            return MAX_RETRY_AFTER
        return min(float(int(digits or "0")), MAX_RETRY_AFTER)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # "-0000" parses naive; RFC 9110 dates are always GMT
        moment = moment.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    try:
        seconds = (moment - now).total_seconds()
    except OverflowError:
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


@dataclass
class RetryPolicy:
    """When to try again after attempt number ``attempt`` (1 for the first failure).

    The delay is drawn uniformly from ``[0, min(max_delay, base_delay * 2**(attempt-1))]``
    ("full jitter", so a crowd of workers that failed together does not retry together),
    and is never shorter than what the server asked for with Retry-After (itself capped at
    ``max_retry_after`` against an absurd header).
    """

    base_delay: float = 2.0
    max_delay: float = 600.0
    max_retry_after: float = 3600.0
    max_attempts: int = 25
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        # The exponent is bounded so a huge attempt count caps instead of overflowing a float.
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(max(0, attempt - 1), 60))
        jittered = self.rng.uniform(0.0, ceiling)
        if retry_after is None:
            return jittered
        return max(min(retry_after, self.max_retry_after), jittered)

    def exhausted(self, attempts: int) -> bool:
        """True once ``attempts`` failed tries mean the event should be given up (dead)."""
        return attempts >= self.max_attempts
