"""The one HTTP client stack of the package: a pooled requests session in which every request
has an overall deadline, answers read with a size cap, and the wording of what went wrong.

Everything here treats the server as input: its status, headers and body decide what
happens to the events, but nothing it sends can raise out of a sink, hold a worker past
the deadline, or fill memory.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

import tracking_adapter
from tracking_adapter.errors import ConfigurationError
from tracking_adapter.retry import parse_retry_after
from tracking_adapter.security import redact
from tracking_adapter.sinks.base import Reply, ReplyKind, server_message

USER_AGENT = (
    f"tracking-adapter/{tracking_adapter.__version__} (+python-requests/{requests.__version__})"
)

Timeout = float | tuple[float, float]

DEFAULT_DEADLINE = 30.0
# No collector's acknowledgement or error is anywhere near this; a bigger answer is a page
# from something else, and reading it whole would let a server fill the worker's memory.
MAX_ANSWER_BYTES = 64 * 1024
_MAX_LOCATION_CHARS = 200


def check_deadline(deadline: object, *, option: str = "deadline") -> float:
    """``deadline`` as seconds, or a ConfigurationError naming ``option``."""
    if (
        isinstance(deadline, bool)
        or not isinstance(deadline, int | float)
        or not math.isfinite(deadline)
        or deadline <= 0
    ):
        raise ConfigurationError(
            f"{option} must be a number of seconds greater than 0 (the longest one request "
            f"may take, answer included), got {deadline!r}"
        )
    return float(deadline)


# -- the deadline ----------------------------------------------------------------------


class DeadlineExceeded(Exception):
    """The request was cut off by its deadline (the watchdog shut its socket)."""

    def __init__(self, deadline: float) -> None:
        super().__init__(f"did not finish within {deadline:g}s")
        self.deadline = deadline


_current = threading.local()


def _shut(sock: socket.socket | None) -> None:
    if sock is None:
        return
    # The plain socket's shutdown, also for a TLS socket: SSLSocket.shutdown would drop its
    # SSL object under the thread reading it. shutdown, unlike close, wakes a thread
    # blocked in recv on Linux. An error means it is already closed: nothing to cut off.
    with contextlib.suppress(OSError, ValueError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Deadline:
    """While active in a thread, the connections that thread's request uses are watched; at
    the deadline their sockets are shut down, whatever phase the request is in (TLS
    handshake, a status line arriving a byte a second, a trickling body), and the blocked
    read fails at once. Per-read socket timeouts cannot do this: each byte resets them."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.fired = False
        self.done = False
        self._lock = threading.Lock()
        self._connections: list[HTTPConnection] = []
        self._previous: _Deadline | None = None

    def __enter__(self) -> _Deadline:
        self._previous = getattr(_current, "deadline", None)
        _current.deadline = self
        _watchdog.arm(self, time.monotonic() + self.seconds)
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self.done = True
            self._connections.clear()
        _current.deadline = self._previous

    def watch(self, connection: HTTPConnection) -> None:
        with self._lock:
            if self.done:
                return
            if not any(known is connection for known in self._connections):
                self._connections.append(connection)
            if self.fired:
                _shut(connection.sock)

    def forget(self, connection: HTTPConnection) -> None:
        # Called as the pool takes a connection back: from then on it may serve another
        # request, which this deadline must never cut off.
        with self._lock:
            self._connections = [known for known in self._connections if known is not connection]

    def expire(self) -> None:
        # Under the lock, so a connection cannot be handed back to the pool between the
        # check and the shutdown.
        with self._lock:
            if self.done:
                return
            self.fired = True
            for connection in self._connections:
                _shut(connection.sock)


