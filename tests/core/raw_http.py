"""A purpose-built TCP server on loopback for answers no well-behaved HTTP server gives.

Each connection reads one request (head, then as many body bytes as Content-Length says)
and hands the socket to ``behave``, which writes whatever it likes: raw bytes, a trickle,
half a TLS handshake. The connection is closed when ``behave`` returns.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def answer_with(raw: bytes) -> Callable[[socket.socket], None]:
    def behave(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(raw)

    return behave


def trickle(raw: bytes, every: float) -> Callable[[socket.socket], None]:
    def behave(conn: socket.socket) -> None:
        read_request(conn)
        for offset in range(len(raw)):
            conn.sendall(raw[offset : offset + 1])
            time.sleep(every)

    return behave


class RawServer:
    def __init__(self, behave: Callable[[socket.socket], None]) -> None:
        self.behave = behave
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.02)  # how soon the server notices it should stop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"http://{host}:{port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(10)
            self.behave(conn)

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=2)


@contextlib.contextmanager
def raw_server(behave: Callable[[socket.socket], None]) -> Iterator[RawServer]:
    with RawServer(behave) as server:
        yield server
