"""Sinks deliver events: ThriveStack ``/track``, Segment-compatible, console, file, memory, yours.

Choose one by alias or by the dotted path of your own ``Sink`` subclass::

    sink = create_sink("thrivestack", {"api_key": "..."})
    sink = create_sink("myapp.tracking.WarehouseSink", {"table": "events"})
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from tracking_adapter.errors import ConfigurationError
from tracking_adapter.sinks.base import Outcome, SendResult, Sink, Status
from tracking_adapter.sinks.local import ConsoleSink, FileSink, MemorySink
from tracking_adapter.sinks.segment import SegmentSink
from tracking_adapter.sinks.thrivestack import ThriveStackSink

SINK_ALIASES: dict[str, str] = {
    "thrivestack": "tracking_adapter.sinks.thrivestack.ThriveStackSink",
    "segment": "tracking_adapter.sinks.segment.SegmentSink",
    "console": "tracking_adapter.sinks.local.ConsoleSink",
    "file": "tracking_adapter.sinks.local.FileSink",
    "memory": "tracking_adapter.sinks.local.MemorySink",
}


def sink_class(spec: str | type[Sink], *, setting: str = "SINK") -> type[Sink]:
    """The Sink class named by an alias or a dotted path; errors name the setting and choices."""
    if inspect.isclass(spec) and issubclass(spec, Sink):
        return spec
    choices = ", ".join(f"'{alias}'" for alias in SINK_ALIASES)
    if not isinstance(spec, str) or not spec:
        raise ConfigurationError(
            f"{setting} must be one of {choices} or a dotted path to a Sink class, got {spec!r}"
        )
    path = SINK_ALIASES.get(spec, spec)
    module_name, _, attribute = path.rpartition(".")
    if not module_name or module_name.startswith("."):
        raise ConfigurationError(
            f"{setting}: unknown sink {spec!r}; choose one of {choices} "
            "or give a dotted path like 'myapp.sinks.MySink'"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or an error raised while importing the module
        raise ConfigurationError(
            f"{setting}: cannot import module {module_name!r} for sink {spec!r} "
            f"({type(exc).__name__}: {exc}); choose one of {choices} or fix the dotted path"
        ) from None
    found = getattr(module, attribute, None)
    if not (inspect.isclass(found) and issubclass(found, Sink)):
        what = "does not exist" if found is None else "is not a Sink subclass"
        raise ConfigurationError(
            f"{setting}: {path!r} {what}; a sink must subclass {Sink.__module__}.Sink"
        )
    return found


def create_sink(
    spec: str | type[Sink],
    options: Mapping[str, Any] | None = None,
    *,
    setting: str = "SINK",
    options_setting: str = "SINK_OPTIONS",
) -> Sink:
    """Instantiate a sink; a wrong or missing option is an error naming the setting."""
    cls = sink_class(spec, setting=setting)
    options = dict(options or {})
    parameters = inspect.signature(cls).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    unknown = [name for name in options if name not in parameters]
    if unknown and not takes_any:
        close = difflib.get_close_matches(unknown[0], list(parameters), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigurationError(
            f"{options_setting} for {cls.__name__}: unknown option {unknown[0]!r}{hint}; "
            f"it takes {', '.join(parameters) or 'no options'}"
        )
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as exc:
        raise ConfigurationError(f"{options_setting} for {cls.__name__}: {exc}") from None
    try:
        return cls(**options)
    except ConfigurationError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{options_setting} for {cls.__name__}: {exc}") from None


__all__ = [
    "SINK_ALIASES",
    "ConsoleSink",
    "FileSink",
    "MemorySink",
    "Outcome",
    "SegmentSink",
    "SendResult",
    "Sink",
    "Status",
    "ThriveStackSink",
    "create_sink",
    "sink_class",
]
