"""Wire bytes built fast, and exactly as the plain model's dicts encode.

The speed tricks of the sinks and the store live here, and only here. Each function names
the plain expression whose bytes it returns; ``tests/core/test_encoding.py`` checks the
equality over generated events, and a value a fast path cannot encode is handed to that
expression.

``thrivestack_item`` and ``event_json`` (the ThriveStack item and the event as the outbox
stores it: compact UTF-8 JSON) put the properties' compact JSON, which every event
serialises once in Rust for its content hash, between the other members, instead of
building the dict and encoding it all again.

``segment_message`` is the Segment track message as segment-analytics-python writes it
(``json.dumps`` defaults: ASCII escapes, ``", "`` and ``": "``). The plain path builds
``to_segment()``, deep-copying the properties and the context, then encodes the dict. Here
each properties model gets, once, its keys already encoded and one encoder per field chosen
by the field's type (a ``str`` field is one call of the C function ``json.dumps`` itself
escapes strings with); an event costs the field values read in one call, a check that its
texts need no escaping (then they go in as they are, and only the other fields are
encoded; else each field is), and one join of keys and values.

Why not rewrite the compact JSON every event caches (``properties_json()``)? Its bytes
never agree with this form (other separators, UTF-8 where this escapes, other float
spellings), and rewriting them (split on quotes, space the separators, escape) measured
slower than encoding the values: 9.9 against 7.6 µs per event on the benchmark's rows.

``gzip_compress`` and ``gzip_decompress`` are ``gzip.compress`` and ``gzip.decompress``
(the same bytes once decoded, not the same compressed bytes) through ISA-L (``isal``)
where it is installed, at its fastest levels.
"""

from __future__ import annotations

import functools
import gzip
import json
import operator
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Any

import pydantic_core

if TYPE_CHECKING:  # the schema imports this module: its classes are looked up when used
    from tracking_adapter.schema import EnrichedEvent, PropertiesBase


# Printable ASCII but the quote and the backslash: characters JSON writes as they are.
_PLAIN_JSON_TEXT = re.compile(r"[ !#-\[\]-~]*\Z")


def compact_json(value: Any) -> bytes:
    """``pydantic_core.to_json(value)``: compact UTF-8 JSON of a JSON-compatible value."""
    if type(value) is str and _PLAIN_JSON_TEXT.match(value):
        return b'"' + value.encode("ascii") + b'"'  # nothing to escape: skip the encoder
    # The properties' JSON comes from pydantic too: one spelling of numbers in a body
    # (json.dumps writes 1e-07 where pydantic writes 1e-7).
    return pydantic_core.to_json(value)


def thrivestack_item(event: EnrichedEvent) -> bytes:
    """``pydantic_core.to_json(event.to_thrivestack())``."""
    if event.context:
        context = compact_json({"group_id": event.group_id, **event.context})
    else:
        context = b'{"group_id":' + compact_json(event.group_id) + b"}"
    return b"".join(
        (
            b'{"user_id":',
            compact_json(event.user_id),
            b',"event_name":',
            compact_json(event.EVENT_NAME),
            b',"properties":',
            event.properties_json(),
            b',"context":',
            context,
            b',"timestamp":"',
            event.timestamp_text().encode("ascii"),
            b'"}',
        )
    )


def event_json(event: EnrichedEvent) -> bytes:
    """``pydantic_core.to_json({**event.model_dump(mode="json"), "timestamp":
    event.timestamp_text()})``: the model's own dump, with the spec's timestamp form."""
    return b"".join(
        (
            b'{"user_id":',
            compact_json(event.user_id),
            b',"group_id":',
            compact_json(event.group_id),
            b',"properties":',
            event.properties_json(),
            b',"timestamp":"',
            event.timestamp_text().encode("ascii"),
            b'","context":',
            compact_json(event.context),
            b',"message_id":',
            compact_json(event.message_id),
            b"}",
        )
    )


def ascii_json(text: str) -> bytes:
    """``json.dumps(text).encode("ascii")`` for a string."""
    return encode_basestring_ascii(text).encode("ascii")


def _unencodable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# Not in typeshed's json.encoder: the C accelerator's private constructor, None without it.
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)

if _c_make_encoder is not None:
    # json.dumps's own C encoder with its default settings, made once instead of on every
    # call (json.dumps builds one per call). No circular check: validated values have no
    # cycles, and a value that had one fails on the plain path as it always did.
    _C_ENCODER = _c_make_encoder(
        None, _unencodable, encode_basestring_ascii, None, ": ", ", ", False, False, True
    )

    def dumps(value: Any) -> str:
        """``json.dumps(value)``."""
        return "".join(_C_ENCODER(value, 0))

