"""Other Segment sinks, for the benchmark only: the sink as it was, and through the client.

``PlainEncodeSink`` is the sink before ``tracking_adapter.encoding`` (the ``segment-plain``
contenders). ``ClientPostSink`` (``segment-1-process-client-post``) measures what using the
official client's ``request.post`` would cost against the sink's own encoder and session.
``request.post`` takes the messages as dicts and encodes the whole body itself, so each event
is built as ``to_segment()`` and encoded once more only to be sized; it gzips at level 9
(``GzipFile``'s default) and posts through its module-level session, which follows
redirects and has no overall deadline. Not a sink to deliver with: the answers are read
only as far as the benchmark needs.
"""

from __future__ import annotations

import json
from typing import Any

from segment.analytics import request

from tracking_adapter.schema import EnrichedEvent
from tracking_adapter.sinks.base import Reply, ReplyKind
from tracking_adapter.sinks.segment import SegmentSink


class ClientPostSink(SegmentSink):
    def encode(self, event: EnrichedEvent) -> tuple[Any, int]:
        message = event.to_segment()
        return message, len(json.dumps(message).encode("ascii"))

    def post(self, payloads: list[Any]) -> Reply:
        try:
            request.post(
                self._secrets[0],
                host=self.host,
                gzip=self.gzip,
                timeout=self.timeout,
                batch=payloads,
            )
        except request.APIError as exc:
            return Reply(ReplyKind.RETRY, f"HTTP {exc.status}")
        except Exception as exc:  # the network: the benchmark counts what arrived
            return Reply(ReplyKind.RETRY, type(exc).__name__)
        return Reply(ReplyKind.OK)


class PlainEncodeSink(SegmentSink):
    """The Segment sink as it was before tracking_adapter.encoding: each message built as
    ``to_segment()`` and encoded by ``json.dumps`` (run it with gzip level 6, its level
    then). For the ``segment-plain`` contenders: the before, measured in the same run."""

    def encode(self, event: EnrichedEvent) -> tuple[bytes, int]:
        data = json.dumps(event.to_segment()).encode("ascii")
        return data, len(data)
