"""A check of delivery for django-health-check 4.x (``pip install 'tracking-adapter[health]'``).

django-health-check 4 has no plugin registry: a check is named in the ``checks`` of the
view that runs it, options in a tuple::

    # settings.py
    INSTALLED_APPS = [..., "health_check", "django_app"]

    # urls.py
    from datetime import timedelta

    from health_check.views import HealthCheckView

    urlpatterns = [
        path(
            "health/tracking/",
            HealthCheckView.as_view(
                checks=[
                    (
                        "django_app.health.TrackingDelivery",
                        {"max_lag": timedelta(minutes=15), "max_dead": 0},
                    ),
                ]
            ),
        ),
    ]

The check reads ``delivery_status()``, the same figures as ``manage.py tracking_status``,
the admin and the Prometheus metrics, from the database, so every process answers the
same. It reports counts and ages only: never an event's content, never an error's text
(which may quote a collector's answer), never a key.

django-health-check 4 answers 500 for any error, a warning included: ``ServiceWarning``
("Warning: ...") and ``ServiceUnavailable`` ("Unavailable: ...") differ in their message
only. Give this check a URL of its own, not the one a load balancer or a liveness probe
uses: a stuck worker or a dead event is a reason to alert someone, not to take the web
servers out of service.

Importing this module needs django-health-check; ``django_app`` itself never imports it.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from django.db import DatabaseError
from django.utils.connection import ConnectionDoesNotExist

try:
    from health_check.base import HealthCheck
    from health_check.exceptions import ServiceUnavailable, ServiceWarning
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "django_app.health needs django-health-check 4.x: pip install 'tracking-adapter[health]'"
    ) from error

from django_app.models import Status
from django_app.status import DeliveryStatus, closed_after, delivery_status

DEFAULT_MAX_LAG = timedelta(seconds=900)
DEFAULT_MAX_DEAD = 0


@dataclasses.dataclass
class TrackingDelivery(HealthCheck):
    """Is the outbox draining?

    Unavailable when the oldest pending event has waited longer than ``max_lag`` (no
    worker runs, or the collector has refused events for that long); a warning when more
    than ``max_dead`` events are dead (they need a fix and a requeue from the admin).
    ``max_lag=None`` or ``max_dead=None`` turns that half off.

    Args:
        alias: The database alias of the outbox (default: where the router writes it).
        max_lag: The longest an event may wait for delivery.
        max_dead: How many dead events are tolerated.
        timeout: The budget of the check (django-health-check's own option).
    """

    alias: str | None = None
    max_lag: timedelta | None = dataclasses.field(default=DEFAULT_MAX_LAG, repr=False)
    max_dead: int | None = dataclasses.field(default=DEFAULT_MAX_DEAD, repr=False)
    timeout: timedelta = dataclasses.field(default=timedelta(seconds=10), repr=False)

    def run(self) -> None:
        try:
            with closed_after(self.alias):
                status = delivery_status(self.alias)
        except ConnectionDoesNotExist as error:
            raise ServiceUnavailable("Database alias does not exist") from error
        except DatabaseError as error:
            # The class only: a driver's message may quote values.
            raise ServiceUnavailable(f"Cannot read the outbox ({type(error).__name__})") from error
        lag, dead = self.lag_problem(status), self.dead_problem(status)
        if lag:
            raise ServiceUnavailable("; ".join(filter(None, (lag, dead))))
        if dead:
            raise ServiceWarning(dead)

    def lag_problem(self, status: DeliveryStatus) -> str | None:
        """Why delivery lags, in words built from counts, ages and fixed advice; or None."""
        oldest = status.oldest_pending_seconds
        if self.max_lag is None or oldest is None or oldest <= self.max_lag.total_seconds():
            return None
        return (
            f"the oldest pending event has waited {oldest:.0f} s, over the "
            f"{self.max_lag.total_seconds():g} s allowed ({status.pending} pending, "
            f"{status.due} due): is delivery running (manage.py deliver_events, or the "
            "Celery worker and its sweep) and the collector reachable?"
            + _advice(status, Status.PENDING)
        )

    def dead_problem(self, status: DeliveryStatus) -> str | None:
        """Why the dead events call for someone, or None."""
        if self.max_dead is None or status.dead <= self.max_dead:
            return None
        plural = "s" if status.dead != 1 else ""
        advice = _advice(status, Status.DEAD, "fix the cause, then requeue them from the admin")
        return f"{status.dead} dead event{plural}, over the {self.max_dead} allowed{advice}"


def _advice(status: DeliveryStatus, of: str, otherwise: str = "") -> str:
    """The advice for the most recent error of rows in status ``of`` (fixed text chosen by
    ``advice_for``, never the error itself), else ``otherwise``."""
    advice = next((s.advice for s in status.last_errors if s.status == of), otherwise)
    return f" ({advice})" if advice else ""
