"""tracking-adapter: ThriveStack's ``user_enriched`` event, its mapping, and its sinks.

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
    PROPERTY_NAMES,
    EnrichmentProperties,
    UserEnrichedEvent,
    format_timestamp,
)

__version__ = "0.1.0"

__all__ = [
    "EVENT_NAME",
    "PROPERTY_NAMES",
    "ConfigurationError",
    "EnrichmentProperties",
    "EventMapping",
    "EventValidationError",
    "MappingError",
    "PropertyMap",
    "TrackingAdapterError",
    "UserEnrichedEvent",
    "__version__",
    "format_timestamp",
    "resolve_path",
]
