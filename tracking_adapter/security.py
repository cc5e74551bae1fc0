"""Keeping secrets out of text, and refusing cleartext endpoints off loopback."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from urllib.parse import urlsplit

from tracking_adapter.errors import ConfigurationError

REDACTED = "[redacted]"


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced (secrets under 4 chars are kept
    out of the replacement so a tiny value cannot blank out ordinary words)."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def header_value_problem(value: object) -> str | None:
    """Why ``value`` cannot be sent as an HTTP header value (an API key), or None if it can.

    The answer never quotes the value, so it is safe in an error or a system check. Keys are
    printable ASCII: a leading or trailing space or newline (a secrets file read as it is),
    a control character or a non-ASCII character would make the request fail before it
    leaves (requests' InvalidHeader, http.client's latin-1 encoding) or be refused as a bad
    key by a server that never saw the key it was given.
    """
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not value:
        return "is empty"
    if value != value.strip():
        return (
            "has leading or trailing whitespace (a newline left by reading a secrets "
            "file?); strip it"
        )
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        return "contains control characters"
    if not value.isascii():
        return (
            "contains non-ASCII characters; API keys are plain ASCII, check for a pasted look-alike"
        )
    return None


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(
        ".localhost"
    ):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_endpoint(url: str, *, option: str, allow_http: bool = False) -> str:
    """Validate an endpoint URL; http is allowed on loopback, elsewhere only when asked for.

    Returns the URL without a trailing slash. The error names ``option`` so the user knows
    which setting to fix.
    """
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"{option} must be a URL like https://host/path, got {url!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{option} must be an http(s) URL with a host, got {url!r}")
    if parts.username or parts.password:
        raise ConfigurationError(
            f"{option} must not carry credentials in the URL; pass the key as its own option"
        )
    if parts.scheme == "http" and not allow_http and not is_loopback_host(parts.hostname):
        raise ConfigurationError(
            f"{option} {url!r} uses plain http to a host that is not loopback, which would "
            "send the key in clear text: use https, or set allow_http=True if you accept that"
        )
    return url.rstrip("/")


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites records so no registered secret reaches a handler.

    Attached to third-party loggers that print request bodies (segment-analytics-python logs
    the whole batch, write key included, at DEBUG).
    """

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            cleaned = redact(message, self.secrets)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return True


_filters: dict[str, RedactingFilter] = {}


def redact_logger(logger_name: str, secrets: Iterable[str]) -> None:
    """Make sure ``secrets`` never appear in records logged through ``logger_name``."""
    log_filter = _filters.get(logger_name)
    if log_filter is None:
        log_filter = _filters[logger_name] = RedactingFilter()
        logging.getLogger(logger_name).addFilter(log_filter)
    log_filter.secrets.update(s for s in secrets if s)
