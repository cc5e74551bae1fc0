"""The ``user_enriched`` event (ThriveStack's spec) as pydantic models, and its wire forms.

Input is forgiving in the ways real data needs (the spec's own samples spell the event
``event`` and put ``group_id`` inside ``context``; the current API spells it ``event_name``),
output is exact: ``to_thrivestack()`` is the ``/track`` item, ``to_segment()`` the Segment
track message.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import sys
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

EVENT_NAME = "user_enriched"
MESSAGE_ID_MAX_LENGTH = 100  # Segment's limit; ThriveStack has none.

# uuid5 namespace for derived message ids; fixed forever so ids stay stable across releases.
_MESSAGE_ID_NAMESPACE = uuid.UUID("5b0f2a56-1c39-4c3b-9a8e-7d7e6a1f0c21")
_NAMESPACE_BYTES = _MESSAGE_ID_NAMESPACE.bytes

# The spec's table, in its order (it happens to be alphabetical).
PROPERTY_DESCRIPTIONS: dict[str, str] = {
    "enrichment_active_at": "The timestamp when the enrichment became active.",
    "enrichment_avatar": "The URL of the user's avatar.",
    "enrichment_city": "The city where the user is located.",
    "enrichment_country": "The country where the user is located.",
    "enrichment_country_code": "The country code of the user's location.",
    "enrichment_email_provider": "The email provider of the user.",
    "enrichment_employment_domain": "The domain of the user's employment.",
    "enrichment_employment_name": "The name of the user's employer.",
    "enrichment_employment_role": "The role of the user in their employment.",
    "enrichment_employment_seniority": "The seniority level of the user in their employment.",
    "enrichment_employment_sub_role": "The sub-role of the user in their employment.",
    "enrichment_employment_title": "The job title of the user.",
    "enrichment_facebook_handle": "The Facebook handle of the user.",
    "enrichment_first_name": "The first name of the user.",
    "enrichment_full_name": "The full name of the user.",
    "enrichment_github_handle": "The GitHub handle of the user.",
    "enrichment_inactive_at": "The timestamp when the enrichment became inactive.",
    "enrichment_last_name": "The last name of the user.",
    "enrichment_linkedin_handle": "The LinkedIn handle of the user.",
    "enrichment_location": "The location of the user.",
    "enrichment_phone": "The phone numbers of the user.",
    "enrichment_state": "The state where the user is located.",
    "enrichment_state_code": "The state code of the user's location.",
    "enrichment_time_zone": "The time zone of the user's location.",
    "enrichment_twitter_handle": "The Twitter handle of the user.",
}
PROPERTY_NAMES: tuple[str, ...] = tuple(PROPERTY_DESCRIPTIONS)
TEXT_PROPERTY_NAMES: tuple[str, ...] = tuple(n for n in PROPERTY_NAMES if n != "enrichment_phone")
_TIMESTAMP_PROPERTY_NAMES = ("enrichment_active_at", "enrichment_inactive_at")
_PLAIN_TEXT_PROPERTY_NAMES = tuple(
    n for n in TEXT_PROPERTY_NAMES if n not in _TIMESTAMP_PROPERTY_NAMES
)


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 in UTC with milliseconds and ``Z``: ``2023-11-02T00:30:08.276Z`` (the spec's form).

    A naive datetime is taken to be UTC.
    """
    # isoformat() always writes a four-digit year (strftime's %Y does not, on every platform).
    return as_utc(moment).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def as_utc(moment: datetime) -> datetime:
    """The same instant in UTC; naive datetimes are documented to mean UTC."""
    if moment.tzinfo is UTC:
        return moment
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            f"{moment.isoformat()} is outside the range of representable times"
        ) from None


def _json_bytes(value: Any) -> bytes:
    if type(value) is str and _PLAIN_JSON_TEXT.match(value):
        return b'"' + value.encode("ascii") + b'"'  # nothing to escape: skip the encoder
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# Printable ASCII but the quote and the backslash: characters JSON writes as they are.
_PLAIN_JSON_TEXT = re.compile(r"[ !#-\[\]-~]*\Z")


