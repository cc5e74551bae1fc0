"""JSON Schema of an enrichment event as it travels on the wire, derived from its model.

The pydantic model's own schema describes its Python fields; this one describes the JSON a
user writes or receives (either spelling of the event name, the Segment spellings,
``group_id`` at the top or in ``context``), which is what ``python -m tracking_adapter
schema [--event NAME]`` prints. Nothing in it is written twice: each property's schema is
the ``WireSchema`` its kind carries beside its validator, the rules for text, ids and
timestamps are ``schema.py``'s patterns, and descriptions and defaults are the fields'.
The schema accepts exactly what the model accepts, but for the two rules the ``$comment``
names, which JSON Schema cannot state (tests/core/test_wire_schema.py checks this).
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic.fields import FieldInfo

from tracking_adapter.schema import (
    ID_PATTERN,
    MAX_NESTING,
    MESSAGE_ID_MAX_LENGTH,
    TEXT_PATTERN,
    TIMESTAMP_EXAMPLE,
    TIMESTAMP_PATTERN,
    EnrichedEvent,
    UserEnrichedEvent,
    WireSchema,
    event_type,
)

_JSON_VALUE_REF = {"$ref": "#/$defs/json_value"}
_TEXT_KEYS = {"pattern": TEXT_PATTERN}

# Any JSON value the model can keep and send on: strings and keys without NUL or lone
# surrogates (its _check_text), numbers finite (JSON has no others). Each keyword applies
# only to its own type, so this is null | boolean | number | string | array | object.
_JSON_VALUE: dict[str, Any] = {
    "description": (
        "Any JSON value whose strings and object keys hold no NUL character and no lone surrogate."
    ),
    "type": ["null", "boolean", "number", "string", "array", "object"],
    "pattern": TEXT_PATTERN,
    "items": _JSON_VALUE_REF,
    "propertyNames": _TEXT_KEYS,
    "additionalProperties": _JSON_VALUE_REF,
}

_ID: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": ID_PATTERN},
        {"type": "integer"},  # sent as its decimal string; 12.0 is the integer 12
    ]
}

_COMMENT = (
    "Two rules the model enforces that JSON Schema cannot state, so this schema accepts "
    f"what the model refuses: values nested more than {MAX_NESTING} levels deep (in "
    "context, in the properties or in their values), and a date-time whose UTC instant "
    "falls outside the years 1-9999 (like 0001-01-01T00:00:00+01:00). Apart from these, "
    "a document satisfies this schema exactly when the model accepts it. The patterns "
    "mean the same in ECMA-262 and Python; match them against code points (the 'u' flag)."
)


def _field_schema(field: FieldInfo, name: str) -> dict[str, Any]:
    wire = [item for item in field.metadata if isinstance(item, WireSchema)]
    if len(wire) != 1:
        raise TypeError(
            f"property {name!r} has no WireSchema: declare it with one of the property kinds"
        )
    schema: dict[str, Any] = {}
    if field.description:
        schema["description"] = field.description
    schema.update(copy.deepcopy(wire[0].schema))
    schema["default"] = field.get_default(call_default_factory=True)
    return schema


def _described(description: str | None, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, **copy.deepcopy(schema)} if description else schema


def event_json_schema(
    event_class: type[EnrichedEvent] | str = UserEnrichedEvent,
) -> dict[str, Any]:
    """The wire JSON Schema (draft 2020-12) of ``event_class`` (a class, or an event name
    in ``EVENT_TYPES``); a new dict each call."""
    if isinstance(event_class, str):
        event_class = event_type(event_class)
    name = event_class.EVENT_NAME
    fields = event_class.model_fields
    properties_model = event_class.PROPERTIES_MODEL
    properties_schema: dict[str, Any] = {
        "title": f"{name} properties",
        "description": (
            "The spec's properties (missing or null: the default) and any extra ones, kept "
            "as given. A missing or null properties object has none."
        ),
        "type": ["object", "null"],
        "properties": {
            field_name: _field_schema(field, field_name)
            for field_name, field in properties_model.model_fields.items()
        },
        "propertyNames": _TEXT_KEYS,
        "additionalProperties": _JSON_VALUE_REF,
    }
    user_id = _described(fields["user_id"].description, _ID)
    group_id = _described(fields["group_id"].description, _ID)
    message_id = {
        "description": (
            "The message id (Segment's messageId); missing or empty: one derived from the "
            "subject, the content and the timestamp."
        ),
        "type": "string",
        "maxLength": MESSAGE_ID_MAX_LENGTH,
        "pattern": TEXT_PATTERN,
    }
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://tracking-adapter.invalid/schemas/{name}.json",
        "title": name,
        "description": (
            f"ThriveStack's {name} event as JSON, in any of the spellings the adapter "
            f"accepts: the spec's samples ('event', context.group_id), the /track item "
            f"('event_name', context.group_id), the Segment track message ('type': 'track', "
            f"'event', 'userId', 'messageId', context.groupId) or flat (group_id at the "
            f"top), mixed freely. The event name, when given, is {name!r}; user_id and "
            f"group_id are each given once (group_id in exactly one of the three places), "
            f"as a non-blank string or an integer. The timestamp is an RFC 3339 date-time "
            f"with a time zone (like {TIMESTAMP_EXAMPLE}; 'T' and 'Z' in either case); "
            f"missing, it is the time of reading."
        ),
        "$comment": _COMMENT,
        "type": "object",
        "properties": {
            "event": {"const": name},
            "event_name": {"const": name},
            "type": {"const": "track"},
            "user_id": user_id,
            "userId": copy.deepcopy(user_id),
            "group_id": group_id,
            "properties": properties_schema,
            "timestamp": {
                "description": fields["timestamp"].description,
                "type": "string",
                "format": "date-time",
                "pattern": TIMESTAMP_PATTERN,
            },
            "context": {
                "description": "Anything else about the event; may hold the group id.",
                "type": "object",
                "properties": {
                    "group_id": copy.deepcopy(group_id),
                    "groupId": copy.deepcopy(group_id),
                },
                "propertyNames": _TEXT_KEYS,
                "additionalProperties": _JSON_VALUE_REF,
            },
            "message_id": message_id,
            "messageId": copy.deepcopy(message_id),
        },
        "allOf": [
            {"oneOf": [{"required": ["user_id"]}, {"required": ["userId"]}]},
            {
                "oneOf": [
                    {"required": ["group_id"]},
                    {
                        "required": ["context"],
                        "properties": {"context": {"required": ["group_id"]}},
                    },
                    {"required": ["context"], "properties": {"context": {"required": ["groupId"]}}},
                ]
            },
            {"not": {"required": ["message_id", "messageId"]}},
        ],
        "additionalProperties": False,
        "$defs": {"json_value": _JSON_VALUE},
    }
    return copy.deepcopy(schema)  # nothing shared with the module's constants
