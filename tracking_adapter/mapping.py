"""From profile data to an event: attribute paths, property maps, and the event mapping.

Works on any object or dict: Django model instances, dataclasses, provider JSON payloads.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MethodType
from typing import Any

from pydantic import ValidationError

from tracking_adapter.errors import EventValidationError, MappingError
from tracking_adapter.schema import (
    EnrichedEvent,
    EnrichmentProperties,
    PropertiesBase,
    UserEnrichedEvent,
)

Extractor = Callable[[Any], Any]
"""A callable escape hatch: takes the source object, returns the value."""

PathOrCallable = str | Extractor


_INDEX = re.compile(r"-?[0-9]+")


def resolve_path(obj: Any, path: str) -> Any:
    """Follow ``path`` (``"account.external_id"``, ``"phone_numbers.0.number"``) from ``obj``.

    Each dotted part is a mapping key, a sequence index, or an attribute (which also
    follows ORM relations). Data is allowed to be sparse and schemas are not:

    - ``None`` anywhere along the way, a missing mapping key, an index past the end, or an
      attribute whose descriptor raises ``AttributeError`` (an unset one-to-one relation)
      all give ``None``;
    - an attribute that the object's class does not have at all raises ``MappingError``
      naming the path, because that is a typo in the map, not missing data.

    A bound method found along the way is called without arguments (``get_full_name``).
    """
    return _walk(obj, _checked_parts(path), path)


def path_reader(path: str) -> Extractor:
    """``resolve_path(obj, path)`` as a callable of ``obj``, the path checked and split
    once: a property map reads every one of its paths on every tracked save."""
    parts = _checked_parts(path)

    def read(obj: Any) -> Any:
        return _walk(obj, parts, path)

    return read


def _walk(obj: Any, parts: tuple[str, ...], path: str) -> Any:
    current = obj
    for position, part in enumerate(parts):
        if current is None:
            return None
        cls = type(current)
        kind = _KINDS.get(cls) or _kind(cls)
        if kind is _OBJECT:
            current = _attribute(current, part, path)
        elif kind is _MAPPING:
            current = current.get(part)
        else:
            if not _INDEX.fullmatch(part):
                walked = ".".join(parts[:position])
                raise MappingError(
                    f"attribute path {path!r}: {walked or 'the object'} is a "
                    f"list, so {part!r} must be an index"
                )
            index = int(part)
            current = current[index] if -len(current) <= index < len(current) else None
        if type(current) is MethodType and _callable_without_arguments(current):
            current = current()
    return current


def _checked_parts(path: Any) -> tuple[str, ...]:
    if not isinstance(path, str):
        raise MappingError(f"attribute path {path!r} is not a dotted path like 'account.name'")
    return _path_parts(path)


@functools.lru_cache(maxsize=1024)
def _path_parts(path: str) -> tuple[str, ...]:
    """The parts of a valid path (paths come from settings: few, and read on every save)."""
    if not path or any(not part for part in path.split(".")):
        raise MappingError(f"attribute path {path!r} is not a dotted path like 'account.name'")
    return tuple(path.split("."))


_OBJECT, _MAPPING, _SEQUENCE = "object", "mapping", "sequence"


_KINDS: dict[type, str] = {}


def _kind(cls: type) -> str:
    """How a path steps into an instance of ``cls``; worked out once per class, since
    ``isinstance`` against the collection ABCs is slow for the model instances that
    most paths walk."""
    kind = _KINDS.get(cls)
    if kind is None:
        if issubclass(cls, Mapping):
            kind = _MAPPING
        elif issubclass(cls, Sequence) and not issubclass(cls, str | bytes):
            kind = _SEQUENCE
        else:
            kind = _OBJECT
        _KINDS[cls] = kind
    return kind


def _attribute(obj: Any, name: str, path: str) -> Any:
    try:
        return getattr(obj, name)
    except AttributeError:
        if hasattr(type(obj), name):
            # The class has it (a property or relation descriptor) but this instance has no
            # value, e.g. Django's RelatedObjectDoesNotExist for an unset reverse one-to-one.
            return None
        raise MappingError(
            f"attribute path {path!r}: {type(obj).__name__} has no attribute {name!r}"
        ) from None


def _callable_without_arguments(method: Callable[..., Any]) -> bool:
    try:
        signature = inspect.signature(method)
    except (TypeError, ValueError):
        return False
    return all(
        parameter.default is not inspect.Parameter.empty
        or parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        for parameter in signature.parameters.values()
    )


def extract(obj: Any, source: PathOrCallable) -> Any:
    """The value of one path or callable on ``obj``."""
    if callable(source):
        return source(obj)
    return resolve_path(obj, source)


class PropertyMap:
    """A declarative map from property names to attribute paths (or callables).

    >>> PropertyMap({"enrichment_city": "city", "enrichment_employment_name": "company.name"})

    Keys are the event's property names (the 25 ``enrichment_*`` ones or extra properties);
    values are dotted attribute paths or callables taking the source object.
    """

    def __init__(self, fields: Mapping[str, Any]) -> None:
        problems = []
        for name, source in fields.items():
            if not isinstance(name, str) or not name:
                problems.append(f"property name {name!r} is not a non-empty string")
            elif not (isinstance(source, str) or callable(source)):
                problems.append(
                    f"{name}: expected an attribute path or a callable, got {type(source).__name__}"
                )
        if problems:
            raise MappingError("invalid property map: " + "; ".join(problems))
        self.fields: dict[str, PathOrCallable] = dict(fields)
        self._readers = [
            (name, source if callable(source) else path_reader(source))
            for name, source in self.fields.items()
        ]

    def values(self, obj: Any) -> dict[str, Any]:
        """The raw values, unvalidated, keyed by property name."""
        return {name: read(obj) for name, read in self._readers}

    def __call__(self, obj: Any) -> dict[str, Any]:
        return self.values(obj)

    def __repr__(self) -> str:
        return f"PropertyMap({self.fields!r})"


PropertiesSource = Callable[[Any], "Mapping[str, Any] | PropertiesBase"]


@dataclass(frozen=True)
class EventMapping:
    """How to build an event (``event_class``: ``UserEnrichedEvent`` unless told) from one
    source object.

    ``properties`` is a ``PropertyMap`` or any callable returning a mapping or the event's
    properties model (a provider preset bound to the payload's path, or your own).
    ``timestamp`` is where the enrichment time lives; without it the event is stamped
    with the time it is built.
    """

    user_id: PathOrCallable
    group_id: PathOrCallable
    properties: PropertiesSource
    timestamp: PathOrCallable | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    event_class: type[EnrichedEvent] = UserEnrichedEvent

    def properties_of(self, obj: Any) -> PropertiesBase:
        """The validated properties of ``obj``; raises EventValidationError naming fields."""
        return _validated_properties(self.properties(obj), self.event_class.PROPERTIES_MODEL)

    def build(
        self,
        obj: Any,
        *,
        properties: Mapping[str, Any] | PropertiesBase | None = None,
        timestamp: datetime | None = None,
    ) -> EnrichedEvent:
        """Build and validate the event for ``obj``.

        ``properties``/``timestamp`` override what the mapping would read. Raises
        ``EventValidationError`` listing every invalid field (with its path) at once, and
        ``MappingError`` when a path in the mapping does not exist on ``obj``.
        """
        raw_properties = self.properties(obj) if properties is None else properties
        if timestamp is None and self.timestamp is not None:
            timestamp = extract(obj, self.timestamp)
        data: dict[str, Any] = {
            "user_id": extract(obj, self.user_id),
            "group_id": extract(obj, self.group_id),
            "properties": _as_dict(raw_properties),
            "context": dict(self.context),
        }
        if timestamp is not None:
            data["timestamp"] = timestamp
        try:
            return self.event_class.model_validate(data)
        except ValidationError as exc:
            raise EventValidationError.from_pydantic(exc) from None


def _as_dict(properties: Mapping[str, Any] | PropertiesBase) -> Any:
    if isinstance(properties, PropertiesBase):
        return properties.to_wire()
    return properties


def _validated_properties(
    properties: Mapping[str, Any] | PropertiesBase,
    model: type[PropertiesBase] = EnrichmentProperties,
) -> PropertiesBase:
    if isinstance(properties, model):
        return properties
    if isinstance(properties, PropertiesBase):
        properties = properties.to_wire()  # another kind's: its values, judged by this one's
    try:
        return model.model_validate(properties)
    except ValidationError as exc:
        raise EventValidationError.from_pydantic(exc, context="properties") from None