def _type_name(value: object) -> str:
    return type(value).__name__


def _check_text(value: str) -> str:
    if "\x00" in value:
        # Valid JSON (\u0000), but PostgreSQL's text and jsonb refuse it, as do many stores
        # downstream: an event holding one could be neither kept in an outbox nor relied on.
        raise ValueError(
            f"contains a NUL character (\\x00) at position {value.index(chr(0))}, which "
            "databases refuse"
        )
    if value.isascii():  # the common case, and ASCII cannot hold a lone surrogate
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        # Lone surrogates (from broken decoders) cannot be sent as JSON in UTF-8.
        raise ValueError(
            f"contains a character that is not valid Unicode at position {exc.start}"
        ) from None
    return value


def _int_is_readable(value: int) -> bool:
    """Whether Python (so the outbox, and most JSON readers) can read this integer back:
    since Python 3.11 ``json.loads`` refuses integers longer than 4,300 digits."""
    limit = sys.get_int_max_str_digits()
    if not limit or value.bit_length() * 0.30103 < limit - 1:  # fewer digits than the limit
        return True
    try:
        return len(str(abs(value))) <= limit
    except ValueError:
        return False


MAX_NESTING = 64  # JSON readers limit depth too (Python's recursion, parsers' stacks)


def check_json_compatible(value: Any, path: str, depth: int = 0) -> None:
    """Raise ValueError naming the path if ``value`` cannot be sent as JSON as it is."""
    if depth > MAX_NESTING:
        raise ValueError(
            f"{path}: nested more than {MAX_NESTING} levels deep; flatten it before sending"
        )
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not _int_is_readable(value):
            raise ValueError(
                f"{path}: an integer of {value.bit_length()} bits is too large to send as JSON "
                "(JSON readers refuse it); send it as a string"
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path}: {value} is not a finite number and cannot be sent as JSON")
        return
    if isinstance(value, str):
        try:
            _check_text(value)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_json_compatible(item, f"{path}[{index}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{path}: key {key!r} is not a string")
            try:
                _check_text(key)
            except ValueError as exc:
                raise ValueError(f"{path}: key {key!r}: {exc}") from None
            check_json_compatible(item, f"{path}.{key}", depth + 1)
        return
    raise ValueError(f"{path}: a {_type_name(value)} cannot be sent as JSON")


