"""ThriveStack's ``/track`` API: JSON arrays of track items, authenticated by ``x-api-key``."""

from __future__ import annotations

import requests

from tracking_adapter.errors import ConfigurationError
from tracking_adapter.schema import UserEnrichedEvent
from tracking_adapter.security import check_endpoint, redact
from tracking_adapter.sinks._http import (
    Timeout,
    classify_exception,
    classify_status,
    pooled_session,
)
from tracking_adapter.sinks.base import HttpBatchSink, Reply

DEFAULT_ENDPOINT = "https://api.app.thrivestack.ai/api"
MAX_EVENTS_PER_REQUEST = 1000  # ThriveStack's documented limits: over either is a 400
MAX_REQUEST_BYTES = 2 * 1024 * 1024


class ThriveStackSink(HttpBatchSink[bytes]):
    """Posts events to ``{endpoint}/track`` in as few requests as the limits allow.

    ``timeout`` is ``(connect, read)`` seconds or one number for both. http is refused for
    a host that is not loopback unless ``allow_http=True``; TLS certificates are verified
    (``verify`` may name a CA bundle).
    """

    def __init__(
        self,
        api_key: str,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        timeout: Timeout = (3.05, 10.0),
        max_events: int = MAX_EVENTS_PER_REQUEST,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        allow_http: bool = False,
        verify: bool | str = True,
        config_retry_delay: float = 300.0,
    ) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise ConfigurationError(
                "ThriveStackSink needs api_key (TRACKING_ADAPTER['SINK_OPTIONS']['api_key'] in "
                "Django): the key from ThriveStack's settings page"
            )
        super().__init__(
            max_events=max_events,
            max_request_bytes=max_request_bytes,
            max_event_bytes=max_request_bytes - 2,
            config_retry_delay=config_retry_delay,
        )
        self.endpoint = check_endpoint(endpoint, option="endpoint", allow_http=allow_http)
        self.url = f"{self.endpoint}/track"
        self.timeout = timeout
        self._api_key = api_key
        self._session = pooled_session()
        self._session.headers.update({"x-api-key": api_key, "Content-Type": "application/json"})
        self._session.verify = verify
        # Also given with each request: requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE in
        # the environment override a session's ``verify`` (psf/requests#3829), which would
        # silently drop the CA bundle (or the opt-out) configured here.
        self._verify = verify

    def encode(self, event: UserEnrichedEvent) -> tuple[bytes, int]:
        data = event.to_thrivestack_json()
        return data, len(data)

    def post(self, payloads: list[bytes]) -> Reply:
        body = b"[" + b",".join(payloads) + b"]"
        try:
            response = self._session.post(
                self.url,
                data=body,
                timeout=self.timeout,
                allow_redirects=False,
                verify=self._verify,
            )
        except requests.RequestException as exc:
            return self._clean(classify_exception("ThriveStack", exc, self.timeout))
        reply = classify_status(
            "ThriveStack",
            response.status_code,
            response.content,
            response.headers,
            key_setting="sink's api_key option (TRACKING_ADAPTER['SINK_OPTIONS']['api_key'])",
        )
        response.close()
        return self._clean(reply)

    def _clean(self, reply: Reply) -> Reply:
        # A server may echo the request headers back in an error text; never pass the key on.
        detail = redact(reply.detail, [self._api_key])
        return Reply(reply.kind, detail, reply.retry_after) if detail != reply.detail else reply

    def close(self) -> None:
        self._session.close()

    def describe(self) -> str:
        return f"thrivestack {self.url}"

    def __repr__(self) -> str:
        return f"ThriveStackSink(endpoint={self.endpoint!r}, api_key='[redacted]')"
