"""The one HTTP client stack of the package: a pooled requests session, and error wording."""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter

import tracking_adapter
from tracking_adapter.retry import parse_retry_after
from tracking_adapter.sinks.base import Reply, ReplyKind, server_message

USER_AGENT = (
    f"tracking-adapter/{tracking_adapter.__version__} (+python-requests/{requests.__version__})"
)

Timeout = float | tuple[float, float]


def pooled_session(pool_size: int = 4) -> requests.Session:
    """A session that keeps connections alive between batches and never retries by itself
    (retrying is the caller's decision, made once, with the shared policy)."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def classify_status(
    service: str, status: int, body: bytes | str, headers: dict[str, str] | object, key_setting: str
) -> Reply:
    """Turn an HTTP answer into what the batch sender should do with the events."""
    get = getattr(headers, "get", lambda _key, _default=None: None)
    detail = server_message(body, get("Content-Type", "") or "")
    if 200 <= status < 300:
        return Reply(ReplyKind.OK)
    if status in (401, 403):
        return Reply(
            ReplyKind.CONFIG,
            f"{service} refused the credentials (HTTP {status}: {detail or 'no message'}); "
            f"fix the {key_setting}. Events stay pending and are retried.",
        )
    if status == 404 or 300 <= status < 400:
        where = get("Location") if 300 <= status < 400 else None
        hint = f" (it redirects to {where})" if where else ""
        return Reply(
            ReplyKind.CONFIG,
            f"{service} answered HTTP {status} at the configured URL{hint}; check the sink's "
            "endpoint/host option. Events stay pending and are retried.",
        )
    if status in (408, 425, 429) or status >= 500:
        retry_after = parse_retry_after(get("Retry-After"))
        wait = f", asked to wait {retry_after:g}s" if retry_after is not None else ""
        return Reply(
            ReplyKind.RETRY,
            f"{service} answered HTTP {status}{wait}: {detail or 'no message'}",
            retry_after,
        )
    return Reply(ReplyKind.BAD_PAYLOAD, f"{service} refused the event (HTTP {status}): {detail}")


def classify_exception(service: str, exc: Exception, timeout: Timeout) -> Reply:
    """A network failure is always worth retrying; say which kind it was."""
    # A read timeout on a pooled connection can surface as ConnectionError("Read timed out").
    if isinstance(exc, requests.Timeout) or "timed out" in str(exc).lower():
        return Reply(ReplyKind.RETRY, f"{service} did not answer within {timeout}s (timeout)")
    if isinstance(exc, requests.ConnectionError):
        return Reply(ReplyKind.RETRY, f"could not reach {service}: {type(exc).__name__}")
    return Reply(ReplyKind.RETRY, f"request to {service} failed: {type(exc).__name__}")