class _Watchdog:
    """One thread per process expires every request's deadline: a timer thread per request
    would cost more than a small request itself (about 0.4 ms to start one)."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # threads do not survive a fork

    def _reset(self) -> None:
        self._wake = threading.Condition(threading.Lock())
        self._due: list[tuple[float, int, _Deadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, deadline: _Deadline, at: float) -> None:
        with self._wake:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="tracking-adapter-deadline", daemon=True
                )
                self._thread.start()
            heapq.heappush(self._due, (at, next(self._order), deadline))
            if self._due[0][2] is deadline:  # sooner than what the thread sleeps toward
                self._wake.notify()

    def _run(self) -> None:
        while True:
            expired: list[_Deadline] = []
            with self._wake:
                now = time.monotonic()
                while self._due and (self._due[0][0] <= now or self._due[0][2].done):
                    _, _, deadline = heapq.heappop(self._due)
                    if not deadline.done:
                        expired.append(deadline)
                if not expired:
                    self._wake.wait(self._due[0][0] - now if self._due else None)
            for deadline in expired:  # outside the watchdog's lock: expire takes its own
                deadline.expire()


_watchdog = _Watchdog()


def _active() -> _Deadline | None:
    return getattr(_current, "deadline", None)


def _watch(connection: HTTPConnection) -> None:
    deadline = _active()
    if deadline is not None:
        deadline.watch(connection)


class _WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        deadline = _active()
        if deadline is not None and deadline.fired:  # expired during DNS or TCP connect
            _shut(sock)
        return sock

    def connect(self) -> None:
        _watch(self)  # before super(): the TLS handshake happens inside connect()
        super().connect()

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self)  # a pooled connection, already connected, is seen here
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    """The hooks above, then TLS (the MRO puts HTTPSConnection's connect under them)."""


def _forget(connection: Any) -> None:
    deadline = _active()
    if deadline is not None and connection is not None:
        deadline.forget(connection)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection

    def _put_conn(self, conn: Any) -> None:
        _forget(conn)
        super()._put_conn(conn)


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection

    def _put_conn(self, conn: Any) -> None:
        _forget(conn)
        super()._put_conn(conn)


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _DeadlineAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools bring their own connections
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


def pooled_session(url: str, verify: bool | str, pool_size: int = 4) -> requests.Session:
    """A session for ``url`` that keeps connections alive between batches and never retries
    by itself (retrying is the caller's decision, made once, with the shared policy).

    The environment is read here, once, with requests' own rules: the proxy for ``url``
    from ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` unless ``NO_PROXY`` names its host
    (the CA bundle is ``environment_verify``'s). Left to requests, it is read on every
    request, the whole environment walked twice (the proxies, then the bypass check): a
    cost per request that grows with the environment, hundreds of variables in many
    containers. ``~/.netrc`` is not read: its password for the collector's host would
    replace the sink's own credentials.
    """
    session = requests.Session()
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(url))
    session.verify = verify
    adapter = _DeadlineAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def environment_verify(verify: bool | str) -> bool | str:
    """The sink's ``verify`` option, or, when it is True, the CA bundle that
    ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` names, as requests takes it."""
    if verify is True:
        return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return verify


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes  # at most MAX_ANSWER_BYTES
    complete: bool  # False when the body went on past MAX_ANSWER_BYTES and was left unread


def exchange(
    session: requests.Session,
    url: str,
    data: bytes,
    *,
    timeout: Timeout,
    deadline: float,
    verify: bool | str,
) -> Answer:
    """POST ``data`` and read the answer, all within ``deadline`` seconds; never follows a
    redirect. Raises what requests raises, or DeadlineExceeded."""
    connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    # DNS and the TCP connect happen before there is a socket to shut; the connect timeout,
    # kept within the deadline, bounds them.
    bounded = (min(connect, deadline), min(read, deadline))
    with _Deadline(deadline) as guard:
        try:
            response = session.post(
                url,
                data=data,
                timeout=bounded,
                allow_redirects=False,
                verify=verify,
                stream=True,
            )
            try:
                body, complete = _read_capped(response)
            finally:
                # Unread: the connection is closed rather than pooled half-read.
                response.close()
        except Exception as exc:
            if guard.fired:
                raise DeadlineExceeded(deadline) from exc
            raise
    if guard.fired:
        # Cut off without an error: http.client takes the end of the stream for the end of
        # the headers, so a head cut short reads as a complete answer with no body. Nothing
        # read after the cut can be trusted.
        raise DeadlineExceeded(deadline)
    return Answer(response.status_code, response.headers, body, complete)


def _read_capped(response: requests.Response) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=8192):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            return b"".join(chunks)[:MAX_ANSWER_BYTES], False
    return b"".join(chunks), True


# -- what the answer means ---------------------------------------------------------------


