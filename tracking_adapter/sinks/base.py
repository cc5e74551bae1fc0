"""What every sink is: ``send(events) -> SendResult``, with one outcome per event.

Sinks never sleep and never retry inside ``send``; they say, per event, delivered, retry
(with how long the server asked to wait, if it did), or rejected (with a reason a person can
act on), and the caller schedules. ``HttpBatchSink`` holds what the HTTP sinks share:
per-event size limits, splitting into requests, bisecting a 400 to find the bad event,
and stopping at the first sign that the server wants a pause.
"""

from __future__ import annotations

import contextvars
import enum
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from tracking_adapter.batching import split_batches
from tracking_adapter.errors import ConfigurationError
from tracking_adapter.schema import EnrichedEvent
from tracking_adapter.security import redact

logger = logging.getLogger("tracking_adapter.sinks")


class Status(enum.StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Outcome:
    """What happened to one event.

    ``delay``: for RETRY, the least time to wait that the server asked for (Retry-After) or
    that the sink knows is sensible (a configuration error), else None and the caller's
    retry policy decides. ``config_error``: the failure is the deployment's, not the event's
    (a bad key, a wrong endpoint); callers should alert and must not count it as an attempt.
    """

    status: Status
    reason: str = ""
    delay: float | None = None
    config_error: bool = False

    @classmethod
    def delivered(cls) -> Outcome:
        return _DELIVERED

    @classmethod
    def retry(
        cls, reason: str, delay: float | None = None, *, config_error: bool = False
    ) -> Outcome:
        return cls(Status.RETRY, reason, delay, config_error)

    @classmethod
    def rejected(cls, reason: str) -> Outcome:
        return cls(Status.REJECTED, reason)


_DELIVERED = Outcome(Status.DELIVERED)


@dataclass
class SendResult:
    """One outcome per event, in the order the events were given."""

    outcomes: list[Outcome]
    requests: int = 0

    def __len__(self) -> int:
        return len(self.outcomes)

    def count(self, status: Status) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status is status)

    @property
    def delivered(self) -> int:
        return self.count(Status.DELIVERED)

    @property
    def retried(self) -> int:
        return self.count(Status.RETRY)

    @property
    def rejected(self) -> int:
        return self.count(Status.REJECTED)

    @property
    def all_delivered(self) -> bool:
        return self.delivered == len(self.outcomes)

    @classmethod
    def every(cls, count: int, outcome: Outcome, requests: int = 0) -> SendResult:
        return cls([outcome] * count, requests)


class Sink(ABC):
    """Base class of every sink. Subclasses implement ``send``; ``close`` is optional."""

    # True when what the sink delivers stays in this process (MemorySink): work split
    # across processes would deliver where the caller cannot see it.
    process_local: ClassVar[bool] = False

    @abstractmethod
    def send(self, events: Sequence[EnrichedEvent]) -> SendResult:
        """Try to deliver ``events``; never raises for a delivery failure, never sleeps."""

    def close(self) -> None:  # noqa: B027 - a hook, optional by design
        """Release pooled connections or files."""

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def describe(self) -> str:
        """A short, secret-free name for logs and the admin (``thrivestack https://...``)."""
        return type(self).__name__


# Set by a caller that holds the events under a lease (the Django dispatcher): called before
# each request after the first, it extends the lease and answers whether to go on. A batch
# bisected against a slow collector can outlive any fixed lease; this keeps one sender per
# batch while that sender lives, and lets a worker told to stop give up between requests.
_keepalive: contextvars.ContextVar[Callable[[], bool] | None] = contextvars.ContextVar(
    "tracking_adapter_keepalive", default=None
)


@contextmanager
def keeping_alive(callback: Callable[[], bool]) -> Iterator[None]:
    """Within the block, multi-request sends call ``callback()`` between requests; when it
    returns False the events not yet sent are left to retry (``Outcome.retry``) at once."""
    token = _keepalive.set(callback)
    try:
        yield
    finally:
        _keepalive.reset(token)


class ReplyKind(enum.Enum):
    OK = "ok"
    BAD_PAYLOAD = "bad_payload"  # this request's content was refused: bisect to find why
    CONFIG = "config"  # bad key, wrong endpoint: nothing the events can fix
    RETRY = "retry"  # rate limit, server error, network trouble


@dataclass(frozen=True)
class Reply:
    kind: ReplyKind
    detail: str = ""
    retry_after: float | None = None


Payload = TypeVar("Payload")


@dataclass
class _Encoded(Generic[Payload]):
    payload: Payload
    size: int


# How many lone events refused with one same answer, before anything was accepted, make a
# send conclude the collector refuses every request. A batch of 1,000 then costs 16 requests
# instead of 1,999; four bad events at the very start of a batch, answered with one generic
# message, are the price: kept pending as a configuration error, visible, never dead.
SAME_REFUSALS_FOR_CONFIG = 4


