"""One root for every error the package raises, so callers can catch ours and nothing else.

Leaves also subclass the built-in a caller would already catch (``ValueError`` for bad input
or settings), the way django-anymail's errors do.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import ValidationError


class TrackingAdapterError(Exception):
    """Base class of every error raised by tracking_adapter."""


class ConfigurationError(TrackingAdapterError, ValueError):
    """A setting or constructor option is wrong; the message names it and how to fix it."""


class MappingError(TrackingAdapterError, ValueError):
    """An attribute path in a property map cannot be resolved on the object it is applied to."""


class EventValidationError(TrackingAdapterError, ValueError):
    """Data could not become a valid user_enriched event.

    ``problems`` holds one ``(field path, message)`` pair per invalid field, so a caller can
    record or display each one; ``str()`` lists them all.
    """

    def __init__(self, problems: Iterable[tuple[str, str]], *, context: str = "") -> None:
        self.problems = list(problems)
        lines = [f"{path}: {message}" for path, message in self.problems]
        prefix = f"{context}: " if context else ""
        super().__init__(prefix + "; ".join(lines))

    @classmethod
    def from_pydantic(cls, exc: ValidationError, *, context: str = "") -> EventValidationError:
        return cls(describe_validation_error(exc), context=context)


def format_location(loc: Iterable[int | str]) -> str:
    """Turn pydantic's ``("properties", "enrichment_phone", 0)`` into ``properties.enrichment_phone[0]``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(event)"


def describe_validation_error(exc: ValidationError) -> list[tuple[str, str]]:
    """One ``(field path, message)`` per error, in a form a person can act on."""
    problems = []
    for error in exc.errors(include_url=False):
        message = error["msg"]
        # pydantic prefixes errors raised from our validators with "Value error, ".
        message = message.removeprefix("Value error, ")
        problems.append((format_location(error["loc"]), message))
    return problems