@dataclass(frozen=True)
class Wording:
    """How a sink's errors name its service and the settings a person should change."""

    service: str
    key_setting: str
    endpoint_setting: str
    unreadable_hint: str  # what to change when the collector cannot read our requests
    secrets: tuple[str, ...] = ()


# A collector that says it could not read the request: our encoder always writes valid
# JSON, so a complaint about gzip, the encoding or the JSON syntax is about the request
# (a collector or proxy that cannot read gzip, a body mangled on the way), never an event.
_UNREADABLE = re.compile(
    r"gzip|gunzip|deflate|decompress|content[- ]encoding"
    r"|\b(?:invalid|malformed|unparsable|unparseable|bad)\s+json\b(?!\s*schema)"
    r"|\bjson\s+(?:parse|syntax|decode)|\bparse error|\bsyntax\s?error"
    r"|unexpected end of (?:json )?input|unexpected eof|unexpected token\b.{0,12}\bin json"
    r"|not (?:valid|well-formed) json|expecting value|looking for beginning of value"
    r"|(?:could not|cannot|can't|unable to|failed to)\s+(?:parse|decode|read|unmarshal)\s+"
    r"(?:the\s+)?(?:request|body|json|payload|input)",
    re.IGNORECASE,
)


def looks_like_html(answer: Answer) -> bool:
    content_type = (answer.headers.get("Content-Type") or "").lower()
    return "html" in content_type or answer.body.lstrip()[:1] == b"<"


def _unreadable(answer: Answer, detail: str) -> str | None:
    if looks_like_html(answer):
        return "the answer is an HTML page, not the collector's (a proxy or load balancer answered)"
    if _UNREADABLE.search(detail):
        return "it could not read the request body, which our encoder always writes as valid JSON"
    return None


def classify_answer(
    words: Wording, answer: Answer, delivered: Callable[[Answer], str | None]
) -> Reply:
    """Turn an HTTP answer into what the batch sender should do with the events.

    ``delivered`` reads a 2xx answer: None when it says the events were taken, else what
    it says instead. Every server text is redacted before it is cut.
    """
    status = answer.status
    service = words.service
    pending = "Events stay pending and are retried."
    detail = server_message(
        answer.body, answer.headers.get("Content-Type") or "", secrets=words.secrets
    )
    if 200 <= status < 300:
        problem = delivered(answer)
        if problem is None:
            return Reply(ReplyKind.OK)
        # Not the events' fault and not worth spending their attempts on: an answer like
        # this comes from whatever is at that address (a proxy, a captive portal, another
        # service), and it will give the same answer until the setting is fixed.
        said = f" ({detail})" if detail and not looks_like_html(answer) else ""
        return Reply(
            ReplyKind.CONFIG,
            f"{service} answered HTTP {status} but {problem}{said}, so nothing says the events "
            f"were taken; check the {words.endpoint_setting} (a proxy or another service at "
            f"that address?). {pending}",
        )
    if 300 <= status < 400:
        location = answer.headers.get("Location")
        if location:
            where = " ".join(redact(location, words.secrets).split())
            if len(where) > _MAX_LOCATION_CHARS:
                where = where[:_MAX_LOCATION_CHARS] + "..."
            target = f" to {where}"
        else:
            target = " without a Location"
        return Reply(
            ReplyKind.CONFIG,
            f"{service} answered HTTP {status}, a redirect{target}; redirects are never "
            "followed (that would send the key and the events to another address, or drop "
            f"the body): set the {words.endpoint_setting} to the URL that answers. {pending}",
        )
    if status in (401, 403):
        return Reply(
            ReplyKind.CONFIG,
            f"{service} refused the credentials (HTTP {status}: {detail or 'no message'}); "
            f"fix the {words.key_setting}. {pending}",
        )
    if status == 407:
        return Reply(
            ReplyKind.CONFIG,
            f"a proxy between this host and {service} wants credentials (HTTP 407); fix the "
            f"proxy settings (HTTPS_PROXY) or the {words.endpoint_setting}. {pending}",
        )
    if status in (404, 405, 410, 411, 414, 415, 421, 426, 431):
        return Reply(
            ReplyKind.CONFIG,
            f"{service} answered HTTP {status} at the configured URL "
            f"({detail or 'no message'}); check the {words.endpoint_setting}. {pending}",
        )
    if status in (408, 425, 429) or status >= 500 or status < 200:
        retry_after = parse_retry_after(answer.headers.get("Retry-After"))
        wait = f", asked to wait {retry_after:g}s" if retry_after is not None else ""
        return Reply(
            ReplyKind.RETRY,
            f"{service} answered HTTP {status}{wait}: {detail or 'no message'}",
            retry_after,
        )
    if status == 400 and (why := _unreadable(answer, detail)):
        return Reply(
            ReplyKind.CONFIG,
            f"{service} refused the request itself (HTTP 400: {detail or 'no message'}): "
            f"{why}. {words.unreadable_hint} {pending}",
        )
    return Reply(
        ReplyKind.BAD_PAYLOAD,
        f"{service} refused the event (HTTP {status}): {detail or 'no message'}",
    )