class HttpBatchSink(Sink, Generic[Payload]):
    """Template for sinks that post batches: subclasses encode events and post one request."""

    # What to check when the collector refuses every request whatever it holds.
    request_refused_hint: ClassVar[str] = "Check the sink's endpoint and any proxy in between."

    def __init__(
        self,
        *,
        max_events: int,
        max_request_bytes: int,
        max_event_bytes: int,
        envelope_bytes: int = 2,
        separator_bytes: int = 1,
        config_retry_delay: float = 300.0,
    ) -> None:
        if max_events < 1 or max_request_bytes < 1 or max_event_bytes < 1:
            raise ConfigurationError("max_events and the byte limits must be positive")
        self.max_events = max_events
        self.max_request_bytes = max_request_bytes
        self.max_event_bytes = min(max_event_bytes, max_request_bytes - envelope_bytes)
        self.envelope_bytes = envelope_bytes
        self.separator_bytes = separator_bytes
        self.config_retry_delay = config_retry_delay
        self.requests_made = 0

    @abstractmethod
    def encode(self, event: EnrichedEvent) -> tuple[Payload, int]:
        """The payload sent for one event and its size in bytes as it counts toward limits."""

    @abstractmethod
    def post(self, payloads: list[Payload]) -> Reply:
        """Send one request; classify the answer. Must not raise for HTTP or network errors."""

    def send(self, events: Sequence[EnrichedEvent]) -> SendResult:
        outcomes: list[Outcome | None] = [None] * len(events)
        encoded: dict[int, _Encoded[Payload]] = {}
        for index, event in enumerate(events):
            payload, size = self.encode(event)
            if size > self.max_event_bytes:
                outcomes[index] = Outcome.rejected(
                    f"event is {size:,} bytes encoded, over this sink's limit of "
                    f"{self.max_event_bytes:,} bytes per event; shorten its properties"
                )
            else:
                encoded[index] = _Encoded(payload, size)

        sendable = sorted(encoded)
        chunks = split_batches(
            [encoded[i].size for i in sendable],
            max_items=self.max_events,
            max_bytes=self.max_request_bytes,
            envelope_bytes=self.envelope_bytes,
            separator_bytes=self.separator_bytes,
        )
        # A stack of index lists, next request on top; a refused request is replaced by its
        # two halves so the good events still go and the bad one is found in log2(n) steps.
        work = [[sendable[i] for i in chunk] for chunk in reversed(chunks)]
        halted: Outcome | None = None
        requests = 0
        keepalive = _keepalive.get()
        delivered_any = False
        # Single events refused before anything was accepted, with the server's answer: the
        # same answer to each of them means the collector refuses requests, not events.
        refused_alone: list[tuple[int, str]] = []
        while work:
            indexes = work.pop()
            if halted is None and requests and keepalive is not None and not keepalive():
                halted = Outcome.retry("the sender stopped before this request (lease or shutdown)")
            if halted is not None:
                for index in indexes:
                    outcomes[index] = halted
                continue
            reply = self.post([encoded[i].payload for i in indexes])
            requests += 1
            if reply.kind is ReplyKind.OK:
                delivered_any = True
                for index in indexes:
                    outcomes[index] = Outcome.delivered()
            elif reply.kind is ReplyKind.BAD_PAYLOAD and len(indexes) > 1:
                middle = len(indexes) // 2
                work.extend([indexes[middle:], indexes[:middle]])
            elif reply.kind is ReplyKind.BAD_PAYLOAD:
                outcomes[indexes[0]] = Outcome.rejected(reply.detail)
                if not delivered_any:
                    refused_alone.append((indexes[0], reply.detail))
                    if self._refuses_every_request(refused_alone):
                        halted = self._config_error(
                            f"{reply.detail}; {len(refused_alone)} single events were refused "
                            "with this same answer and nothing was accepted, so the collector "
                            f"refuses the requests themselves, not these events. "
                            f"{self.request_refused_hint} Events stay pending and are retried."
                        )
                        for index, _ in refused_alone:
                            outcomes[index] = halted
            else:
                # Stop here: the remaining requests would meet the same key, the same
                # endpoint or the same overloaded server.
                if reply.kind is ReplyKind.CONFIG:
                    halted = self._config_error(reply.detail)
                else:
                    halted = Outcome.retry(reply.detail, reply.retry_after)
                    logger.warning("%s: will retry: %s", self.describe(), reply.detail)
                for index in indexes:
                    outcomes[index] = halted
        self.requests_made += requests
        return SendResult([_known(outcome) for outcome in outcomes], requests)

    def _config_error(self, reason: str) -> Outcome:
        logger.error("%s: %s", self.describe(), reason)
        return Outcome.retry(reason, self.config_retry_delay, config_error=True)

    @staticmethod
    def _refuses_every_request(refused: list[tuple[int, str]]) -> bool:
        # Distinct answers prove the server judged each event; one unvarying answer to
        # several lone events, with nothing accepted, is a request-level refusal (a
        # collector that cannot read our encoding, a proxy), and bisecting on would send
        # about two requests per event and dead-letter every one of them.
        return len(refused) >= SAME_REFUSALS_FOR_CONFIG and len({d for _, d in refused}) == 1


def _known(outcome: Outcome | None) -> Outcome:
    if outcome is None:  # every index is assigned above; this guards the invariant
        raise AssertionError("an event was left without an outcome")
    return outcome


def server_message(
    body: bytes | str, content_type: str = "", limit: int = 300, secrets: Iterable[str] = ()
) -> str:
    """The human part of an answer: its JSON ``message``/``error``, or its text, with every
    secret redacted *before* it is cut to ``limit`` characters (a cut made first could
    split a key so that no whole occurrence is left to redact, and leave its prefix)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if "json" in content_type or text.lstrip().startswith("{"):
        try:
            data: Any = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            for key in ("message", "error", "detail", "reason"):
                if isinstance(data.get(key), str) and data[key]:
                    text = data[key]
                    break
    text = " ".join(redact(text, secrets).split())
    return text[:limit] + ("..." if len(text) > limit else "")