else:  # pragma: no cover - CPython always has the C accelerator

    def dumps(value: Any) -> str:
        return json.dumps(value)


def segment_message(event: EnrichedEvent) -> bytes:
    """``json.dumps(event.to_segment()).encode("ascii")``, without building the dict."""
    kind = _SEGMENT_KINDS.get(type(event)) or _segment_kind(type(event))
    if kind is _PLAIN:
        return json.dumps(event.to_segment()).encode("ascii")
    fields, extras = _properties_parts(event.properties)
    if event.context:
        # The dict to_segment() builds, less its deep copy (encoding changes nothing).
        context = dumps({**event.context, "groupId": event.group_id})
    else:
        context = '{"groupId": ' + encode_basestring_ascii(event.group_id) + "}"
    return "".join(
        (
            '{"type": "track", "userId": ',
            encode_basestring_ascii(event.user_id),
            kind.event,  # , "event": "user_enriched", "properties":
            fields,
            extras,
            ', "context": ',
            context,
            ', "timestamp": "',
            event.timestamp_text(),
            '", "messageId": ',
            encode_basestring_ascii(event.message_id),
            "}",
        )
    ).encode("ascii")


def properties_text(properties: PropertiesBase) -> str:
    """``json.dumps(properties.to_wire())``."""
    return "".join(_properties_parts(properties))


def _properties_parts(properties: PropertiesBase) -> tuple[str, str]:
    """``properties_text`` in two parts (joined by the caller, into the message: one copy
    of the text fewer): the fields, then the extras and the closing brace."""
    cls = type(properties)
    plan = _PROPERTIES_PLANS[cls] if cls in _PROPERTIES_PLANS else _properties_plan(cls)
    if plan is None:  # a model with its own to_wire(), or without fields
        return json.dumps(properties.to_wire()), ""
    try:
        fields = _fields_text(plan, properties.__dict__)
    except (TypeError, KeyError):
        # A field holding what its type does not allow, or missing (set past validation:
        # model_construct): the plain path encodes whatever there is.
        return json.dumps(properties.to_wire()), ""
    extra = properties.__pydantic_extra__
    if not extra:
        return fields, "}"
    if not plan.names.isdisjoint(extra):  # an extra shadowing a field: the dict merges them
        return json.dumps(properties.to_wire()), ""
    return fields, ", " + dumps(extra)[1:]  # the extras' members after the fields'


def _fields_text(plan: _PropertiesPlan, values: dict[str, Any]) -> str:
    """The object up to its last field: the keys and the encoded values, alternating in
    one list, joined (a %-template in its place is parsed again on every call).

    When every ``str`` field holds printable ASCII without a quote or a backslash (what
    most values are), none has anything to escape: the texts go in as they are, between
    keys that carry their quotes, and only the other fields are encoded."""
    fields = plan.read(values)
    read = list(fields)
    for position in plan.others:
        read[position] = ""
    texts = " ".join(read)  # a TypeError unless each str field holds a str
    if texts.isascii() and texts.isprintable() and '"' not in texts and "\\" not in texts:
        for position in plan.others:
            read[position] = plan.encoders[position](fields[position])
        slots = list(plan.quoted_slots)
    else:
        read = list(map(operator.call, plan.encoders, fields))
        slots = list(plan.slots)
    slots[1::2] = read
    return "".join(slots)


@dataclass(frozen=True)
class _PropertiesPlan:
    """How one properties model is encoded: ``slots`` are the texts around the encoded
    values, from the opening brace to after the last one (``{"a": ``, ``, "b": ``, ``""``),
    with an empty slot between each two: filled with the values, the object up to its last
    field, without the closing brace. ``quoted_slots`` are the same with the quotes of the
    ``str`` fields, for their values as they are (see ``_fields_text``)."""

    names: frozenset[str]
    read: Callable[[dict[str, Any]], tuple[Any, ...]]  # the field values, in field order
    encoders: tuple[Callable[[Any], str], ...]  # one per field: the value as json.dumps
    others: tuple[int, ...]  # the positions of the fields that are not str
    slots: tuple[str, ...]
    quoted_slots: tuple[str, ...]


def _text_list(items: list[str]) -> str:
    if not isinstance(items, list | tuple):  # a string would be taken for its characters
        raise TypeError(f"expected a list, got {type(items).__name__}")
    return "[" + ", ".join(map(encode_basestring_ascii, items)) + "]"


def _field_encoder(annotation: Any) -> Callable[[Any], str]:
    """The encoder of a field's values: ``str`` fields take the C string escaper, which
    refuses (TypeError) anything but a string, so a wrong value goes to the plain path."""
    if annotation is str:
        return encode_basestring_ascii
    if annotation == list[str]:
        return _text_list
    return dumps  # any JSON value, as json.dumps writes it