def json_body(answer: Answer) -> Any:
    """The answer's JSON, or a ``_NotJson`` saying what it is instead."""
    try:
        return json.loads(answer.body)
    except ValueError:  # UnicodeDecodeError included
        return _NOT_JSON


class _NotJson:
    pass


_NOT_JSON = _NotJson()


def not_json_problem(answer: Answer) -> str:
    if looks_like_html(answer):
        return "its body is an HTML page, not the collector's JSON"
    if not answer.body.strip():
        return "its body is empty"
    return "its body is not the collector's JSON"


def classify_exception(words: Wording, exc: Exception, timeout: Timeout, deadline: float) -> Reply:
    """What a failed exchange means. A network failure is worth retrying; an error raised
    before the request could leave, because of a setting, is a configuration error (it
    would fail the same way on every attempt, and spending attempts on it would end with
    every event dead). No exception text is passed on: it can hold the URL or a header."""
    service = words.service
    pending = "Events stay pending and are retried."
    kind = type(exc).__name__
    if isinstance(exc, DeadlineExceeded):
        return Reply(
            ReplyKind.RETRY,
            f"{service} did not finish within the {deadline:g}s deadline (the sink's "
            "deadline option); the connection was closed",
        )
    if isinstance(exc, requests.exceptions.InvalidHeader | UnicodeError):
        return Reply(
            ReplyKind.CONFIG,
            f"the request to {service} could not be sent: a header value is invalid "
            f"({kind}); check the {words.key_setting} for spaces, newlines or characters "
            f"outside ASCII. {pending}",
        )
    if isinstance(
        exc,
        requests.exceptions.InvalidURL
        | requests.exceptions.MissingSchema
        | requests.exceptions.InvalidSchema
        | requests.exceptions.URLRequired,
    ):
        return Reply(
            ReplyKind.CONFIG,
            f"the request to {service} could not be sent: the URL is invalid ({kind}); "
            f"check the {words.endpoint_setting}. {pending}",
        )
    if isinstance(exc, requests.exceptions.SSLError) and "certificate verify failed" in str(exc):
        return Reply(
            ReplyKind.CONFIG,
            f"{service}'s TLS certificate was not trusted ({kind}); check the "
            f"{words.endpoint_setting} and the sink's verify option (a CA bundle path; when "
            f"it is True, REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE in the environment). "
            f"{pending}",
        )
    # A read timeout on a pooled connection can surface as ConnectionError("Read timed out").
    if isinstance(exc, requests.Timeout) or (
        isinstance(exc, requests.RequestException) and "timed out" in str(exc).lower()
    ):
        return Reply(ReplyKind.RETRY, f"{service} did not answer within {timeout}s (timeout)")
    if isinstance(exc, requests.ConnectionError):
        return Reply(ReplyKind.RETRY, f"could not reach {service}: {kind}")
    if isinstance(exc, requests.RequestException):
        return Reply(ReplyKind.RETRY, f"request to {service} failed: {kind}")
    if isinstance(exc, OSError):
        # requests raises a bare OSError, before connecting, for a CA bundle or client
        # certificate path that does not exist.
        return Reply(
            ReplyKind.CONFIG,
            f"the request to {service} could not be prepared ({kind}); check the sink's "
            f"verify option (a CA bundle path that exists; when it is True, "
            f"REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE in the environment). {pending}",
        )
    return Reply(ReplyKind.RETRY, f"request to {service} failed unexpectedly: {kind}")
