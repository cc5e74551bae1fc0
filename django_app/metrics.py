"""Prometheus metrics of delivery (``pip install 'tracking-adapter[prometheus]'``).

The gauges are computed from the database at scrape time by ``delivery_status()`` (the
figures of ``manage.py tracking_status`` and the admin): nothing is counted in a process,
so any number of web and worker processes report one truth, whichever one is scraped,
and a restart loses nothing. Serve them with ``metrics_view``::

    # urls.py
    from django_app.metrics import metrics_view

    urlpatterns = [path("metrics/tracking/", metrics_view)]

or add the collector to prometheus_client's default registry (what django-prometheus's
``/metrics`` and ``prometheus_client.start_http_server`` export), once per process::

    # your AppConfig.ready()
    from django_app.metrics import register

    register()

(In prometheus_client's multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``, the default
registry is not what is exported: route ``metrics_view`` as a target of its own.)

Metric labels are the event kind and the sink of the rows' last attempt (``describe()``
of the sink, ``thrivestack https://host/path``), with configured secrets redacted and any
credentials or query string of a URL removed: never a key, never an event's content.

Importing this module needs prometheus-client; ``django_app`` itself never imports it.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections import defaultdict
from collections.abc import Iterable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_safe

try:
    import prometheus_client
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import choose_encoder
    from prometheus_client.metrics_core import GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "django_app.metrics needs prometheus-client: pip install 'tracking-adapter[prometheus]'"
    ) from error

from django_app.runtime import secrets
from django_app.status import DeliveryStatus, closed_after, delivery_status
from tracking_adapter.security import redact

logger = logging.getLogger("django_app")

PREFIX = "tracking_adapter"
LABELS = ("event", "sink")

# (name, DeliveryStatus.streams attribute, help): one series per event kind and sink.
STREAM_GAUGES = (
    ("events_pending", "pending", "Events waiting for delivery."),
    ("events_due", "due", "Pending events whose next attempt is due now."),
    (
        "events_dead",
        "dead",
        "Events that will not be retried (out of retries, or refused as invalid): they "
        "need a fix and a requeue.",
    ),
    (
        "events_delivered_last_hour",
        "delivered_last_hour",
        "Events delivered in the last hour.",
    ),
    (
        "events_delivered_last_day",
        "delivered_last_day",
        "Events delivered in the last 24 hours.",
    ),
)
# (name, help): one series each; and ``up``, 1 when the database could be read.
TOTAL_GAUGES = (
    (
        "oldest_pending_seconds",
        "Age of the oldest pending event in seconds (0 when none is pending).",
    ),
    ("ledger_subjects", "Subjects the ledger holds (everything ever recorded)."),
)

_URL_CREDENTIALS = re.compile(r"(?<=://)[^/?#@\s]*@")
_URL_QUERY = re.compile(r"[?#]\S*")


def sink_label(sink: str, hidden: Iterable[str]) -> str:
    """The ``sink`` label: secrets redacted, a URL's user:password@ and ?query dropped."""
    text = redact(sink, hidden)
    return _URL_QUERY.sub("", _URL_CREDENTIALS.sub("", text))


class TrackingCollector(Collector):
    """A custom collector: every ``collect()`` (each scrape) reads ``delivery_status()``.

    ``using`` is the database alias of the outbox (default: where the router writes it).
    """

    def __init__(self, using: str | None = None) -> None:
        self.using = using

    def describe(self) -> Iterable[Metric]:
        """The metrics' names without touching the database, so registering the collector
        (at startup, before the database may be reachable) runs no query."""
        return [*self._families(None), _up(None)]

    def collect(self) -> Iterable[Metric]:
        try:
            with closed_after(self.using):
                status = delivery_status(self.using)
        except Exception:
            # One failing collector must not fail the whole scrape of a shared registry.
            logger.exception("Tracking metrics: cannot read the state of delivery")
            return [*self._families(None), _up(0)]
        return [*self._families(status), _up(1)]

    def _families(self, status: DeliveryStatus | None) -> list[GaugeMetricFamily]:
        """Every family but ``up``, with samples if ``status`` is given."""
        streams = [
            GaugeMetricFamily(f"{PREFIX}_{name}", text, labels=LABELS)
            for name, _attribute, text in STREAM_GAUGES
        ]
        oldest, ledger = (
            GaugeMetricFamily(f"{PREFIX}_{name}", text) for name, text in TOTAL_GAUGES
        )
        if status is not None:
            hidden = secrets()
            # Labels made safe may coincide (two URLs differing in their query): add them
            # up rather than export the same series twice.
            values: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * len(streams))
            for stream in status.streams:
                labels = (redact(stream.event, hidden), sink_label(stream.sink, hidden))
                for index, (_name, attribute, _text) in enumerate(STREAM_GAUGES):
                    values[labels][index] += getattr(stream, attribute)
            for labels, numbers in sorted(values.items()):
                for family, number in zip(streams, numbers, strict=True):
                    family.add_metric(list(labels), number)
            oldest.add_metric([], status.oldest_pending_seconds or 0.0)
            ledger.add_metric([], status.ledger_size)
        return [*streams, oldest, ledger]


def _up(value: int | None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        f"{PREFIX}_up",
        "1 if the state of delivery could be read from the database at this scrape, else 0.",
    )
    if value is not None:
        family.add_metric([], value)
    return family


_lock = threading.Lock()
_registered: weakref.WeakKeyDictionary[CollectorRegistry, TrackingCollector] = (
    weakref.WeakKeyDictionary()
)


def register(registry: CollectorRegistry | None = None) -> TrackingCollector:
    """Add a ``TrackingCollector`` to ``registry`` (default: prometheus_client's
    ``REGISTRY``) once; calling it again returns the collector already there."""
    registry = registry if registry is not None else prometheus_client.REGISTRY
    with _lock:
        collector = _registered.get(registry)
        if collector is None:
            collector = _registered[registry] = TrackingCollector()
            registry.register(collector)
        return collector


def unregister(registry: CollectorRegistry | None = None) -> None:
    """Take back what ``register(registry)`` added, if anything."""
    registry = registry if registry is not None else prometheus_client.REGISTRY
    with _lock:
        collector = _registered.pop(registry, None)
        if collector is not None:
            registry.unregister(collector)


# What ``metrics_view`` serves: the tracking gauges alone.
tracking_registry = CollectorRegistry(auto_describe=False)
register(tracking_registry)


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The tracking gauges in Prometheus' text format (OpenMetrics if the scraper asks).

    Route it where your scraper reaches it; it shows counts, not content, but it is no
    public page."""
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    response = HttpResponse(encoder(tracking_registry), content_type=content_type)
    add_never_cache_headers(response)
    return response
