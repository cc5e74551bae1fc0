"""tracking-adapter: ThriveStack's ``user_enriched`` and ``group_enriched`` events, their
mapping, and their sinks.

This package is framework-agnostic (no Django import anywhere in it); the Django app lives in
``django_app``.
"""

from tracking_adapter.errors import (
    ConfigurationError,
    EventValidationError,
    MappingError,
    TrackingAdapterError,
)
from tracking_adapter.mapping import EventMapping, PropertyMap, resolve_path
from tracking_adapter.schema import (
    EVENT_NAME,
    EVENT_TYPES,
    GROUP_EVENT_NAME,
    GROUP_PROPERTY_NAMES,
    PROPERTY_NAMES,
    EnrichedEvent,
    EnrichmentProperties,
    GroupEnrichedEvent,
    GroupEnrichmentProperties,
    UserEnrichedEvent,
    event_type,
    format_timestamp,
)

__version__ = "0.1.0"

__all__ = [
    "EVENT_NAME",
    "EVENT_TYPES",
    "GROUP_EVENT_NAME",
    "GROUP_PROPERTY_NAMES",
    "PROPERTY_NAMES",
    "ConfigurationError",
    "EnrichedEvent",
    "EnrichmentProperties",
    "EventMapping",
    "EventValidationError",
    "GroupEnrichedEvent",
    "GroupEnrichmentProperties",
    "MappingError",
    "PropertyMap",
    "TrackingAdapterError",
    "UserEnrichedEvent",
    "__version__",
    "event_type",
    "format_timestamp",
    "resolve_path",
]
