"""Sinks that deliver on this machine: the console, a JSON-lines file, and memory (for tests)."""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, ClassVar

from tracking_adapter.errors import ConfigurationError
from tracking_adapter.schema import EnrichedEvent
from tracking_adapter.sinks.base import Outcome, SendResult, Sink


def _json_line(event: EnrichedEvent) -> str:
    return json.dumps(event.to_thrivestack(), ensure_ascii=False, separators=(",", ":")) + "\n"


class ConsoleSink(Sink):
    """One JSON line per event (the ``/track`` item) on standard output, or ``stream``."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream

    def send(self, events: Sequence[EnrichedEvent]) -> SendResult:
        stream = self._stream or sys.stdout  # looked up per call so redirection is honoured
        stream.write("".join(_json_line(event) for event in events))
        stream.flush()
        return SendResult.every(len(events), Outcome.delivered())

    def describe(self) -> str:
        return "console"


class FileSink(Sink):
    """Appends JSON lines to ``path``; safe for several processes writing the same file.

    Each ``send`` takes an exclusive ``flock`` and appends with ``O_APPEND``, so lines of
    concurrent writers never interleave. A failure to write leaves every event to retry.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if not path:
            raise ConfigurationError("FileSink needs path (SINK_OPTIONS['path'] in Django)")
        self.path = Path(path)

    def send(self, events: Sequence[EnrichedEvent]) -> SendResult:
        data = "".join(_json_line(event) for event in events).encode("utf-8")
        try:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                view = memoryview(data)
                while view:
                    written = os.write(descriptor, view)
                    view = view[written:]
                os.fsync(descriptor)
            finally:
                os.close(descriptor)  # closing releases the lock
        except OSError as exc:
            return SendResult.every(
                len(events), Outcome.retry(f"cannot write {self.path}: {exc.strerror}")
            )
        return SendResult.every(len(events), Outcome.delivered())

    def describe(self) -> str:
        return f"file {self.path}"


class MemorySink(Sink):
    """Keeps delivered events in a list (``MemorySink.sent`` unless given ``store``), for tests.

    The class-level store lets code that builds its own sink from settings be observed
    by the test that configured it.
    """

    sent: ClassVar[list[EnrichedEvent]] = []
    _lock: ClassVar[threading.Lock] = threading.Lock()
    process_local = True

    def __init__(self, store: list[EnrichedEvent] | None = None) -> None:
        self.store = MemorySink.sent if store is None else store

    def send(self, events: Sequence[EnrichedEvent]) -> SendResult:
        with self._lock:
            self.store.extend(events)
        return SendResult.every(len(events), Outcome.delivered())

    @classmethod
    def clear(cls) -> None:
        with cls._lock:
            cls.sent.clear()

    def describe(self) -> str:
        return "memory"
