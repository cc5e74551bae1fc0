"""ThriveStack's ``/track`` API: JSON arrays of track items, authenticated by ``x-api-key``."""

from __future__ import annotations

from tracking_adapter.errors import ConfigurationError
from tracking_adapter.schema import EnrichedEvent
from tracking_adapter.security import check_endpoint, header_value_problem, redact
from tracking_adapter.sinks._http import (
    DEFAULT_DEADLINE,
    Answer,
    Timeout,
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

DEFAULT_ENDPOINT = "https://api.app.thrivestack.ai/api"
# ThriveStack's documented limits, over either is a 400. "2 MB" is read in decimal units:
# the smaller reading is the one that is safe whichever the server means.
MAX_EVENTS_PER_REQUEST = 1000
MAX_REQUEST_BYTES = 2_000_000

_KEY_OPTION = "api_key (TRACKING_ADAPTER['SINK_OPTIONS']['api_key'] in Django)"


def thrivestack_delivered(answer: Answer) -> str | None:
    """None when a 2xx answer says the events were taken (``{"success": true, ...}``, as
    ThriveStack documents), else what it says instead."""
    if not answer.complete:
        return "its body is far longer than any ThriveStack answer"
    data = json_body(answer)
    if isinstance(data, dict) and data.get("success") is True:
        return None
    if isinstance(data, dict):
        return 'its body does not say {"success": true}'
    if data is None or isinstance(data, list | str | int | float):
        return 'its body is JSON but not the {"success": true} object ThriveStack sends'
    return not_json_problem(answer)


class ThriveStackSink(HttpBatchSink[bytes]):
    """Posts events to ``{endpoint}/track`` in as few requests as the limits allow.

    ``timeout`` is ``(connect, read)`` seconds or one number for both; ``deadline`` bounds
    each whole request, answer included, whatever the server does. http is refused for a
    host that is not loopback unless ``allow_http=True``; TLS certificates are verified
    (``verify`` may name a CA bundle). Redirects are never followed.
    """

    request_refused_hint = (
        "Check the sink's endpoint option and any proxy between this host and ThriveStack."
    )

    def __init__(
        self,
        api_key: str,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        timeout: Timeout = (3.05, 10.0),
        deadline: float = DEFAULT_DEADLINE,
        max_events: int = MAX_EVENTS_PER_REQUEST,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        allow_http: bool = False,
        verify: bool | str = True,
        config_retry_delay: float = 300.0,
    ) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise ConfigurationError(
                f"ThriveStackSink needs {_KEY_OPTION}: the key from ThriveStack's settings page"
            )
        problem = header_value_problem(api_key)
        if problem:
            # Refused here, not at the first send: requests would raise InvalidHeader for
            # every request, and the events would spend their attempts on it.
            raise ConfigurationError(
                f"ThriveStackSink {_KEY_OPTION} {problem} (the key is not shown here)"
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
        self.deadline = check_deadline(deadline)
        self._api_key = api_key
        # Given with each request as well, so nothing requests merges in per request can
        # replace it (psf/requests#3829).
        self._verify = environment_verify(verify)
        self._session = pooled_session(self.url, self._verify)
        self._session.headers.update({"x-api-key": api_key, "Content-Type": "application/json"})
        self._words = Wording(
            service="ThriveStack",
            key_setting="sink's api_key option (TRACKING_ADAPTER['SINK_OPTIONS']['api_key'])",
            endpoint_setting=(
                "sink's endpoint option (TRACKING_ADAPTER['SINK_OPTIONS']['endpoint'])"
            ),
            unreadable_hint=(
                "Something between this host and ThriveStack changes the body: check the "
                "sink's endpoint option and any proxy in between."
            ),
            secrets=(api_key,),
        )

    def encode(self, event: EnrichedEvent) -> tuple[bytes, int]:
        data = event.to_thrivestack_json()
        return data, len(data)

    def post(self, payloads: list[bytes]) -> Reply:
        body = b"[" + b",".join(payloads) + b"]"
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
            return self._clean(classify_exception(self._words, exc, self.timeout, self.deadline))
        return self._clean(classify_answer(self._words, answer, thrivestack_delivered))

    def _clean(self, reply: Reply) -> Reply:
        # Server texts are redacted before they are cut; this catches the rest (a URL in
        # the reason, an echo outside the message).
        detail = redact(reply.detail, [self._api_key])
        return Reply(reply.kind, detail, reply.retry_after) if detail != reply.detail else reply

    def close(self) -> None:
        self._session.close()

    def describe(self) -> str:
        return f"thrivestack {self.url}"

    def __repr__(self) -> str:
        return f"ThriveStackSink(endpoint={self.endpoint!r}, api_key='[redacted]')"