class EnrichmentProperties(BaseModel):
    """The 25 ``enrichment_*`` properties of ``user_enriched``, plus any extra properties.

    Text properties default to ``""`` and ``enrichment_phone`` to ``[]``; ``None`` from a
    source becomes the default. ``enrichment_active_at``/``enrichment_inactive_at`` also take
    a datetime, written in the spec's timestamp form. A single phone string becomes a
    one-item list. Anything else of the wrong type is an error naming the property.
    Extra properties are kept as given, and must be JSON-compatible.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    enrichment_active_at: str = Field("", description=PROPERTY_DESCRIPTIONS["enrichment_active_at"])
    enrichment_avatar: str = Field("", description=PROPERTY_DESCRIPTIONS["enrichment_avatar"])
    enrichment_city: str = Field("", description=PROPERTY_DESCRIPTIONS["enrichment_city"])
    enrichment_country: str = Field("", description=PROPERTY_DESCRIPTIONS["enrichment_country"])
    enrichment_country_code: str = Field(
        "", description=PROPERTY_DESCRIPTIONS["enrichment_country_code"]
    )
    enrichment_email_provider: str = Field(
        "", description=PROPERTY_DESCRIPTIONS["enrichment_email_provider"]
    )
    enrichment_employment_domain: str = Field(
        "", description=PROPERTY_DESCRIPTIONS["enrichment_employment_domain"]
    )
    enrichment_employment_name: str = Field(
        "", description=PROPERTY_DESCRIPTIONS["enrichment_employment_name"]
    )
    enrichment_employment_role: str = Field(
        "", description=PROPERTY_DESCRIPTIONS["enrichment_employment_role"]
    )
    enrichment_employment_seniority: str = Field(
        "", description=PROPERTY_DESCRIPTIONS["enrichment_employment_seniority"]
    )
    enrichment_employment_sub_role: str = Field(
        "", description=PROPERTY_DESCRIPTIONS["enrichment_employment_sub_role"]
    )
    enrichment_employment_title: str = Field(
        "", description=PROPERTY_DESCRIPTIONS["enrichment_employment_title"]
    )
    enrichment_facebook_handle: str = Field(
        "", description=PROPERTY_DESCRIPTIONS["enrichment_facebook_handle"]
    )
    enrichment_first_name: str = Field(
        "", description=PROPERTY_DESCRIPTIONS["enrichment_first_name"]
    )
    enrichment_full_name: str = Field("", description=PROPERTY_DESCRIPTIONS["enrichment_full_name"])
    enrichment_github_handle: str = Field(
        "", description=PROPERTY_DESCRIPTIONS["enrichment_github_handle"]
    )
    enrichment_inactive_at: str = Field(
        "", description=PROPERTY_DESCRIPTIONS["enrichment_inactive_at"]
    )
    enrichment_last_name: str = Field("", description=PROPERTY_DESCRIPTIONS["enrichment_last_name"])
    enrichment_linkedin_handle: str = Field(
        "", description=PROPERTY_DESCRIPTIONS["enrichment_linkedin_handle"]
    )
    enrichment_location: str = Field("", description=PROPERTY_DESCRIPTIONS["enrichment_location"])
    enrichment_phone: list[str] = Field(
        default_factory=list, description=PROPERTY_DESCRIPTIONS["enrichment_phone"]
    )
    enrichment_state: str = Field("", description=PROPERTY_DESCRIPTIONS["enrichment_state"])
    enrichment_state_code: str = Field(
        "", description=PROPERTY_DESCRIPTIONS["enrichment_state_code"]
    )
    enrichment_time_zone: str = Field("", description=PROPERTY_DESCRIPTIONS["enrichment_time_zone"])
    enrichment_twitter_handle: str = Field(
        "", description=PROPERTY_DESCRIPTIONS["enrichment_twitter_handle"]
    )

    # Two validators rather than one taking ValidationInfo: building that object for each
    # of 25 fields of every event is measurable on a backfill.
    @field_validator(*_PLAIN_TEXT_PROPERTY_NAMES, mode="before")
    @classmethod
    def _text_or_default(cls, value: Any) -> Any:
        if isinstance(value, str):
            return _check_text(value)
        if value is None:
            return ""
        raise ValueError(f"expected a string or null, got {_type_name(value)} {value!r:.80}")

    @field_validator(*_TIMESTAMP_PROPERTY_NAMES, mode="before")
    @classmethod
    def _text_timestamp_or_default(cls, value: Any) -> Any:
        if isinstance(value, datetime):
            return format_timestamp(value)
        return cls._text_or_default(value)

    @field_validator("enrichment_phone", mode="before")
    @classmethod
    def _phone_list(cls, value: Any) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            return [_check_text(value)] if value.strip() else []
        if not isinstance(value, list | tuple):
            raise ValueError(
                f"expected a list of phone numbers, a single string or null, got {_type_name(value)}"
            )
        phones = []
        for index, item in enumerate(value):
            if item is None:
                continue
            if not isinstance(item, str):
                raise ValueError(
                    f"item {index} must be a phone number string, got {_type_name(item)} {item!r:.80}"
                )
            if item.strip():
                phones.append(_check_text(item))
        return phones

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EnrichmentProperties):
            return NotImplemented
        return self.__dict__ == other.__dict__ and self.extra == other.extra

    __hash__ = None  # type: ignore[assignment]

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            super().__setattr__(name, value)
            return
        if name not in type(self).model_fields:
            # Validate an extra before it lands in __pydantic_extra__, not after.
            type(self).model_validate({name: value})
        super().__setattr__(name, value)
        # Bumped by every assignment, so an event's cached serialisation knows it is stale.
        state = _private_state(self)
        state["_revision"] = state.get("_revision", 0) + 1

    @model_validator(mode="after")
    def _extras_are_json(self) -> EnrichmentProperties:
        extra = self.__pydantic_extra__
        if extra:
            for name, value in extra.items():
                try:
                    _check_text(name)
                except ValueError as exc:
                    raise ValueError(f"property name {name!r}: {exc}") from None
                check_json_compatible(value, name)
            if list(extra) != sorted(extra):
                # One order for extras whatever the source's, so equal content hashes equal.
                self.__pydantic_extra__ = dict(sorted(extra.items()))
        return self

    def to_json(self) -> bytes:
        """The properties object as compact UTF-8 JSON (the wire form, serialised in Rust)."""
        return self.__pydantic_serializer__.to_json(self)

    def to_wire(self) -> dict[str, Any]:
        """The properties object as sent: the 25 in the spec's order, then extras as given."""
        wire: dict[str, Any] = {name: getattr(self, name) for name in PROPERTY_NAMES}
        wire["enrichment_phone"] = list(self.enrichment_phone)
        wire.update(copy.deepcopy(self.__pydantic_extra__ or {}))
        return wire

    def is_blank(self) -> bool:
        """True when every property is empty: ``""``, ``[]`` or an empty extra."""
        return not any(self.__dict__.values()) and not any((self.__pydantic_extra__ or {}).values())

    @property
    def extra(self) -> dict[str, Any]:
        """The extra (non-``enrichment_*``-spec) properties."""
        return dict(self.__pydantic_extra__ or {})