_PROPERTIES_PLANS: dict[type[PropertiesBase], _PropertiesPlan | None] = {}


def _slots(around: list[str]) -> tuple[str, ...]:
    """The texts around the values, with an empty slot between each two for a value."""
    slots = [""] * (2 * len(around) - 1)
    slots[::2] = around
    return tuple(slots)


def _properties_plan(cls: type[PropertiesBase]) -> _PropertiesPlan | None:
    from tracking_adapter.schema import PropertiesBase

    plan = None
    names = tuple(cls.model_fields)
    if cls.to_wire is PropertiesBase.to_wire and names:
        keys = [encode_basestring_ascii(name) for name in names]
        encoders = tuple(_field_encoder(f.annotation) for f in cls.model_fields.values())
        quotes = ['"' if encoder is encode_basestring_ascii else "" for encoder in encoders]
        read = operator.itemgetter(*names)
        plan = _PropertiesPlan(
            names=frozenset(names),
            read=read if len(names) > 1 else lambda values: (read(values),),
            encoders=encoders,
            others=tuple(position for position, quote in enumerate(quotes) if not quote),
            slots=_slots(["{" + keys[0] + ": ", *(f", {key}: " for key in keys[1:]), ""]),
            quoted_slots=_slots(
                [
                    "{" + keys[0] + ": " + quotes[0],
                    *(f"{quotes[i - 1]}, {keys[i]}: {quotes[i]}" for i in range(1, len(keys))),
                    quotes[-1],
                ]
            ),
        )
    _PROPERTIES_PLANS[cls] = plan
    return plan


@dataclass(frozen=True)
class _SegmentKind:
    """What ``segment_message`` needs to know of an event class, found once per class."""

    event: str  # the text between the userId and the properties


_PLAIN = _SegmentKind("")  # the class writes its own to_segment(): encode that
_SEGMENT_KINDS: dict[type[EnrichedEvent], _SegmentKind] = {}


def _segment_kind(cls: type[EnrichedEvent]) -> _SegmentKind:
    from tracking_adapter.schema import EnrichedEvent

    if cls.to_segment is not EnrichedEvent.to_segment:
        kind = _PLAIN
    else:
        name = encode_basestring_ascii(cls.EVENT_NAME)
        kind = _SegmentKind(f', "event": {name}, "properties": ')
    _SEGMENT_KINDS[cls] = kind
    return kind


# ISA-L's levels are 0 to 3. At 1, on the Segment sink's request bodies (`python -m
# bench.gzip_levels`), it spends a fifth to a sixth of the CPU of zlib's level 1 for a
# slightly smaller body; above 3 only zlib has the level.
_ISAL_LEVELS = range(4)
# wbits 16 + 15: a gzip member (header, deflate stream, CRC-32 and length), as gzip writes.
_GZIP_WBITS = 31


@functools.cache
def _isal() -> tuple[Any, Any]:
    """isal's gzip and zlib modules, imported when first needed rather than with this
    package (whose importers mostly never compress: a web process, the save path), or
    ``(None, None)`` on a platform without isal's wheels, where zlib does it all."""
    try:
        from isal import igzip, isal_zlib
    except ImportError:
        return None, None
    return igzip, isal_zlib


def gzip_engine() -> str:
    """``"isal"`` where ISA-L compresses at the sinks' levels, else ``"zlib"``."""
    return "zlib" if _isal()[1] is None else "isal"


def gzip_compress(data: bytes, level: int) -> bytes:
    """``gzip.compress(data, compresslevel=level)``, to the same bytes once decompressed:
    ISA-L's compressor at levels 0 to 3 where ``isal`` is installed, else zlib's."""
    isal_zlib = _isal()[1]
    if isal_zlib is not None and level in _ISAL_LEVELS:
        compressed: bytes = isal_zlib.compress(data, level, _GZIP_WBITS)
        return compressed
    return gzip.compress(data, compresslevel=level)


def gzip_decompress(data: bytes) -> bytes:
    """``gzip.decompress(data)``, every member, through ISA-L where ``isal`` is installed.
    Whatever is not a whole gzip stream (other bytes, one cut short, a corrupt one) raises
    ``gzip.BadGzipFile``: the libraries raise four kinds (isal's own error derives from
    none of zlib's)."""
    igzip, isal_zlib = _isal()
    errors = (OSError, EOFError, zlib.error, *((isal_zlib.error,) if isal_zlib else ()))
    try:
        decompressed: bytes = (igzip or gzip).decompress(data)
        return decompressed
    except gzip.BadGzipFile:
        raise
    except errors as exc:
        raise gzip.BadGzipFile(f"not a whole gzip stream: {exc}") from exc
