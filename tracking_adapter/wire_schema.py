"""JSON Schema of a ``user_enriched`` event as it travels on the wire.

The pydantic model's own schema describes its Python fields; this one describes the JSON a
user writes or receives (either spelling of the event name, ``group_id`` at the top or in
``context``), which is what ``python -m tracking_adapter schema`` prints.
"""

from __future__ import annotations

from typing import Any

from tracking_adapter.schema import EVENT_NAME, MESSAGE_ID_MAX_LENGTH, EnrichmentProperties

_NON_EMPTY_ID = {"type": "string", "minLength": 1}


def event_json_schema() -> dict[str, Any]:
    properties_schema = EnrichmentProperties.model_json_schema()
    properties_schema["title"] = "user_enriched properties"
    # null is accepted on input (it becomes the default), so say so.
    for name, field_schema in properties_schema["properties"].items():
        field_schema["type"] = [field_schema["type"], "null"]
        if name == "enrichment_phone":
            field_schema["items"] = {"type": "string"}
    properties_schema["additionalProperties"] = True
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://tracking-adapter.invalid/schemas/user_enriched.json",
        "title": "user_enriched",
        "description": (
            "ThriveStack's user_enriched event. The event name may be spelled 'event' (the "
            "spec's samples) or 'event_name' (the /track API); group_id may sit at the top "
            "or inside context."
        ),
        "type": "object",
        "properties": {
            "event": {"const": EVENT_NAME},
            "event_name": {"const": EVENT_NAME},
            "user_id": _NON_EMPTY_ID,
            "group_id": _NON_EMPTY_ID,
            "properties": properties_schema,
            "context": {
                "type": "object",
                "properties": {"group_id": _NON_EMPTY_ID},
                "additionalProperties": True,
            },
            "timestamp": {"type": "string", "format": "date-time"},
            "message_id": {"type": "string", "minLength": 1, "maxLength": MESSAGE_ID_MAX_LENGTH},
        },
        "required": ["user_id", "properties"],
        "anyOf": [
            {"required": ["group_id"]},
            {"required": ["context"], "properties": {"context": {"required": ["group_id"]}}},
        ],
        "additionalProperties": False,
    }
