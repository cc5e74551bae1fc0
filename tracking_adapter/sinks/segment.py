"""Segment's HTTP Tracking API (``/v1/batch``) and any Segment-compatible collector.

Posts the request segment-analytics-python 2.x's ``request.post`` would send, byte for byte
in the body (``{"batch": [...], "sentAt": ..., "writeKey": ...}`` as ``json.dumps`` writes
it, gzipped when enabled, with the write key as the Basic auth user), through this
package's own pooled session: the client's module-level session follows redirects
(re-posting the write key to another host on a 307/308, turning a 301/302/303 into a GET
that loses the body and counts as success) and has no overall deadline. Batches come from
the caller's durable store, never from the client's in-memory queue.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from tracking_adapter.encoding import gzip_compress, segment_message
from tracking_adapter.errors import ConfigurationError
from tracking_adapter.schema import EnrichedEvent
from tracking_adapter.security import check_endpoint, header_value_problem, redact, redact_logger
from tracking_adapter.sinks._http import (
    DEFAULT_DEADLINE,
    Answer,
    Wording,
    check_deadline,
    classify_answer,
    classify_exception,
    environment_verify,
    exchange,
    json_body,
    not_json_problem,
    pooled_session,
)
from tracking_adapter.sinks.base import HttpBatchSink, Reply

DEFAULT_HOST = "https://api.segment.io"
MAX_EVENTS_PER_BATCH = 2500
# Segment documents 500 KB per batch and 32 KB per event; read in decimal units, the safe
# reading whichever the server means. The default batch stays at 475,000 bytes, as the
# official client does, leaving room for a collector that counts the body differently.
MAX_BATCH_BYTES = 500_000
DEFAULT_BATCH_BYTES = 475_000
MAX_EVENT_BYTES = 32_000
# Compression trades CPU for bytes on the wire. On user_enriched batches (`python -m
# bench.gzip_levels`) zlib's level 1 compresses a body to 7.6% of its size at 2.5-2.7 µs of
# CPU per event, level 6 (zlib's default) to 6.3% at 5.6-6.1 µs, level 9 (the official
# client's) to 5.7% at 20-22 µs: a backfill is bound by CPU, not by 36 KB against 30 KB per
# 475 KB request. ISA-L's level 1 (tracking_adapter.encoding.gzip_compress, where isal is
# installed) costs a fifth to a sixth of that for a slightly smaller body. The collector
# decodes any level of either.
GZIP_LEVEL = 1

_KEY_OPTION = "write_key (TRACKING_ADAPTER['SINK_OPTIONS']['write_key'] in Django)"
_OPEN = b'{"batch": ['
_SENT_AT = b'], "sentAt": "'
_WRITE_KEY = b'", "writeKey": '
# datetime.isoformat(timespec="microseconds") in UTC: 2024-01-01T00:00:00.000000+00:00
_SENT_AT_CHARS = 32


def segment_delivered(answer: Answer) -> str | None:
    """None when a 2xx answer says the batch was taken, else what it says instead.

    Taken: an empty body that the answer declares empty (204, or ``Content-Length: 0``),
    the text ``OK`` (RudderStack), or a JSON object that does not say otherwise (Segment's
    ``{"success": true}``; an object whose ``success`` is anything but true, or that
    carries an ``error``/``errors`` member without ``success``, is not). Anything else (an
    HTML page, other text, a JSON array or string, a body that just stops) is not a
    collector's acknowledgement.
    """
    if not answer.complete:
        return "its body is far longer than any collector's acknowledgement"
    body = answer.body.strip()
    if not answer.body:
        if answer.status == 204 or (answer.headers.get("Content-Length") or "").strip() == "0":
            return None
        # http.client reads a connection closed in the middle of the headers as their end:
        # an empty body nobody declared may be an answer cut short, not an acknowledgement.
        return "its body is empty without a Content-Length: 0 saying so (an answer cut short?)"
    if not body or body.lower() == b"ok":
        return None
    data = json_body(answer)
    if isinstance(data, dict):
        if "success" in data:
            return None if data["success"] is True else 'its body says "success" is not true'
        if data.get("error") or data.get("errors"):
            return "its body reports an error"
        return None
    if data is None or isinstance(data, list | str | int | float):
        return "its body is JSON but not an object"
    return not_json_problem(answer)


def batch_body(messages: list[bytes], tail: bytes) -> bytes:
    """``{"batch": [`` + the messages joined by ``", "`` + ``tail``, copied once: joining
    the messages, then the envelope around them, would copy up to 475 KB twice, and a
    second buffer that size is a fresh allocation (page faults) on every request."""
    if len(messages) < 2:
        return _OPEN + b"".join(messages) + tail
    return b", ".join([_OPEN + messages[0], *messages[1:-1], messages[-1] + tail])


class SegmentSink(HttpBatchSink[bytes]):
    """Posts Segment track messages carrying our ``messageId``, so Segment's dedupe applies.

    ``timeout`` is seconds per connect and per read; ``deadline`` bounds each whole request.
    Redirects are never followed. ``verify`` may name a CA bundle.
    """

    request_refused_hint = (
        "Check the sink's gzip option (set it to False if the collector cannot read gzip "
        "bodies) and its host option."
    )

    def __init__(
        self,
        write_key: str,
        host: str = DEFAULT_HOST,
        *,
        gzip: bool = True,
        timeout: float = 15.0,
        deadline: float = DEFAULT_DEADLINE,
        max_events: int = MAX_EVENTS_PER_BATCH,
        max_request_bytes: int = DEFAULT_BATCH_BYTES,
        max_event_bytes: int = MAX_EVENT_BYTES,
        allow_http: bool = False,
        verify: bool | str = True,
        config_retry_delay: float = 300.0,
    ) -> None:
        if not isinstance(write_key, str) or not write_key.strip():
            raise ConfigurationError(f"SegmentSink needs {_KEY_OPTION}: the source's write key")
        problem = header_value_problem(write_key)
        if problem:
            raise ConfigurationError(
                f"SegmentSink {_KEY_OPTION} {problem} (the key is not shown here)"
            )
        self._key_json = json.dumps(write_key).encode("ascii")
        super().__init__(
            max_events=max_events,
            max_request_bytes=max_request_bytes,
            max_event_bytes=max_event_bytes,
            # Exact: the body's bytes around the messages, so a batch is never over the limit.
            envelope_bytes=len(_OPEN)
            + len(_SENT_AT)
            + _SENT_AT_CHARS
            + len(_WRITE_KEY)
            + len(self._key_json)
            + 1,
            separator_bytes=2,  # json.dumps's default ", ", as the official client writes
            config_retry_delay=config_retry_delay,
        )
        self.host = check_endpoint(host, option="host", allow_http=allow_http)
        self.url = f"{self.host}/v1/batch"
        self.gzip = gzip
        self.timeout = timeout
        self.deadline = check_deadline(deadline)
        basic = base64.b64encode(f"{write_key}:".encode()).decode("ascii")
        self._secrets = (write_key, basic)
        self._verify = environment_verify(verify)  # per request too: see ThriveStackSink
        self._session = pooled_session(self.url, self._verify)
        self._session.headers.update(
            {"Content-Type": "application/json", "Authorization": f"Basic {basic}"}
        )
        if gzip:
            self._session.headers["Content-Encoding"] = "gzip"
        # A host app migrating from segment-analytics-python often still runs it with the
        # same key, and that client logs each body, key included, at DEBUG.
        redact_logger("segment", self._secrets)
        self._words = Wording(
            service="the Segment collector",
            key_setting="sink's write_key option (TRACKING_ADAPTER['SINK_OPTIONS']['write_key'])",
            endpoint_setting="sink's host option (TRACKING_ADAPTER['SINK_OPTIONS']['host'])",
            unreadable_hint=(
                "Set the sink's gzip option to False if the collector cannot read gzip bodies, "
                "and check its host option."
                if gzip
                else "Check the sink's host option and any proxy in between."
            ),
            secrets=self._secrets,
        )

    def encode(self, event: EnrichedEvent) -> tuple[bytes, int]:
        # Encoded once, as the official client writes it (json.dumps defaults: ASCII
        # escapes, ", " and ": ") by tracking_adapter.encoding, without building the dict;
        # the size counted is the length of these very bytes.
        data = segment_message(event)
        return data, len(data)

    def post(self, payloads: list[bytes]) -> Reply:
        sent_at = datetime.now(UTC).isoformat(timespec="microseconds").encode("ascii")
        body = batch_body(payloads, b"".join((_SENT_AT, sent_at, _WRITE_KEY, self._key_json, b"}")))
        if self.gzip:
            body = gzip_compress(body, GZIP_LEVEL)
        try:
            answer = exchange(
                self._session,
                self.url,
                body,
                timeout=self.timeout,
                deadline=self.deadline,
                verify=self._verify,
            )
        except Exception as exc:  # whatever the server or the network does, never raise
            reply = classify_exception(self._words, exc, self.timeout, self.deadline)
        else:
            reply = classify_answer(self._words, answer, segment_delivered)
        detail = redact(reply.detail, self._secrets)
        return Reply(reply.kind, detail, reply.retry_after) if detail != reply.detail else reply

    def close(self) -> None:
        self._session.close()

    def describe(self) -> str:
        return f"segment {self.url}"

    def __repr__(self) -> str:
        return f"SegmentSink(host={self.host!r}, write_key='[redacted]')"
