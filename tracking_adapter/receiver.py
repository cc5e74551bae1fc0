"""A local collector on loopback, shaped like ThriveStack's ``/track`` and Segment's ``/v1/batch``.

Used by the test suite, the demo and the benchmarks in place of the real services: it
checks what the real APIs check (the key, the body's shape, the documented limits), records
what arrived byte for byte, and can be scripted to answer 400/401/429/500, to hang past a
client's timeout, or to reset the connection. ``TCP_NODELAY`` is set on every connection so
no answer waits 40 ms for a delayed ACK, which would make the receiver, not the client,
what a benchmark measures.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tracking_adapter.encoding import gzip_decompress

# The documented limits in decimal units ("2 MB" = 2,000,000 bytes), the strict reading: a
# sink that passes here stays under the limit whichever unit the real service counts in.
THRIVESTACK_MAX_EVENTS = 1000
THRIVESTACK_MAX_BYTES = 2_000_000
SEGMENT_MAX_EVENTS = 2500
SEGMENT_MAX_BATCH_BYTES = 500_000
SEGMENT_MAX_EVENT_BYTES = 32_000


# The only routes: ThriveStack's /track under the base URL ``thrivestack_endpoint``, and
# Segment's batch endpoint. Matched exactly, so an endpoint misconfigured to end in /track
# (which the sink turns into /api/track/track) gets the 404 the real API would give.
TRACK_PATH = "/api/track"
BATCH_PATH = "/v1/batch"


@dataclass
class Scripted:
    """One canned answer, used for the next request instead of the normal behaviour."""

    status: int = 200
    body: Any = field(default_factory=lambda: {"success": True})
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # wait before answering (longer than a client's timeout = a hang)
    reset: bool = False  # abort the connection with a TCP reset instead of answering
    accept: bool = False  # after the delay, handle the request normally (a slow success)
    # Send the answer one byte every ``trickle`` seconds: from the status line on, or only
    # the body when ``trickle_body_only``. Each byte keeps a per-read timeout from firing.
    trickle: float = 0.0
    trickle_body_only: bool = False


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes  # exactly as received (before gzip decoding)
    status: int = 0  # what the receiver answered (0 for a reset)


class LoopbackReceiver:
    """Run with ``with LoopbackReceiver(api_key="k") as receiver:``; post to ``receiver.url``.

    ``reject`` is called with each received item; a string it returns makes the whole
    request a 400 carrying that message, as a real API refuses a batch holding one bad
    event. ``keep`` False stores counts only (for benchmarks of millions of events);
    ``latency`` delays every answer. ``always``, when set, answers every request not
    otherwise scripted (a collector that refuses everything). ``refuse_gzip``, when set, is
    the message of the 400 that answers every gzipped body, as a collector that cannot
    read gzip answers.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        write_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        reject: Callable[[dict[str, Any]], str | None] | None = None,
        keep: bool = True,
        latency: float = 0.0,
        always: Scripted | None = None,
        refuse_gzip: str | None = None,
    ) -> None:
        self.api_key = api_key
        self.write_key = write_key
        self.reject = reject
        self.keep = keep
        self.latency = latency  # seconds added to every answer, like a distant server
        self.always = always
        self.refuse_gzip = refuse_gzip
        self.requests: list[ReceivedRequest] = []
        self.items: list[dict[str, Any]] = []
        self.item_count = 0
        self.request_count = 0
        self._message_ids: set[str] = set()
        self.duplicate_count = 0
        self._script: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._server = _Server((host, port), _Handler)
        self._server.receiver = self
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        return f"http://{host}:{port}"

    @property
    def thrivestack_endpoint(self) -> str:
        """Base URL to give ThriveStackSink (it appends ``/track``)."""
        return f"{self.url}{TRACK_PATH.removesuffix('/track')}"

    def start(self) -> LoopbackReceiver:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() returns quickly
            name="loopback-receiver",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- scripting and inspection ------------------------------------------------------
    def script(self, *answers: Scripted) -> None:
        """Answer the next requests with these, in order; then behave normally again."""
        with self._lock:
            self._script.extend(answers)

    def wait_for_items(self, count: int, timeout: float = 10.0) -> bool:
        """Block until at least ``count`` items were accepted; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.item_count < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.items.clear()
            self.item_count = self.request_count = self.duplicate_count = 0
            self._message_ids.clear()
            self._script.clear()

    # -- request handling (called from handler threads) --------------------------------
    def _next_script(self) -> Scripted | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def _count(self, identities: list[bytes]) -> None:
        """Counting mode (``keep=False``): tally events by identity, store nothing else."""
        with self._changed:
            self.request_count += 1
            self.item_count += len(identities)
            for identity in identities:
                key = identity.decode("utf-8", "replace")
                if key in self._message_ids:
                    self.duplicate_count += 1
                else:
                    self._message_ids.add(key)
            self._changed.notify_all()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "items": self.item_count,
                "requests": self.request_count,
                "duplicates": self.duplicate_count,
                "distinct": len(self._message_ids),
            }

    def _record(self, request: ReceivedRequest, accepted: list[dict[str, Any]]) -> None:
        with self._changed:
            self.request_count += 1
            if self.keep:
                self.requests.append(request)
                self.items.extend(accepted)
            self.item_count += len(accepted)
            for item in accepted:
                message_id = _identity(item)
                if message_id in self._message_ids:
                    self.duplicate_count += 1
                else:
                    self._message_ids.add(message_id)
            self._changed.notify_all()

    def handle(
        self, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        """Decide the answer to one request; returns (status, JSON body, headers)."""
        body = raw
        if headers.get("content-encoding") == "gzip" and self.refuse_gzip is not None:
            # It reads the compressed bytes as JSON and fails, as such a collector does.
            status, answer = 400, {"code": "invalid_request", "message": self.refuse_gzip}
            self._record(ReceivedRequest(path, headers, raw, status), [])
            return status, answer, {}
        if headers.get("content-encoding") == "gzip":
            try:
                body = gzip_decompress(raw)
            except OSError:
                return 400, {"code": "invalid_request", "message": "bad gzip body"}, {}
        if not self.keep:
            return self._count_only(path, headers, body)
        if path == TRACK_PATH:
            status, answer, items = self._track(headers, body)
        elif path == BATCH_PATH:
            status, answer, items = self._batch(headers, body)
        else:
            status, answer, items = 404, {"message": f"no route for {path}"}, []
        self._record(ReceivedRequest(path, headers, raw, status), items if status == 200 else [])
        return status, answer, {}

    def _count_only(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        """The benchmark receiver: check the key, count events without decoding the JSON.

        Events are told apart by ``user_id`` on /track (the benchmarks send one event per
        user) and by ``messageId`` on /v1/batch.
        """
        if path == TRACK_PATH:
            if self.api_key is not None and headers.get("x-api-key") != self.api_key:
                return 401, {"success": False, "message": "Unauthorized: invalid x-api-key"}, {}
            self._count(_TRACK_USER.findall(body))
            return 200, {"success": True}, {}
        if path == BATCH_PATH:
            self._count(_SEGMENT_MESSAGE_ID.findall(body))
            return 200, {"success": True}, {}
        return 404, {"message": f"no route for {path}"}, {}

    def _track(self, headers: dict[str, str], body: bytes) -> tuple[int, Any, list[Any]]:
        if self.api_key is not None and headers.get("x-api-key") != self.api_key:
            return 401, {"success": False, "message": "Unauthorized: invalid x-api-key"}, []
        if len(body) > THRIVESTACK_MAX_BYTES:
            return 400, {"success": False, "message": "payload exceeds 2,000,000 bytes"}, []
        try:
            items = json.loads(body)
        except ValueError:
            return 400, {"success": False, "message": "invalid JSON"}, []
        if not isinstance(items, list):
            return 400, {"success": False, "message": "body must be a JSON array"}, []
        if len(items) > THRIVESTACK_MAX_EVENTS:
            return 400, {"success": False, "message": "more than 1000 events"}, []
        for index, item in enumerate(items):
            problem = _track_item_problem(item) or (self.reject(item) if self.reject else None)
            if problem:
                return 400, {"success": False, "message": f"event {index}: {problem}"}, []
        return 200, {"success": True, "eventId": f"evt_{next(_ids)}"}, items

    def _batch(self, headers: dict[str, str], body: bytes) -> tuple[int, Any, list[Any]]:
        expected = "Basic " + base64.b64encode(f"{self.write_key}:".encode()).decode()
        if self.write_key is not None and headers.get("authorization") != expected:
            return 401, {"code": "unauthorized", "message": "invalid write key"}, []
        if len(body) > SEGMENT_MAX_BATCH_BYTES:
            return 400, {"code": "invalid_request", "message": "batch exceeds 500,000 bytes"}, []
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, {"code": "invalid_request", "message": "invalid JSON"}, []
        batch = payload.get("batch") if isinstance(payload, dict) else None
        if not isinstance(batch, list):
            return 400, {"code": "invalid_request", "message": "body needs a batch array"}, []
        if len(batch) > SEGMENT_MAX_EVENTS:
            return 400, {"code": "invalid_request", "message": "more than 2500 events"}, []
        for index, item in enumerate(batch):
            problem = _segment_item_problem(item) or (self.reject(item) if self.reject else None)
            if problem:
                return 400, {"code": "invalid_request", "message": f"event {index}: {problem}"}, []
        return 200, {"success": True}, batch


def _identity(item: dict[str, Any]) -> str:
    message_id = item.get("messageId")
    if isinstance(message_id, str):
        return message_id
    return json.dumps(item, sort_keys=True)


def _track_item_problem(item: Any) -> str | None:
    if not isinstance(item, dict):
        return "must be an object"
    for name in ("event_name", "user_id"):
        if not isinstance(item.get(name), str) or not item[name]:
            return f"missing required field {name}"
    return None


def _segment_item_problem(item: Any) -> str | None:
    if not isinstance(item, dict):
        return "must be an object"
    if len(json.dumps(item).encode()) > SEGMENT_MAX_EVENT_BYTES:
        return "event exceeds 32,000 bytes"
    if item.get("type") == "track" and not item.get("event"):
        return "track call without event"
    if not (item.get("userId") or item.get("anonymousId")):
        return "userId or anonymousId is required"
    return None


_ids = itertools.count(1)
_TRACK_USER = re.compile(rb'"user_id":\s*"((?:[^"\\]|\\.)*)"')
_SEGMENT_MESSAGE_ID = re.compile(rb'"messageId":\s*"([^"]*)"')


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    receiver: LoopbackReceiver


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests and benchmarks read the receiver's records, not its log."""

    def do_GET(self) -> None:
        if self.path == "/stats":
            self._answer(200, self.server.receiver.stats(), {})
        else:
            self._answer(404, {"message": "GET /stats only"}, {})

    def do_POST(self) -> None:
        receiver = self.server.receiver
        if self.path == "/reset":  # the benchmark runner starts each contender from zero
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            receiver.clear()
            self._answer(200, receiver.stats(), {})
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        if receiver.latency:
            time.sleep(receiver.latency)
        scripted = receiver._next_script() or receiver.always
        if scripted is not None and scripted.delay:
            time.sleep(scripted.delay)
        if scripted is None or scripted.accept:
            status, answer, extra_headers = receiver.handle(self.path, headers, raw)
            self._answer(status, answer, extra_headers)
            return
        receiver._record(
            ReceivedRequest(self.path, headers, raw, 0 if scripted.reset else scripted.status), []
        )
        if scripted.reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if scripted.trickle:
            self._trickle(scripted)
            return
        self._answer(scripted.status, scripted.body, scripted.headers)

    def _answer(self, status: int, body: Any, headers: dict[str, str]) -> None:
        try:
            self.wfile.write(self._head(status, body, headers) + _body_bytes(body))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a timeout test): nothing to do

    def _head(self, status: int, body: Any, headers: dict[str, str]) -> bytes:
        names = {name.lower(): value for name, value in headers.items()}
        if names.get("connection", "").lower() == "close":
            self.close_connection = True
        reason = self.responses.get(status, ("Answer",))[0]
        lines = [f"HTTP/1.1 {status} {reason}", f"Date: {self.date_time_string()}"]
        if "content-type" not in names:  # a scripted Content-Type replaces the default
            lines.append("Content-Type: application/json")
        if "content-length" not in names:
            lines.append(f"Content-Length: {len(_body_bytes(body))}")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _trickle(self, scripted: Scripted) -> None:
        self.close_connection = True
        head = self._head(scripted.status, scripted.body, scripted.headers)
        data = head + _body_bytes(scripted.body)
        start = len(head) if scripted.trickle_body_only else 0
        try:
            self.wfile.write(data[:start])
            for offset in range(start, len(data)):
                time.sleep(scripted.trickle)
                self.wfile.write(data[offset : offset + 1])
        except OSError:
            pass  # the client hung up, as a deadline makes it


def _body_bytes(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def main(argv: list[str] | None = None) -> None:
    """``python -m tracking_adapter.receiver``: run a receiver until SIGTERM or Ctrl-C.

    Prints its URL on the first line; ``GET /stats`` answers the counts as JSON.
    """
    import argparse
    import contextlib
    import signal

    parser = argparse.ArgumentParser(prog="python -m tracking_adapter.receiver")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key")
    parser.add_argument("--write-key")
    parser.add_argument("--count-only", action="store_true", help="count events, keep nothing")
    args = parser.parse_args(argv)
    receiver = LoopbackReceiver(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        write_key=args.write_key,
        keep=not args.count_only,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with receiver:
        print(receiver.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()


if __name__ == "__main__":
    main()