def _identifier(value: Any, field: str) -> str:
    if value is None:
        raise ValueError("missing: the mapped value is None")
    if isinstance(value, bool):
        raise ValueError(f"expected a string id, got bool {value!r}")
    if isinstance(value, int | uuid.UUID):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a string id, got {_type_name(value)} {value!r:.80}")
    if not value.strip():
        raise ValueError(f"{field} must not be empty")
    return _check_text(value)


def _private_state(model: BaseModel) -> dict[str, Any]:
    """The instance's private dict, made on first use. Markers and caches live there without
    being declared as private attributes: pydantic initialises every declared one on every
    new instance (a Python call per model, per event), which the hot paths feel."""
    private: dict[str, Any] | None = model.__pydantic_private__
    if private is None:
        private = {}
        object.__setattr__(model, "__pydantic_private__", private)
    return private


def _same_key(cached: tuple[str, EnrichmentProperties, int], key: tuple[Any, ...]) -> bool:
    """The same group, the same properties *object* (held by the cache, so its id cannot be
    reused by a new one) at the same revision."""
    return cached[1] is key[1] and cached[2] == key[2] and cached[0] == key[0]


_WIRE_FORM_KEYS = frozenset(("event", "event_name", "type", "userId", "messageId"))


class UserEnrichedEvent(BaseModel):
    """One ``user_enriched`` event.

    ``timestamp`` is stored in UTC to the millisecond (the wire's precision, so an event
    survives a round trip through its wire form unchanged); a naive datetime is taken to be
    UTC. ``message_id`` defaults to an id derived from the user id, group id, properties and
    timestamp, so the same enrichment always gets the same id and a resend is deduplicated
    by Segment-compatible collectors.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    # Private state, in _private_state(): "_derived_id" (the derived message id, to tell it
    # from one the caller chose) and the serialisations computed once and reused
    # ("_content_hash", "_properties_json", "_timestamp_text", each keyed by what it
    # depends on).

    user_id: str = Field(description="The unique identifier of the user.")
    group_id: str = Field(description="The unique identifier of the user's account.")
    properties: EnrichmentProperties = Field(default_factory=EnrichmentProperties)
    timestamp: datetime = Field(
        default_factory=lambda: datetime.now(UTC),
        validate_default=True,
        description="When the enrichment happened (ISO-8601; naive means UTC).",
    )
    context: dict[str, Any] = Field(default_factory=dict)
    message_id: str = Field("", max_length=MESSAGE_ID_MAX_LENGTH)

    @model_validator(mode="before")
    @classmethod
    def _accept_wire_forms(cls, data: Any) -> Any:
        """Accept the spec's samples, the /track item and the Segment track message."""
        if not isinstance(data, Mapping):
            return data
        context = data.get("context")
        if data.keys().isdisjoint(_WIRE_FORM_KEYS) and not (
            isinstance(context, Mapping) and ("group_id" in context or "groupId" in context)
        ):
            return data  # already in this model's own form (what mappings build)
        data = dict(data)
        for key in ("event", "event_name"):
            if key in data and (name := data.pop(key)) != EVENT_NAME:
                raise ValueError(f"{key} is {name!r:.80}, but it must be {EVENT_NAME!r}")
        if data.get("type") == "track":
            data.pop("type")
        for segment_key, key in (("userId", "user_id"), ("messageId", "message_id")):
            if segment_key in data and key not in data:
                data[key] = data.pop(segment_key)
        context = data.get("context")
        if isinstance(context, Mapping):
            context = dict(context)
            for key in ("group_id", "groupId"):
                if key not in context:
                    continue
                nested = context.pop(key)
                top = data.setdefault("group_id", nested)
                if top != nested:
                    raise ValueError(
                        f"group_id is given twice with different values: {top!r} at the top "
                        f"and {nested!r} in context.{key}"
                    )
            data["context"] = context
        return data

    @field_validator("user_id", "group_id", mode="before")
    @classmethod
    def _ids(cls, value: Any, info: ValidationInfo) -> str:
        return _identifier(value, info.field_name or "id")

    @field_validator("message_id", mode="after")
    @classmethod
    def _message_id_text(cls, value: str) -> str:
        return _check_text(value) if value else value

    @field_validator("properties", mode="before")
    @classmethod
    def _properties(cls, value: Any) -> Any:
        if value is None:
            return {}
        return value

    @field_validator("timestamp", mode="before")
    @classmethod
    def _timestamp(cls, value: Any) -> Any:
        if isinstance(value, datetime):
            return value
        if isinstance(value, date):
            return datetime.combine(value, time(), tzinfo=UTC)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.strip())
            except ValueError:
                raise ValueError(
                    f"{value!r:.80} is not an ISO-8601 date-time (like 2023-11-02T00:30:08.276Z)"
                ) from None
        raise ValueError(
            f"expected an ISO-8601 string or a datetime, got {_type_name(value)} {value!r:.80}"
        )

    @field_validator("timestamp", mode="after")
    @classmethod
    def _timestamp_utc_ms(cls, value: datetime) -> datetime:
        value = as_utc(value)
        if value.microsecond % 1000:
            value = value.replace(microsecond=value.microsecond // 1000 * 1000)
        return value

    @field_validator("context", mode="after")
    @classmethod
    def _context_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            return {}
        check_json_compatible(value, "context")
        return copy.deepcopy(
            value
        )  # the event owns its context; later edits to the input don't leak in

    @model_validator(mode="after")
    def _derive_message_id(self) -> UserEnrichedEvent:
        if not self.message_id:
            derived = self.derive_message_id()
            # Straight into the field: BaseModel.__setattr__ costs more than deriving the id.
            self.__dict__["message_id"] = derived
            self.__pydantic_fields_set__.add("message_id")
            _private_state(self)["_derived_id"] = derived
        return self

    @property
    def has_default_message_id(self) -> bool:
        """True when ``message_id`` is the derived default, not one the caller chose."""
        private = _private_state(self)
        derived = private.get("_derived_id")
        if derived is None:  # built with an explicit id, or copied: compare the slow way
            return self.message_id == self.derive_message_id()
        return bool(self.message_id == derived)

    def __eq__(self, other: object) -> bool:
        # Equal fields make equal events; the serialisation caches must not count.
        if not isinstance(other, UserEnrichedEvent):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    def content_hash(self) -> str:
        """SHA-256 of what the enrichment says (group and properties), not of when it was sent.

        Two events with the same content hash for the same user carry the same information;
        the Django app's ledger uses this to send each change once.
        """
        key = self._cache_key()
        private = _private_state(self)
        cached: tuple[Any, str] | None = private.get("_content_hash")
        if cached is None or not _same_key(cached[0], key):
            content = _json_bytes(self.group_id) + b"\x1f" + self.properties_json()
            cached = private["_content_hash"] = (key, hashlib.sha256(content).hexdigest())
        return cached[1]

    def properties_json(self) -> bytes:
        """The properties as sent, serialised once and reused for the hash, store and wire."""
        key = self._cache_key()
        private = _private_state(self)
        cached: tuple[Any, bytes] | None = private.get("_properties_json")
        if cached is None or not _same_key(cached[0], key):
            cached = private["_properties_json"] = (key, self.properties.to_json())
        return cached[1]

    def _cache_key(self) -> tuple[str, EnrichmentProperties, int]:
        properties = self.properties
        # Read the private dict directly: pydantic's attribute path for it is slow.
        revision = (properties.__pydantic_private__ or {}).get("_revision", 0)
        return (self.group_id, properties, revision)

    def timestamp_text(self) -> str:
        """``timestamp`` in the wire's form, formatted once (the id and the wire both use it)."""
        private = _private_state(self)
        timestamp = self.timestamp
        cached: tuple[datetime, str] | None = private.get("_timestamp_text")
        if cached is None or cached[0] is not timestamp:
            cached = private["_timestamp_text"] = (timestamp, format_timestamp(timestamp))
        return cached[1]

    def to_thrivestack_json(self) -> bytes:
        """``to_thrivestack()`` as compact UTF-8 JSON, without building the dict first."""
        if self.context:
            context = _json_bytes({"group_id": self.group_id, **self.context})
        else:
            context = b'{"group_id":' + _json_bytes(self.group_id) + b"}"
        return b"".join(
            (
                b'{"user_id":',
                _json_bytes(self.user_id),
                b',"event_name":"user_enriched","properties":',
                self.properties_json(),
                b',"context":',
                context,
                b',"timestamp":"',
                self.timestamp_text().encode("ascii"),
                b'"}',
            )
        )

    def to_json(self) -> bytes:
        """The whole event as compact UTF-8 JSON; ``model_validate_json`` reads it back."""
        return b"".join(
            (
                b'{"user_id":',
                _json_bytes(self.user_id),
                b',"group_id":',
                _json_bytes(self.group_id),
                b',"properties":',
                self.properties_json(),
                b',"timestamp":"',
                self.timestamp_text().encode("ascii"),
                b'","context":',
                _json_bytes(self.context),
                b',"message_id":',
                _json_bytes(self.message_id),
                b"}",
            )
        )

    def derive_message_id(self) -> str:
        """The stable default id: same user, content and time give the same id."""
        key = f"{self.user_id}\x1f{self.content_hash()}\x1f{self.timestamp_text()}"
        digest = bytearray(hashlib.sha256(_NAMESPACE_BYTES + key.encode("utf-8")).digest()[:16])
        # Shaped as an RFC 9562 name-based (version 5) UUID, from SHA-256 rather than SHA-1.
        digest[6] = (digest[6] & 0x0F) | 0x50
        digest[8] = (digest[8] & 0x3F) | 0x80
        h = digest.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def to_thrivestack(self) -> dict[str, Any]:
        """The ThriveStack ``/track`` item (the request body is an array of these)."""
        return {
            "user_id": self.user_id,
            "event_name": EVENT_NAME,
            "properties": self.properties.to_wire(),
            "context": {"group_id": self.group_id, **copy.deepcopy(self.context)},
            "timestamp": self.timestamp_text(),
        }

    def to_segment(self) -> dict[str, Any]:
        """The Segment track message; ``groupId`` goes in ``context`` as Segment documents."""
        return {
            "type": "track",
            "userId": self.user_id,
            "event": EVENT_NAME,
            "properties": self.properties.to_wire(),
            "context": {**copy.deepcopy(self.context), "groupId": self.group_id},
            "timestamp": self.timestamp_text(),
            "messageId": self.message_id,
        }
