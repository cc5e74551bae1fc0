from datetime import timedelta

from django.contrib import admin
from django.urls import URLPattern, URLResolver, path

urlpatterns: list[URLPattern | URLResolver] = [path("admin/", admin.site.urls)]

# The monitoring extras, routed as the README shows, where they are installed
# (tests/django/test_monitoring.py skips without them, and fails under CI=true).
try:
    from health_check.views import HealthCheckView
except ImportError:
    pass
else:
    urlpatterns += [
        path(
            "health/tracking/",
            HealthCheckView.as_view(checks=["django_app.health.TrackingDelivery"]),
            name="tracking_health",
        ),
        path(
            "health/tracking-tolerant/",
            HealthCheckView.as_view(
                checks=[
                    (
                        "django_app.health.TrackingDelivery",
                        {"max_lag": timedelta(hours=2), "max_dead": 2},
                    ),
                ]
            ),
            name="tracking_health_tolerant",
        ),
    ]

try:
    from django_app.metrics import metrics_view
except ImportError:
    pass
else:
    urlpatterns += [path("metrics/tracking/", metrics_view, name="tracking_metrics")]
