"""Segment's HTTP Tracking API (``/v1/batch``) and any Segment-compatible collector.

Sends through segment-analytics-python's batch request function, the one the official
client's consumer uses, but not through its in-memory queue (which drops events when full
and keeps nothing across a crash): batches come from the caller's durable store.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import requests

from tracking_adapter.errors import ConfigurationError
from tracking_adapter.schema import UserEnrichedEvent
from tracking_adapter.security import check_endpoint, redact, redact_logger
from tracking_adapter.sinks._http import classify_exception, classify_status
from tracking_adapter.sinks.base import HttpBatchSink, Reply, ReplyKind

DEFAULT_HOST = "https://api.segment.io"
MAX_EVENTS_PER_BATCH = 2500  # Segment's documented limits
MAX_BATCH_BYTES = 500 * 1024
MAX_EVENT_BYTES = 32 * 1024
# {"batch": [...], "sentAt": "2024-01-01T00:00:00.000000+00:00", "writeKey": "<key>"}
_ENVELOPE_BYTES = 80


class SegmentSink(HttpBatchSink[dict[str, Any]]):
    """Posts Segment track messages carrying our ``messageId``, so Segment's dedupe applies."""

    def __init__(
        self,
        write_key: str,
        host: str = DEFAULT_HOST,
        *,
        gzip: bool = True,
        timeout: float = 15.0,
        max_events: int = MAX_EVENTS_PER_BATCH,
        max_request_bytes: int = MAX_BATCH_BYTES,
        max_event_bytes: int = MAX_EVENT_BYTES,
        allow_http: bool = False,
        config_retry_delay: float = 300.0,
    ) -> None:
        if not isinstance(write_key, str) or not write_key.strip():
            raise ConfigurationError(
                "SegmentSink needs write_key (TRACKING_ADAPTER['SINK_OPTIONS']['write_key'] in "
                "Django): the source's write key"
            )
        try:
            from segment.analytics import request as segment_request
        except ImportError:
            raise ConfigurationError(
                "the Segment sink needs segment-analytics-python: "
                "pip install 'tracking-adapter[segment]'"
            ) from None
        super().__init__(
            max_events=max_events,
            max_request_bytes=max_request_bytes,
            max_event_bytes=max_event_bytes,
            # The client writes the key into the body with json.dumps (ASCII escapes).
            envelope_bytes=_ENVELOPE_BYTES + len(json.dumps(write_key)),
            separator_bytes=2,  # the client encodes with json.dumps defaults: ", "
            config_retry_delay=config_retry_delay,
        )
        self.host = check_endpoint(host, option="host", allow_http=allow_http)
        self.gzip = gzip
        self.timeout = timeout
        self._write_key = write_key
        self._request = segment_request
        basic = base64.b64encode(f"{write_key}:".encode()).decode("ascii")
        self._secrets = [write_key, basic]
        # The client logs each request body, write key included, at DEBUG.
        redact_logger("segment", self._secrets)

    def encode(self, event: UserEnrichedEvent) -> tuple[dict[str, Any], int]:
        message = event.to_segment()
        return message, len(json.dumps(message).encode("utf-8"))

    def post(self, payloads: list[dict[str, Any]]) -> Reply:
        try:
            self._request.post(
                self._write_key,
                host=self.host,
                gzip=self.gzip,
                timeout=self.timeout,
                batch=payloads,
            )
        except self._request.APIError as exc:
            response = getattr(exc, "response", None)
            body = response.content if response is not None else str(exc.message)
            headers = response.headers if response is not None else {}
            reply = classify_status(
                "the Segment collector",
                int(exc.status),
                body,
                headers,
                key_setting="sink's write_key option (TRACKING_ADAPTER['SINK_OPTIONS']['write_key'])",
            )
        except requests.RequestException as exc:
            reply = classify_exception("the Segment collector", exc, self.timeout)
        else:
            reply = Reply(ReplyKind.OK)
        detail = redact(reply.detail, self._secrets)
        return Reply(reply.kind, detail, reply.retry_after)

    def describe(self) -> str:
        return f"segment {self.host}/v1/batch"

    def __repr__(self) -> str:
        return f"SegmentSink(host={self.host!r}, write_key='[redacted]')"
